"""skiff-runc: runc's command line over skiff.runtime.

Thin: parse flags the way runc (urfave/cli over Go's flag package) accepts
them, call the runtime, print. The parser is hand-written because argparse
costs milliseconds of imports on every container start. For the same
reason there is no `from __future__ import annotations` (an import of its
own, on every command): annotations are evaluated, so those naming types
that exist for the type checker only are strings.
"""

import sys

from skiff import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


USAGE = """NAME:
   skiff-runc - Open Container Initiative runtime, in Python

USAGE:
   skiff-runc [global options] command [command options] [arguments...]

COMMANDS:
   create    create a container
   delete    delete any resources held by the container
   events    display container events such as OOM notifications, cpu, memory, and IO usage statistics
   exec      execute new process inside the container
   features  show the enabled features
   kill      kill sends the specified signal (default: SIGTERM) to the container's init process
   list      lists containers started by runc with the given root
   pause     pause suspends all processes inside the container
   ps        ps displays the processes running inside a container
   resume    resumes all processes that have been previously paused
   run       create and run a container
   spec      create a new specification file
   start     executes the user defined process in a created container
   state     output the state of a container
   update    update container resource constraints

GLOBAL OPTIONS:
   --debug             enable debug logging
   --log value         set the log file to write runc logs to (default is '/dev/stderr')
   --log-format value  set the log format ('text' (default), or 'json') (default: "text")
   --root value        root directory for storage of container state (default: "/run/skiff-runc")
   --systemd-cgroup    enable systemd cgroup support (not supported)
   --cgroup-root value where the cgroup hierarchies are mounted (skiff; default: "/sys/fs/cgroup")
   --version, -v       print the version
"""

# command -> {flag: (canonical name, takes a value, may repeat)}
_VALUE, _BOOL, _MULTI = 1, 0, 2
_CREATE_FLAGS = {
    "bundle": _VALUE,
    "b": "bundle",
    "console-socket": _VALUE,
    "pid-file": _VALUE,
    "no-pivot": _BOOL,
    "no-new-keyring": _BOOL,
    "preserve-fds": _VALUE,
}
FLAGS: "dict[str, dict[str, Any]]" = {
    "create": dict(_CREATE_FLAGS),
    "run": {**_CREATE_FLAGS, "detach": _BOOL, "d": "detach", "keep": _BOOL},
    "start": {},
    "state": {},
    "list": {"format": _VALUE, "f": "format", "quiet": _BOOL, "q": "quiet"},
    "kill": {"all": _BOOL, "a": "all"},
    "delete": {"force": _BOOL, "f": "force"},
    "exec": {
        "console-socket": _VALUE,
        "cwd": _VALUE,
        "env": _MULTI,
        "e": "env",
        "tty": _BOOL,
        "t": "tty",
        "user": _VALUE,
        "u": "user",
        "additional-gids": _MULTI,
        "g": "additional-gids",
        "process": _VALUE,
        "p": "process",
        "detach": _BOOL,
        "d": "detach",
        "pid-file": _VALUE,
        "process-label": _VALUE,
        "apparmor": _VALUE,
        "no-new-privs": _BOOL,
        "cap": _MULTI,
        "c": "cap",
        "preserve-fds": _VALUE,
        "cgroup": _MULTI,
        "ignore-paused": _BOOL,
    },
    "ps": {"format": _VALUE, "f": "format"},
    "pause": {},
    "resume": {},
    "events": {"stats": _BOOL, "interval": _VALUE},
    "update": {
        "resources": _VALUE,
        "r": "resources",
        "blkio-weight": _VALUE,
        "cpu-period": _VALUE,
        "cpu-quota": _VALUE,
        "cpu-share": _VALUE,
        "cpu-rt-period": _VALUE,
        "cpu-rt-runtime": _VALUE,
        "cpuset-cpus": _VALUE,
        "cpuset-mems": _VALUE,
        "kernel-memory": _VALUE,
        "kernel-memory-tcp": _VALUE,
        "memory": _VALUE,
        "memory-reservation": _VALUE,
        "memory-swap": _VALUE,
        "pids-limit": _VALUE,
        "l3-cache-schema": _VALUE,
        "mem-bw-schema": _VALUE,
    },
    "features": {},
    "spec": {"bundle": _VALUE, "b": "bundle", "rootless": _BOOL},
}
ALIASES = {"ls": "list"}

