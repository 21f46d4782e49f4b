"""Measure shim memory: skiff-shim against containerd-shim-runc-v2, N containers each.

    .venv/bin/python tests/integration/shim/pss.py [N]

Starts Debian's containerd in a temporary root, runs N `sleep` containers with
each runtime and prints the mean Pss and RSS per shim from /proc/PID/smaps_rollup,
and the median `ctr run -d` time. For skiff the shim template's own Pss is shown
too, and what a shim costs with the template's share added ("Pss+template").
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from shim_containerd import IMAGE, IMAGE_TAR, Containerd, processes_of


def rollup(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        values[key] = int(value.split()[0])
    return values


def shims(cd: Containerd, name: bytes) -> list[int]:
    return processes_of(cd.address, name)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    tmp = Path(tempfile.mkdtemp(prefix="sk", dir="/tmp"))
    cd = Containerd(tmp, os.environ.get("RUNTIME", "runc"))
    try:
        cd.start()
        cd.ctr("images", "import", str(IMAGE_TAR))
        for runtime, binary in (
            ("io.containerd.skiff.v1", b"containerd-shim-skiff-v1"),
            ("io.containerd.runc.v2", b"containerd-shim-runc-v2"),
        ):
            times = []
            for i in range(n):
                args = cd.run_args("-d", IMAGE, f"{binary.decode()[-7:]}{i}", "sleep", "1000")
                args[args.index("--runtime") + 1] = runtime
                started = time.monotonic()
                cd.ctr(*args)
                times.append(time.monotonic() - started)
            time.sleep(1)
            stats = [rollup(p) for p in shims(cd, binary)]
            pss = statistics.mean(s["Pss"] for s in stats) / 1024
            rss = statistics.mean(s["Rss"] for s in stats) / 1024
            extra = ""
            templates = [rollup(p) for p in cd.template_pids()] if b"skiff" in binary else []
            if templates:
                t_pss = sum(t["Pss"] for t in templates) / 1024
                with_share = pss + t_pss / len(stats)
                extra = f"  (template Pss {t_pss:.1f} MB; Pss+template {with_share:.1f} MB)"
            print(
                f"{binary.decode():28} shims={len(stats):3} Pss {pss:5.1f} MB  "
                f"RSS {rss:5.1f} MB  run -d median {statistics.median(times) * 1000:4.0f} ms "
                f"(first {times[0] * 1000:.0f} ms){extra}"
            )
    finally:
        cd.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
