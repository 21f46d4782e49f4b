"""Entry point of `skiff-shim` / `containerd-shim-skiff-v1`: containerd's shim v2 bootstrap.

    skiff-shim -namespace NS -id ID -address ADDR [-publish-binary B] [-debug] start
        (cwd = bundle) binds the shim's ttrpc socket, forks the long-lived shim
        (setsid, detached, child subreaper), writes <bundle>/address and prints
        unix://<socket> for containerd, then exits.
    skiff-shim ... -bundle DIR delete
        cleans up after a dead shim (runtime delete --force, unmount rootfs) and
        prints a containerd.task.v2.DeleteResponse on stdout.

The shim is forked from the template of its supervisor address
(skiff.shim.template), which the first `start` forks off itself: every shim
starts in a fork's time and shares the interpreter's pages with its siblings.
Without a template the shim forks from the start process itself.
This module runs on every `start`, so it imports only os, sys and _socket.
"""

from __future__ import annotations

import _socket
import os
import sys

from skiff.ttrpc.shimstart import alive, listen, write_address
from skiff.ttrpc.shimstart import socket_path as socket_path  # re-exported

_FLAGS_WITH_VALUE = {"namespace", "id", "address", "publish-binary", "bundle", "socket"}
_BOOL_FLAGS = {"debug", "v"}


class Args:
    def __init__(self) -> None:
        self.namespace = ""
        self.id = ""
        self.address = ""
        self.publish_binary = ""
        self.bundle = ""
        self.socket = ""
        self.debug = False
        self.version = False
        self.action = ""


def parse_args(argv: list[str]) -> Args:
    """Go flag syntax, as containerd passes it: -name value, --name=value, -flag."""
    args = Args()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and arg not in ("-", "--"):
            name = arg.lstrip("-")
            value: str | None = None
            if "=" in name:
                name, value = name.split("=", 1)
            if name in _BOOL_FLAGS:
                if name == "v":
                    args.version = True
                else:
                    args.debug = value is None or value.lower() in ("1", "true")
            elif name in _FLAGS_WITH_VALUE:
                if value is None:
                    i += 1
                    if i >= len(argv):
                        raise SystemExit(f"skiff-shim: flag -{name} needs a value")
                    value = argv[i]
                setattr(args, name.replace("-", "_"), value)
            else:
                raise SystemExit(f"skiff-shim: unknown flag -{name}")
        elif not args.action:
            args.action = arg
        i += 1
    return args


def runtime_root(address: str, namespace: str) -> str:
    """Default runtime state root: <containerd socket dir>/runc/<ns>, as containerd-shim-runc-v2."""
    return os.path.join(os.path.dirname(os.path.abspath(address)), "runc", namespace)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = parse_args(argv)
    if args.version:
        print("skiff-shim (containerd-shim-skiff-v1) 0.1.0")
        return 0
    if not args.id or not args.namespace:
        # a -namespace is required by containerd's bootstrap; so is -id
        print("skiff-shim: -namespace and -id are required", file=sys.stderr)
        return 2
    if args.action == "start":
        return start(args, argv)
    if args.action == "delete":
        return delete(args)
    print(f"skiff-shim: unknown action {args.action!r} (start, delete)", file=sys.stderr)
    return 2


def start(args: Args, argv: list[str]) -> int:
    bundle = os.getcwd()
    try:
        options = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    except OSError:
        options = b""
    del options  # containerd sends the runtime options here; Create carries them too
    path = socket_path(args.address, args.namespace, args.id)
    address = "unix://" + path
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    if os.path.exists(path):
        if alive(path):
            write_address(bundle, address)
            print(address, end="")
            return 0
        os.unlink(path)

    listener = listen(path)
    try:
        ok = _start_shim(args, argv, bundle, listener)
    finally:
        listener.close()  # the shim has its own copy
    if not ok:
        print("skiff-shim: failed to start the shim daemon", file=sys.stderr)
        try:
            os.unlink(path)
        except OSError:
            pass
        return 1
    write_address(bundle, address)
    # containerd reads the whole output as the address: print nothing else
    sys.stdout.write(address)
    sys.stdout.flush()
    return 0


def _start_shim(args: Args, argv: list[str], bundle: str, listener: _socket.socket) -> bool:
    """Fork the shim from the template (starting one if needed), else from this process."""
    from skiff.shim import template

    shim_argv = [sys.argv[0], *argv]
    path = template.template_path(socket_path(args.address, args.namespace, args.id), args.address)
    stamp = template.code_stamp()
    try:
        template.request_shim(path, stamp, shim_argv, bundle, listener.fileno())
        return True
    except template.TemplateGone:
        pass
    try:
        template.spawn_template(path, stamp, args.address, sys.argv[0])
        template.request_shim(path, stamp, shim_argv, bundle, listener.fileno())
        return True
    except (template.TemplateGone, OSError):
        # A template is an optimisation: without one the shim forks from here.
        # Nothing is printed: containerd reads stdout and stderr as the address.
        pass
    return _fork_shim(args, bundle, listener)


def _fork_shim(args: Args, bundle: str, listener: _socket.socket) -> bool:
    import socket

    import skiff.shim.daemon  # noqa: F401  imported before the fork, so the shim starts warm
    from skiff.shim.template import run_shim

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            code = run_shim(args, bundle, socket.socket(fileno=os.dup(listener.fileno())))
        except BaseException as exc:
            last_words(bundle, exc)
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def last_words(bundle: str, exc: BaseException) -> None:
    """Why a shim died before it could say so over ttrpc: <bundle>/shim.err."""
    import time

    try:
        with open(os.path.join(bundle, "shim.err"), "a") as f:
            f.write(f"{time.ctime()}: skiff-shim died: {type(exc).__name__}: {exc}\n")
    except OSError:
        pass


def delete(args: Args) -> int:
    """Clean up after a shim that died: kill and delete the container, unmount, report."""
    from skiff.shim import syscalls
    from skiff.shim.reaper import Reaper, exit_status
    from skiff.shim.runtime import OciRuntime
    from skiff.shim.service import RUNTIME_FILE, read_exit_file
    from skiff.ttrpc.protobuf import Timestamp
    from skiff.ttrpc.task import DeleteResponse

    bundle = args.bundle or os.getcwd()
    recorded = read_exit_file(bundle)
    try:
        with open(os.path.join(bundle, RUNTIME_FILE)) as f:
            binary, root = f.read().split("\n")[:2]
    except (OSError, ValueError):
        binary = root = ""
    pid = 0
    try:
        with open(os.path.join(bundle, "init.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        pass
    if binary:

        class _DirectReaper(Reaper):
            def wait(self, pid: int) -> int:
                return exit_status(os.waitpid(pid, 0)[1])

        oci = OciRuntime(binary, root, os.path.join(bundle, "log.json"), _DirectReaper())
        try:
            oci.delete(args.id, force=True)
        except Exception as exc:
            print(f"skiff-shim delete: {exc}", file=sys.stderr)
    try:
        syscalls.unmount(os.path.join(bundle, "rootfs"))
    except OSError:
        pass
    if recorded is not None:
        status, at_ns = recorded
    else:
        import time

        status, at_ns = 128 + 9, time.time_ns()  # as if SIGKILLed now
    response = DeleteResponse(pid=pid, exit_status=status, exited_at=Timestamp.from_ns(at_ns))
    sys.stdout.buffer.write(response.encode())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