SUMMARIES = {
    "checkpoint": "checkpoint a running container (not supported by skiff-runc)",
    "restore": "restore a container from a previous checkpoint (not supported by skiff-runc)",
    "create": "create a container",
    "delete": "delete any resources held by the container often used with detached container",
    "events": "display container events such as OOM notifications, cpu, memory, and IO usage "
    "statistics",
    "exec": "execute new process inside the container",
    "features": "show the enabled features",
    "kill": "kill sends the specified signal (default: SIGTERM) to the container's init process",
    "list": "lists containers started by runc with the given root",
    "pause": "pause suspends all processes inside the container",
    "ps": "ps displays the processes running inside a container",
    "resume": "resumes all processes that have been previously paused",
    "run": "create and run a container",
    "spec": "create a new specification file",
    "start": "executes the user defined process in a created container",
    "state": "output the state of a container",
    "update": "update container resource constraints",
}


def command_help(cmd: str) -> str:
    """urfave/cli's shape: NAME, then `<prog> <command> - <summary>`, USAGE, OPTIONS."""
    lines = [
        "NAME:",
        f"   skiff-runc {cmd} - {SUMMARIES[cmd]}",
        "",
        "USAGE:",
        f"   skiff-runc {cmd} [command options] <container-id>",
        "",
    ]
    flags = FLAGS.get(cmd, {})
    if flags:
        lines.append("OPTIONS:")
        for name, kind in flags.items():
            if isinstance(kind, str):
                continue
            short = [k for k, v in flags.items() if v == name]
            names = ", ".join([f"--{name}"] + [f"-{k}" for k in short])
            lines.append(f"   {names}{' value' if kind != _BOOL else ''}")
    return "\n".join(lines) + "\n"


GLOBAL_FLAGS: "dict[str, Any]" = {
    "root": _VALUE,
    "log": _VALUE,
    "log-format": _VALUE,
    "debug": _BOOL,
    "systemd-cgroup": _BOOL,
    "criu": _VALUE,
    "cgroup-root": _VALUE,
    "rootless": _VALUE,
    "version": _BOOL,
    "v": "version",
    "help": _BOOL,
    "h": "help",
}


class UsageError(Exception):
    pass


def parse_flags(
    args: list[str], table: "dict[str, Any]", stop_at_positional: bool = True
) -> "tuple[dict[str, Any], list[str]]":
    """Go-style flags: -f, --f, -f=v, --f v; stops at the first positional argument."""
    values: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1 :])
            break
        if not arg.startswith("-") or arg == "-":
            if stop_at_positional:
                rest.extend(args[i:])
                break
            rest.append(arg)
            i += 1
            continue
        name = arg.lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        kind = table.get(name)
        if isinstance(kind, str):
            name = kind
            kind = table[name]
        if kind is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        if kind == _BOOL:
            values[name] = value is None or value.lower() in ("1", "true", "t", "yes")
        else:
            if value is None:
                i += 1
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: -{name}")
                value = args[i]
            if kind == _MULTI:
                values.setdefault(name, []).append(value)
            else:
                values[name] = value
        i += 1
    return values, rest


class Log:
    """runc's log lines: logrus text or JSON, to --log or stderr."""

    def __init__(self, path: str | None, fmt: str, debug: bool):
        self.path = path
        self.fmt = fmt
        self.debug_enabled = debug

    def write(self, level: str, msg: str) -> None:
        import time

        t = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + (f".{int((t % 1) * 1e9):09d}Z")
        if self.fmt == "json":
            from skiff.oci import fastjson

            line = fastjson.dumps({"level": level, "msg": msg, "time": stamp}, compact=True)
        else:
            quoted = msg.replace("\\", "\\\\").replace('"', '\\"')
            line = f'time="{stamp}" level={level} msg="{quoted}"'
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        else:
            sys.stderr.write(line + "\n")

    def debug(self, msg: str) -> None:
        if self.debug_enabled:
            self.write("debug", msg)

    def fatal(self, msg: str) -> int:
        self.write("error", msg)
        if self.path:
            sys.stderr.write(msg + "\n")
        return 1


def _need_id(cmd: str, rest: list[str], extra_ok: bool = False) -> str:
    if not rest:
        raise UsageError(f'"{cmd}" requires a minimum of 1 argument')
    if len(rest) > 1 and not extra_ok:
        raise UsageError(f'"{cmd}" requires exactly 1 argument(s)')
    return rest[0]


