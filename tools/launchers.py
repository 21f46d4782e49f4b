"""Rewrite the console scripts of the stdlib-only layers as lean launchers.

pip's console scripts start a full interpreter (site, .pth files, the
editable-install hook: about 3 ms). The runtime imports only the standard
library, so its launcher runs Python isolated and without site (-I -S) and
puts this checkout's src/ on sys.path itself. Run after `pip install -e .`.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

LEAN = {
    "skiff-runc": "skiff.runtime.cli",
    "skiff": "skiff.cli.main",  # the CLI is stdlib-only too; its start-up is budgeted
    # the shim's bootstrap and the shim itself (forked from its template) use only the stdlib
    "skiff-shim": "skiff.shim.main",
    "containerd-shim-skiff-v1": "skiff.shim.main",
}

# Lean too, but they need the virtualenv's packages (skiff-ctr: grpcio for the
# commands other than run, hpack's huffman table): its site-packages goes on
# sys.path by hand, which still skips site's .pth files and the editable hook.
LEAN_WITH_PACKAGES = {
    "skiff-ctr": "skiff.containerd.ctr",
}


def main() -> int:
    repo = Path(__file__).resolve().parents[1]
    bindir = Path(sys.executable).parent
    python = bindir / "python3"
    packages = sysconfig.get_paths()["purelib"]
    platlib = sysconfig.get_paths()["platlib"]
    launchers = [(n, m, False) for n, m in LEAN.items()]
    launchers += [(n, m, True) for n, m in LEAN_WITH_PACKAGES.items()]
    for name, module, with_packages in launchers:
        target = bindir / name
        extra = ""
        if with_packages:
            extra = "".join(f"sys.path.append({p!r})\n" for p in dict.fromkeys([packages, platlib]))
        text = (
            f"#!{python} -IS\n"
            "# a lean launcher written by tools/launchers.py: no site"
            f"{', site-packages by hand' if with_packages else ', stdlib only'}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(repo / 'src')!r})\n"
            f"{extra}"
            f"from {module} import main\n"
            "code = main()\n"
            "try:\n"
            "    sys.stdout.flush()\n"
            "    sys.stderr.flush()\n"
            "except OSError:\n"
            "    pass\n"
            "# interpreter finalisation costs ~2 ms and frees nothing a process exit would not\n"
            "__import__('posix')._exit(code)\n"
        )
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
