"""python -m skiff.containerd.ctr"""

import sys

from skiff.containerd.ctr import main

sys.exit(main())
