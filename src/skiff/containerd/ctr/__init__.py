"""skiff-ctr: the debug CLI of the containerd API, shaped like containerd's
`ctr` (same subcommands, flags and tables). Thin over skiff.containerd.client:
parse, call, format. Only argparse is imported up front; grpc and the client
load when a command runs, so `--help` and bad usage answer fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of run's start-up)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    Handler = Callable[[Any, argparse.Namespace], int | None]

DEFAULT_ADDRESS = "/run/skiff/containerd/containerd.sock"


# commands driven by skiff.containerd.client.lean (a core.Client for anything it lacks)
LEAN = frozenset({("_containers", "run")})


def _handler(module: str, name: str) -> Callable[[argparse.Namespace], int | None]:
    """Resolve the command's function only when it runs (keeps start-up lean)."""

    def run(args: argparse.Namespace) -> int | None:
        import importlib

        client: Any
        if (module, name) in LEAN:
            # no grpcio and no generated modules: they are most of a short run's time
            from skiff.containerd.client.lean import LeanClient

            client = LeanClient(args.address, args.namespace, timeout=args.timeout or None)
        else:
            from skiff.containerd.client import Client

            client = Client(args.address, args.namespace, timeout=args.timeout or None)
        mod = importlib.import_module(f"skiff.containerd.ctr.{module}")
        fn: Handler = getattr(mod, name)
        try:
            return fn(client, args)
        finally:
            client.close()

    return run


def _sub(
    parent: Any, names: Sequence[str], help: str, module: str, fn: str
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = parent.add_parser(names[0], aliases=list(names[1:]), help=help)
    p.set_defaults(run=_handler(module, fn))
    return p


def _group(parent: Any, names: Sequence[str], help: str) -> Any:
    p = parent.add_parser(names[0], aliases=list(names[1:]), help=help)
    p.set_defaults(run=lambda args, p=p: _usage(p))
    return p.add_subparsers(metavar="command")


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 1


def _snapshotter_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--snapshotter",
        default=os.environ.get("CONTAINERD_SNAPSHOTTER", ""),
        help="snapshotter name. Empty value stands for the default value [$CONTAINERD_SNAPSHOTTER]",
    )


def _run_flags(p: argparse.ArgumentParser) -> None:
    _snapshotter_flag(p)
    p.add_argument("--cwd", default="", help="specify the working directory of the process")
    p.add_argument("--env", action="append", default=[], help="additional environment (FOO=bar)")
    p.add_argument("--env-file", default="", help="environment variables from a file, one a line")
    p.add_argument("--label", action="append", default=[], help="additional labels (foo=bar)")
    p.add_argument(
        "--mount",
        action="append",
        default=[],
        help="additional mount (type=bind,src=/tmp,dst=/host,options=rbind:ro)",
    )
    p.add_argument("--net-host", action="store_true", help="enable host networking")
    p.add_argument("--privileged", action="store_true", help="run privileged container")
    p.add_argument("--read-only", action="store_true", help="read-only root filesystem")
    p.add_argument("--runtime", default="io.containerd.runc.v2", help="runtime name")
    p.add_argument("--runc-binary", default="", help="specify runc-compatible binary")
    p.add_argument("--tty", "-t", action="store_true", help="allocate a TTY for the container")
    p.add_argument("--user", "-u", default="", help="uid[:gid] of the process")
    p.add_argument("--hostname", default="", help="container hostname")


def _run_parser(top: Any) -> None:
    import argparse

    p = _sub(top, ["run"], "run a container", "_containers", "run")
    _run_flags(p)
    p.add_argument("--rm", action="store_true", help="remove the container after running")
    p.add_argument("--detach", "-d", action="store_true", help="detach after the task started")
    p.add_argument("--null-io", action="store_true", help="send all IO to /dev/null")
    p.add_argument("--fifo-dir", default="", help="directory used for storing IO FIFOs")
    p.add_argument("--pid-file", default="", help="file path to write the task's pid")
    p.add_argument("image")
    p.add_argument("id")
    p.add_argument("command", nargs=argparse.REMAINDER)


# `run` parsed without argparse (whose import and parser cost a run about 9 ms),
# for command lines made of exactly these options; anything else (an abbreviation,
# a --flag=value on a switch, --help, a value or a command starting with "-",
# options after the image) goes to argparse, which then also gives its errors.
_FAST_GLOBAL = {"--address": "address", "-a": "address", "--namespace": "namespace",
                "-n": "namespace", "--timeout": "timeout"}  # fmt: skip