def parse_size(text: str) -> int:
    value = text.strip().lower()
    if value in ("-1",):
        return -1
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if value.endswith("b"):
        value = value[:-1]
    mult = 1
    if value and value[-1] in units:
        mult = units[value[-1]]
        value = value[:-1]
    try:
        return int(float(value) * mult)
    except ValueError:
        raise UsageError(f"invalid value for size: {text}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        gflags, rest = parse_flags(args, GLOBAL_FLAGS)
    except UsageError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    log = Log(gflags.get("log"), gflags.get("log-format", "text"), bool(gflags.get("debug")))
    if gflags.get("version"):
        sys.stdout.write(f"skiff-runc version {__version__}\ncommit: skiff\nspec: 1.0.2-dev\n")
        return 0
    if gflags.get("help") or not rest or rest[0] == "help":
        sys.stdout.write(USAGE)
        return 0
    if gflags.get("log-format", "text") not in ("text", "json"):
        return log.fatal(f"invalid log-format: {gflags['log-format']}")
    if gflags.get("systemd-cgroup"):
        return log.fatal(
            "systemd cgroup driver is not supported by skiff-runc "
            "(use cgroupfs: drop --systemd-cgroup)"
        )
    cmd = ALIASES.get(rest[0], rest[0])
    if cmd not in FLAGS and cmd not in SUMMARIES:
        return log.fatal(f"No help topic for '{rest[0]}'")
    if len(rest) > 1 and rest[1] in ("-h", "--help", "-help"):
        sys.stdout.write(command_help(cmd))
        return 0
    if cmd not in FLAGS:
        return log.fatal(f"{cmd} is not supported by skiff-runc")
    try:
        # as urfave/cli reorders them, flags may follow the container id, except where
        # the arguments after it belong to someone else (exec's command, ps's options)
        flags, rest = parse_flags(rest[1:], FLAGS[cmd], stop_at_positional=cmd in ("exec", "ps"))
    except UsageError as e:
        return log.fatal(str(e))
    root = gflags.get("root", "/run/skiff-runc")
    cgroup_root = gflags.get("cgroup-root", "/sys/fs/cgroup")
    primer = prime_cgroup_attach(cgroup_root) if cmd in ("create", "run") else 0
    try:
        return _main(cmd, flags, rest, root, cgroup_root, log)
    finally:
        if primer > 0:
            import os

            try:
                os.waitpid(primer, 0)
            except ChildProcessError:
                pass  # `run` reaps every child while it waits for the container


def prime_cgroup_attach(cgroup_root: str) -> int:
    """Start a child that moves itself into its own cgroup, and return its pid (0 if none).

    The first write to a cgroup.procs file after a quiet spell waits for an RCU
    grace period (the kernel's cgroup_threadgroup_rwsem switching to its writer
    mode): 10 to 20 ms on this machine, a third of a `create`. A no-op move made
    now, by a child, starts that wait while this process imports and prepares
    the container; by the time init joins its cgroups the lock is usually in
    writer mode and the join takes about 1 ms. The child is a shell started by
    posix_spawn (vfork and exec: a forked Python would make every page this
    process then writes a copy-on-write fault). Nothing changes if it fails.
    """
    import os

    procs = ""
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().decode().splitlines()
    except OSError:
        return 0
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers.startswith("name="):
            continue
        # a v1 controller's hierarchy, or the unified one (at the root or, hybrid, unified/)
        for base in [controllers] if controllers else ["", "unified"]:
            candidate = os.path.join(cgroup_root, base, path.lstrip("/"), "cgroup.procs")
            if os.path.exists(candidate):
                procs = candidate
                break
        if procs:
            break
    if not procs:
        return 0
    null = os.O_RDWR | os.O_CLOEXEC
    try:
        return os.posix_spawn(
            "/bin/sh",
            ["sh", "-c", 'echo 0 > "$1"', "sh", procs],
            {},
            # hold none of the caller's pipes: its stdio is /dev/null
            file_actions=[(os.POSIX_SPAWN_OPEN, fd, "/dev/null", null, 0) for fd in (0, 1, 2)],
        )
    except OSError:
        return 0


def _main(
    cmd: str, flags: "dict[str, Any]", rest: list[str], root: str, cgroup_root: str, log: Log
) -> int:
    try:
        return _dispatch(cmd, flags, rest, root, cgroup_root, log)
    except Exception as e:  # the runtime's boundary: one line, never a traceback
        # imported only now: `start` and `delete` usually get here without them
        from skiff.errors import SkiffError
        from skiff.runtime.hooks import HookError
        from skiff.runtime.process import SetupError

        if isinstance(e, UsageError):
            log.fatal(str(e))
        elif isinstance(e, (SkiffError, OSError, SetupError, HookError)):
            log.fatal(_with_prefix(cmd, str(e)))
        else:
            log.fatal(f"{cmd}: {type(e).__name__}: {e}")
    # runc ends a failed exec with 255, so it cannot be taken for the process's own status
    return 255 if cmd == "exec" else 1


def _with_prefix(cmd: str, msg: str) -> str:
    if cmd in ("create", "run"):
        return f"skiff-runc {cmd} failed: {msg}"
    return msg


def _dispatch(
    cmd: str, flags: "dict[str, Any]", rest: list[str], root: str, cgroup_root: str, log: Log
) -> int:
    if cmd == "spec":
        from skiff.runtime import commands

        return commands.spec(flags)
    if cmd == "features":
        from skiff.runtime import commands

        return commands.features()
    if cmd == "start" and len(rest) == 1:
        from skiff.runtime import quick

        if quick.start(root, rest[0]):
            return 0
    if cmd == "delete" and rest:
        from skiff.runtime import quick

        # in order, as the full path: the first it cannot do, and all after, go there
        while rest and quick.delete(root, rest[0]):
            rest = rest[1:]
        if not rest:
            return 0
    import os

    from skiff.runtime.container import Runtime

    runtime = Runtime(
        root,
        cgroup_root=cgroup_root,
        debug=log.debug,
        warn=lambda msg: log.write("warning", msg),
    )
    preserve = int(flags.get("preserve-fds", 0) or 0)
    if cmd in ("create", "run"):
        cid = _need_id(cmd, rest)
        bundle = flags.get("bundle") or os.getcwd()
        pid_file = flags.get("pid-file")
        console_socket = flags.get("console-socket")
        no_pivot = bool(flags.get("no-pivot"))
        if cmd == "create":
            runtime.create(
                cid,
                bundle,
                pid_file=pid_file,
                console_socket=console_socket,
                no_pivot=no_pivot,
                preserve_fds=preserve,
            )
            return 0
        return int(
            runtime.run(
                cid,
                bundle,
                pid_file=pid_file,
                console_socket=console_socket,
                no_pivot=no_pivot,
                preserve_fds=preserve,
                detach=bool(flags.get("detach")),
                keep=bool(flags.get("keep")),
            )
        )
    if cmd == "start":
        runtime.start(_need_id(cmd, rest))
        return 0
    if cmd == "state":
        from skiff.oci import fastjson

        sys.stdout.write(fastjson.dumps_indent(runtime.state(_need_id(cmd, rest))) + "\n")
        return 0
    if cmd == "list":
        from skiff.runtime import commands

        return commands.list_(runtime, flags)
    if cmd == "kill":
        from skiff.runtime.container import parse_signal

        cid = _need_id(cmd, rest, extra_ok=True)
        if len(rest) > 2:
            raise UsageError('"kill" requires a maximum of 2 arguments')
        sig = parse_signal(rest[1]) if len(rest) > 1 else 15
        runtime.kill(cid, sig, bool(flags.get("all")))
        return 0
    if cmd == "delete":
        if not rest:
            raise UsageError('"delete" requires a minimum of 1 argument')
        for cid in rest:
            runtime.delete(cid, bool(flags.get("force")))
        return 0
    if cmd == "exec":
        from skiff.runtime import commands

        return commands.exec_(runtime, flags, rest, preserve)
    if cmd == "ps":
        from skiff.runtime import commands

        return commands.ps(runtime, flags, rest)
    if cmd == "pause":
        runtime.pause(_need_id(cmd, rest))
        return 0
    if cmd == "resume":
        runtime.resume(_need_id(cmd, rest))
        return 0
    if cmd == "events":
        from skiff.runtime import commands

        return commands.events(runtime, flags, rest)
    if cmd == "update":
        from skiff.runtime import commands

        return commands.update(runtime, flags, rest)
    raise UsageError(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
