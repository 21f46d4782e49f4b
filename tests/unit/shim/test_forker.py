"""skiff.shim.forker: skiff-runc commands run in forks of a pre-imported helper."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# run in a fresh interpreter: start_forker must be called while the process has one thread
SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    from skiff.shim.forker import start_forker, ForkerGone
    from skiff.shim.runtime import OciRuntime
    from skiff.shim.reaper import Reaper
    from skiff.errors import Internal

    forker = start_forker(["skiff-shim-runc-helper-test"])
    assert forker is not None
    import time
    deadline = time.monotonic() + 5
    while True:  # the helper names itself once forked
        cmdline = open(f"/proc/{forker.pid}/cmdline", "rb").read()
        if cmdline == b"skiff-shim-runc-helper-test\\0" or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert cmdline == b"skiff-shim-runc-helper-test\\0", cmdline
    root, log = sys.argv[1], sys.argv[2]
    oci = OciRuntime("/nonexistent/skiff-runc", root, log, Reaper(), forker)
    # output through pipes, as `ps` and `state` need
    out = oci.run(["--version"])
    assert out.startswith(b"skiff-runc version"), out
    # a failing command: its status and the runtime's logged message
    try:
        oci.run(["state", "no-such-container"])
    except Internal as e:
        assert "state failed (exit 1)" in str(e) and "does not exist" in str(e), e
    else:
        raise AssertionError("state of a missing container succeeded")
    # several threads at once
    results = []
    def call():
        results.append(oci.run(["--version"]))
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert len(results) == 8 and all(r.startswith(b"skiff-runc") for r in results)
    # the helper goes when the shim closes its end
    forker.close()
    _, status = os.waitpid(forker.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # and by itself when idle; the next command is then executed (not lost)
    idle = start_forker(["skiff-shim-runc-helper-test"], idle_seconds=0.3)
    assert idle is not None
    oci_idle = OciRuntime("/nonexistent/skiff-runc", root, log, Reaper(), idle)
    assert oci_idle.run(["--version"]).startswith(b"skiff-runc version")
    _, status = os.waitpid(idle.pid, 0)  # it leaves by itself
    assert os.waitstatus_to_exitcode(status) == 0
    try:
        oci_idle.run(["--version"])
    except Internal as e:
        assert "/nonexistent/skiff-runc" in str(e), e
    else:
        raise AssertionError("the idle helper still ran a command")
    # and then the runtime binary is executed instead (here: missing, so it fails)
    try:
        oci.run(["--version"])
    except Internal as e:
        assert "/nonexistent/skiff-runc" in str(e), e
    else:
        raise AssertionError("no helper and no binary, yet the command ran")
    print("ok")
    """
)


def test_forker_runs_commands_and_falls_back(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "root"), str(tmp_path / "log.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_own_runtime_is_this_checkouts_lean_launcher(tmp_path: Path) -> None:
    from skiff.shim.forker import is_own_runtime

    launcher = Path(sys.executable).parent / "skiff-runc"
    if not launcher.read_bytes().startswith(b"#!") or b"lean launcher" not in launcher.read_bytes():
        print(f"{launcher} is not a lean launcher (run tools/launchers.py)")
    else:
        assert is_own_runtime(str(launcher))
    other = tmp_path / "skiff-runc"
    other.write_text(
        launcher.read_text().replace(str(REPO / "src"), "/elsewhere/src")
        if launcher.exists()
        else "#!/bin/sh\n"
    )
    assert not is_own_runtime(str(other))
    assert not is_own_runtime("/usr/sbin/runc")
    assert not is_own_runtime(str(tmp_path / "missing"))
