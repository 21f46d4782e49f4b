"""OCI hooks: each is a host program fed the container's state JSON on stdin."""

from __future__ import annotations

import os
import time

from skiff.oci import fastjson
from skiff.runtime.sig import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiff.oci.runtime_spec import Hook


class HookError(Exception):
    pass


def run(kind: str, hooks: list[Hook], state: dict[str, Any]) -> None:
    for i, hook in enumerate(hooks):
        run_one(kind, hook, state, i)


def run_one(kind: str, hook: Hook, state: dict[str, Any], index: int = 0) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(e.split("=", 1) for e in hook.get("env", []))
    timeout = hook.get("timeout")
    data = fastjson.dumps(state).encode()
    stdin_r, stdin_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(stdin_r, 0)
            os.dup2(err_w, 2)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execve(path, args, env)
        finally:
            os._exit(127)
    os.close(stdin_r)
    os.close(err_w)
    try:
        os.write(stdin_w, data)
    except BrokenPipeError:
        pass
    os.close(stdin_w)
    deadline = None if timeout is None else time.monotonic() + timeout
    status = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if deadline is not None and time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(err_r)
            raise HookError(
                f"error running hook #{index} ({kind}): {path}: timeout after {timeout}s"
            )
        time.sleep(0.001)
    stderr = b""
    try:
        stderr = os.read(err_r, 4096)
    finally:
        os.close(err_r)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        detail = stderr.decode(errors="replace").strip()
        if code < 0:
            why = f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"
        else:
            why = f"exit status {code}"
        raise HookError(
            f"error running hook #{index} ({kind}): {path}: {why}"
            + (f", stderr: {detail}" if detail else "")
        )