_FAST_SWITCH = {"--debug": "debug"}
_FAST_RUN_VALUE = {"--snapshotter": "snapshotter", "--cwd": "cwd", "--env-file": "env_file",
                   "--runtime": "runtime", "--runc-binary": "runc_binary", "--user": "user",
                   "-u": "user", "--hostname": "hostname", "--fifo-dir": "fifo_dir",
                   "--pid-file": "pid_file"}  # fmt: skip
_FAST_RUN_APPEND = {"--env": "env", "--label": "label", "--mount": "mount"}
_FAST_RUN_SWITCH = {"--net-host": "net_host", "--privileged": "privileged",
                    "--read-only": "read_only", "--tty": "tty", "-t": "tty", "--rm": "rm",
                    "--detach": "detach", "-d": "detach", "--null-io": "null_io"}  # fmt: skip


def fast_run_args(argv: Sequence[str]) -> Any:
    """The namespace argparse would give for a plain `run` command line, or None."""
    from types import SimpleNamespace

    env = os.environ
    values: dict[str, Any] = {
        "address": env.get("CONTAINERD_ADDRESS", DEFAULT_ADDRESS),
        "namespace": env.get("CONTAINERD_NAMESPACE", "default"),
        "timeout": 0,
        "debug": False,
        "snapshotter": env.get("CONTAINERD_SNAPSHOTTER", ""),
        "cwd": "",
        "env": [],
        "env_file": "",
        "label": [],
        "mount": [],
        "net_host": False,
        "privileged": False,
        "read_only": False,
        "runtime": "io.containerd.runc.v2",
        "runc_binary": "",
        "tty": False,
        "user": "",
        "hostname": "",
        "rm": False,
        "detach": False,
        "null_io": False,
        "fifo_dir": "",
        "pid_file": "",
    }
    valued, switches, appended = _FAST_GLOBAL, _FAST_SWITCH, {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            if valued is _FAST_GLOBAL:
                if arg != "run":
                    return None
                valued, switches, appended = _FAST_RUN_VALUE, _FAST_RUN_SWITCH, _FAST_RUN_APPEND
                continue
            positional.append(arg)
            if len(positional) == 2:
                rest = list(argv[i:])
                if rest and rest[0].startswith("-") and rest[0] != "-":
                    return None
                values["image"], values["id"], values["command"] = *positional, rest
                values["run"] = _handler("_containers", "run")
                return SimpleNamespace(**values)
            continue
        if positional:
            return None  # an option between the image and the id
        name, eq, value = arg.partition("=")
        if name in switches and not eq:
            values[switches[name]] = True
            continue
        dest = valued.get(name) or appended.get(name)
        if dest is None:
            return None
        if not eq:
            if i >= len(argv) or argv[i].startswith("-"):
                return None
            value = argv[i]
            i += 1
        if name.startswith("-") and not name.startswith("--") and eq:
            return None  # -a=x means "=x" to argparse
        if dest == "timeout":
            try:
                values[dest] = float(value)
            except ValueError:
                return None
        elif name in appended:
            values[dest] = [*values[dest], value]
        else:
            values[dest] = value
    return None


_VALUED = ("--address", "-a", "--namespace", "-n", "--timeout")


def _command_word(argv: Sequence[str]) -> str:
    """The subcommand named on the command line (after the global options), or ""."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUED:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return ""


def build_parser(only: str = "") -> argparse.ArgumentParser:
    """The whole command tree; with `only="run"`, the global options and run alone
    (building all of it costs a short `run` 10-25 ms)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="skiff-ctr",
        description="a debug CLI for skiff-containerd (and containerd), shaped like ctr",
    )
    parser.add_argument(
        "--address",
        "-a",
        default=os.environ.get("CONTAINERD_ADDRESS", DEFAULT_ADDRESS),
        help="address of the containerd API socket [$CONTAINERD_ADDRESS]",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        default=os.environ.get("CONTAINERD_NAMESPACE", "default"),
        help="namespace to use with commands [$CONTAINERD_NAMESPACE]",
    )
    parser.add_argument("--timeout", type=float, default=0, help="total timeout for calls (s)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    parser.set_defaults(run=lambda args: _usage(parser))
    top = parser.add_subparsers(metavar="command")
    if only == "run":
        _run_parser(top)
        return parser

    _sub(top, ["version"], "print the client and server versions", "_misc", "version")

    # namespaces
    ns = _group(top, ["namespaces", "namespace", "ns"], "manage namespaces")
    p = _sub(ns, ["list", "ls"], "list namespaces", "_misc", "namespaces_ls")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the namespace name")
    p = _sub(ns, ["create", "c"], "create a new namespace", "_misc", "namespaces_create")
    p.add_argument("name")
    p.add_argument("labels", nargs="*", metavar="key=value")
    p = _sub(ns, ["remove", "rm"], "remove one or more namespaces", "_misc", "namespaces_rm")
    p.add_argument("names", nargs="+")
    p = _sub(ns, ["label"], "set and clear labels for a namespace", "_misc", "namespaces_label")
    p.add_argument("name")
    p.add_argument("labels", nargs="*", metavar="key=value")

    # images
    im = _group(top, ["images", "image", "i"], "manage images")
    p = _sub(im, ["list", "ls"], "list images known to containerd", "_images", "ls")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the image refs")
    p.add_argument("filters", nargs="*")
    p = _sub(im, ["pull"], "pull an image from a remote", "_images", "pull")
    p.add_argument("--plain-http", action="store_true", help="allow connections using plain HTTP")
    p.add_argument("--platform", default="", help="pull content from a specific platform")
    p.add_argument("--print-chainid", action="store_true", help="print the resulting chain ID")
    _snapshotter_flag(p)
    p.add_argument("ref")
    p = _sub(im, ["push"], "push an image to a remote", "_images", "push")
    p.add_argument("--plain-http", action="store_true", help="allow connections using plain HTTP")
    p.add_argument("remote")
    p.add_argument("local", nargs="?", default="")
    p = _sub(im, ["import"], "import images from a tar", "_images", "import_")
    p.add_argument("--base-name", default="", help="base image name for added images")
    p.add_argument("--no-unpack", action="store_true", help="skip unpacking the images")
    p.add_argument("--platform", default="", help="imports content for specific platform")
    _snapshotter_flag(p)
    p.add_argument("file", help="archive path, or - for stdin")
    p = _sub(im, ["export"], "export images to a tar", "_images", "export")
    p.add_argument("file", help="output path, or - for stdout")
    p.add_argument("refs", nargs="+")
    p = _sub(im, ["delete", "del", "remove", "rm"], "remove one or more images", "_images", "rm")
    p.add_argument("--sync", action="store_true", help="synchronously remove image and resources")
    p.add_argument("refs", nargs="+")
    p = _sub(im, ["tag"], "tag an image", "_images", "tag")
    p.add_argument("--force", action="store_true", help="force target_ref to be created")
    p.add_argument("source")
    p.add_argument("targets", nargs="+")

    # content
    co = _group(top, ["content"], "manage content")
    p = _sub(co, ["list", "ls"], "list all blobs in the store", "_misc", "content_ls")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the blob digest")
    p.add_argument("filters", nargs="*")
    p = _sub(co, ["get"], "get the data for an object", "_misc", "content_get")
    p.add_argument("digest")
    p = _sub(co, ["fetch"], "fetch all content for an image", "_images", "fetch")
    p.add_argument("--plain-http", action="store_true", help="allow connections using plain HTTP")
    p.add_argument("--platform", default="", help="pull content from a specific platform")
    p.add_argument("ref")
    p = _sub(
        co, ["delete", "del", "remove", "rm"], "permanently delete blobs", "_misc", "content_rm"
    )
    p.add_argument("digests", nargs="+")

    # snapshots
    sn = _group(top, ["snapshots", "snapshot"], "manage snapshots")
    p = _sub(sn, ["list", "ls"], "list snapshots", "_misc", "snapshots_ls")
    _snapshotter_flag(p)
    p = _sub(
        sn, ["mounts", "m", "mount"], "mount commands for a snapshot", "_misc", "snapshots_mounts"
    )
    _snapshotter_flag(p)
    p.add_argument("target")
    p.add_argument("key")
    p = _sub(sn, ["delete", "del", "remove", "rm"], "remove snapshots", "_misc", "snapshots_rm")
    _snapshotter_flag(p)
    p.add_argument("keys", nargs="+")
    p = _sub(sn, ["usage"], "usage of snapshots", "_misc", "snapshots_usage")
    _snapshotter_flag(p)
    p.add_argument("keys", nargs="*")

    # containers
    ct = _group(top, ["containers", "container", "c"], "manage containers")
    p = _sub(ct, ["list", "ls"], "list containers", "_containers", "containers_ls")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the container id")
    p.add_argument("filters", nargs="*")
    p = _sub(ct, ["create"], "create container", "_containers", "containers_create")
    _run_flags(p)
    p.add_argument("image")
    p.add_argument("id")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = _sub(
        ct, ["delete", "del", "remove", "rm"], "delete containers", "_containers", "containers_rm"
    )
    p.add_argument("--keep-snapshot", action="store_true", help="do not clean up the snapshot")
    p.add_argument("ids", nargs="+")
    p = _sub(ct, ["info"], "get info about a container", "_containers", "containers_info")
    p.add_argument("--spec", action="store_true", help="only display the spec")
    p.add_argument("id")

    # tasks
    tk = _group(top, ["tasks", "t", "task"], "manage tasks")
    p = _sub(tk, ["list", "ls"], "list tasks", "_containers", "tasks_ls")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the task id")
    p = _sub(tk, ["start"], "start a container that has been created", "_containers", "tasks_start")
    p.add_argument("--null-io", action="store_true", help="send all IO to /dev/null")
    p.add_argument("--fifo-dir", default="", help="directory used for storing IO FIFOs")
    p.add_argument("--pid-file", default="", help="file path to write the task's pid")
    p.add_argument("--detach", "-d", action="store_true", help="detach after the task started")
    p.add_argument("id")
    p = _sub(tk, ["kill"], "signal a container (default: SIGTERM)", "_containers", "tasks_kill")
    p.add_argument("--signal", "-s", default="", help="signal to send to the container")
    p.add_argument("--exec-id", default="", help="process ID to kill")
    p.add_argument("--all", "-a", action="store_true", help="signal all processes")
    p.add_argument("id")
    p = _sub(tk, ["delete", "del", "remove", "rm"], "delete tasks", "_containers", "tasks_rm")
    p.add_argument("--force", "-f", action="store_true", help="force delete task process")
    p.add_argument("--exec-id", default="", help="process ID to delete")
    p.add_argument("ids", nargs="+")
    p = _sub(tk, ["exec"], "execute additional processes in a task", "_containers", "tasks_exec")
    p.add_argument("--cwd", default="", help="working directory of the new process")
    p.add_argument("--tty", "-t", action="store_true", help="allocate a TTY")
    p.add_argument("--detach", "-d", action="store_true", help="detach after it started")
    p.add_argument("--exec-id", required=True, help="exec specific id for the process")
    p.add_argument("--fifo-dir", default="", help="directory used for storing IO FIFOs")
    p.add_argument("--user", default="", help="uid[:gid]")
    p.add_argument("id")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = _sub(tk, ["ps"], "list processes for container", "_containers", "tasks_ps")
    p.add_argument("id")
    p = _sub(tk, ["pause"], "pause an existing container", "_containers", "tasks_pause")
    p.add_argument("id")
    p = _sub(tk, ["resume"], "resume a paused container", "_containers", "tasks_resume")
    p.add_argument("id")
    p = _sub(
        tk,
        ["metrics", "metric"],
        "get a single data point of metrics",
        "_containers",
        "tasks_metrics",
    )
    p.add_argument("--format", default="table", choices=["table", "json"])
    p.add_argument("ids", nargs="+")

    # run
    _run_parser(top)

    # events
    p = _sub(top, ["events", "event"], "display containerd events", "_misc", "events")
    p.add_argument("filters", nargs="*")

    # leases (a small debugging aid)
    le = _group(top, ["leases"], "manage leases")
    p = _sub(le, ["list", "ls"], "list all active leases", "_misc", "leases_ls")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the lease id")
    p = _sub(le, ["delete", "del", "remove", "rm"], "delete leases", "_misc", "leases_rm")
    p.add_argument("ids", nargs="+")
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    run = _command_word(argv) == "run"
    args = fast_run_args(argv) if run else None
    if args is None:
        args = build_parser("run" if run else "").parse_args(argv)
    try:
        rc = args.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # the CLI's edge: one line, exit 1, like ctr
        if args.debug:
            raise
        print(f"skiff-ctr: {_message(e)}", file=sys.stderr)
        return 1
    return int(rc or 0)


def _message(e: BaseException) -> str:
    from skiff.errors import SkiffError

    text = str(e) or type(e).__name__
    if isinstance(e, SkiffError):
        kind = {
            5: "not found",
            6: "already exists",
            9: "failed precondition",
            3: "invalid argument",
            14: "unavailable",
            12: "not implemented",
        }.get(e.grpc_code)
        if kind and not text.endswith(kind):
            text = f"{text}: {kind}"
    return text
