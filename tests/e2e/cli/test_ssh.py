"""ssh:// hosts: skiff runs `ssh [-p PORT] [-l USER] -- HOST <remote command>` and speaks
HTTP over the ssh process's stdio; on the far side `skiff system dial-stdio`
joins that stdio to the daemon's socket.

No sshd is installed on the test machines (and installing one would start a
listener on all interfaces), so $SKIFF_SSH points at a stand-in for the ssh
binary that records its arguments and runs the remote command locally. Every
other piece is real: the socketpair, dial-stdio, the daemon, hijacked streams.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cli_daemons import SKIFF, Daemon

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def test_ssh_host_through_dial_stdio(daemon: Daemon, tmp_path: Path) -> None:
    log = tmp_path / "ssh-args"
    fake_ssh = tmp_path / "ssh"
    fake_ssh.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'while [ "$1" != "--" ]; do shift; done\n'
        "shift 2\n"  # "--" and the host name
        'exec sh -c "$1"\n'
    )
    fake_ssh.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SKIFF_"))}
    env.update(
        SKIFF_SSH=str(fake_ssh),
        SKIFF_SSH_REMOTE_COMMAND=f"{SKIFF} -H {daemon.host} system dial-stdio",
        SKIFF_CONFIG=str(tmp_path / "config"),
    )

    def skiff(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SKIFF, "-H", "ssh://me@far.example:2222", *args], env=env,
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    r = skiff("version", "--format", "{{.Server.Version}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    r = skiff("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo err >&2; exit 6")
    r2 = subprocess.run([SKIFF, "-H", "ssh://me@far.example:2222", "run", "--rm", "-i", "busybox",
                         "sh", "-c", "cat; exit 6"], env=env, input="through ssh\n",
                        capture_output=True, text=True, timeout=30)  # fmt: skip
    assert (r2.returncode, r2.stdout) == (6, "through ssh\n"), r2.stderr
    assert (r.returncode, r.stderr) == (6, "err\n")
    args = log.read_text().splitlines()[0]
    assert args.startswith("-T -o ConnectTimeout=30 -p 2222 -l me -- far.example ")
