"""`skiff container ...` and its shortcuts (run, ps, logs, exec, cp, ...).

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API). Each
command parses docker's flags, calls the client and prints what docker prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, StatusError, UsageError, parse_kv_filters, parser
from skiff.cli.options import add_create_flags, build_create_body, update_body
from skiff.cli.streams import Detached, forward_resizes, pump, raw_terminal
from skiff.client import APIError, Client, NotFound
from skiff.client.stdcopy import demux

Command = Callable[[Cli, list[str]], int]


# -- run / create / start ----------------------------------------------------


def start_error_status(message: str) -> int:
    """docker's mapping of a failed start to 126/127/125."""
    # the same substrings the docker CLI looks for (EACCES and EISDIR by their strerror)
    if any(s in message for s in ("executable file not found", "no such file or directory",
                                  "system cannot find the file specified")):  # fmt: skip
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def run_error(message: str) -> str:
    return (f"skiff: Error response from daemon: {message}\n\n"
            "Run 'skiff run --help' for more information")  # fmt: skip


def create_container(cli: Cli, body: dict[str, Any], name: str | None, pull: str,
                     platform: str | None, quiet: bool = False) -> str:  # fmt: skip
    client = cli.client
    image = body["Image"]
    if pull == "always":
        from skiff.cli.image import pull_image

        pull_image(cli, image, quiet=quiet, out=cli.err, platform=platform, announce_tag=False)
    try:
        created = client.create_container(body, name=name, platform=platform)
    except NotFound as e:
        if pull == "never" or "image" not in e.message.lower():
            raise
        ref = image if (":" in image.rsplit("/", 1)[-1] or "@" in image) else f"{image}:latest"
        cli.eprint(f"Unable to find image '{ref}' locally")
        from skiff.cli.image import pull_image

        pull_image(cli, image, quiet=quiet, out=cli.err, platform=platform, announce_tag=False)
        created = client.create_container(body, name=name, platform=platform)
    for w in created.get("Warnings") or []:
        cli.eprint(f"WARNING: {w}")
    return str(created["Id"])


def with_console_size(body: dict[str, Any]) -> None:
    """A TTY container starts with the size of our terminal (HostConfig.ConsoleSize, as the
    docker CLI sends it), so a program that reads its size once at start sees the right one."""
    from skiff.cli.streams import terminal_size

    size = terminal_size(sys.stdout.fileno()) if body.get("Tty") else None
    if size and size[0] and size[1]:
        body.setdefault("HostConfig", {})["ConsoleSize"] = [size[0], size[1]]


def cmd_create(cli: Cli, argv: list[str]) -> int:
    p = parser("create", usage="skiff create [OPTIONS] IMAGE [COMMAND] [ARG...]", add_help=False)
    add_create_flags(p, run=False)
    o = p.parse_args(argv)
    body = build_create_body(o, run=False)
    with_console_size(body)
    cid = create_container(cli, body, o.name, o.pull, o.platform, o.quiet)
    if o.cidfile:
        with open(o.cidfile, "w") as f:
            f.write(cid)
    cli.print(cid)
    return 0


def cmd_run(cli: Cli, argv: list[str]) -> int:
    p = parser("run", usage="skiff run [OPTIONS] IMAGE [COMMAND] [ARG...]", add_help=False)
    add_create_flags(p, run=True)
    try:
        o = p.parse_args(argv)
    except StatusError as e:
        if e.status == 125 and e.message:
            raise StatusError(125, f"skiff: {e.message.splitlines()[0].split(': ', 1)[-1]}\n"
                                   "See 'skiff run --help'.") from None  # fmt: skip
        raise
    cli.daemon_error_status = 125
    if o.tty and o.interactive and not o.detach and not os.isatty(sys.stdin.fileno()):
        raise StatusError(1, "the input device is not a TTY")
    if o.detach and o.rm is False and o.attach:
        raise UsageError("Conflicting options: -a and -d")
    body = build_create_body(o, run=True)
    with_console_size(body)
    try:
        cid = create_container(cli, body, o.name, o.pull, o.platform, o.quiet)
    except APIError as e:
        raise StatusError(125, run_error(e.message)) from None
    if o.cidfile:
        with open(o.cidfile, "w") as f:
            f.write(cid)
    client = cli.client
    if o.detach:
        try:
            client.start(cid)
        except APIError as e:
            raise StatusError(start_error_status(e.message), run_error(e.message)) from None
        cli.print(cid)
        return 0
    attach_stdin = o.interactive
    stdout = not o.attach or "stdout" in [a.lower() for a in o.attach]
    stderr = not o.attach or "stderr" in [a.lower() for a in o.attach]
    conn = client.attach(cid, stdin=attach_stdin, stdout=stdout, stderr=stderr,
                         detach_keys=o.detach_keys)  # fmt: skip
    # the wait is registered before the start so a fast exit is never missed
    waiter = Client(client.host, tls=client.tls, version=client.api_version)
    wait_resp = waiter.wait_response(cid, "removed" if o.rm else "next-exit")
    tty_in = o.tty and attach_stdin and os.isatty(sys.stdin.fileno())
    try:
        with raw_terminal(sys.stdin.fileno(), tty_in):
            try:
                client.start(cid)
            except APIError as e:
                raise StatusError(start_error_status(e.message), run_error(e.message)) from None
            with forward_resizes(sys.stdout.fileno(), lambda h, w: client.resize(cid, h, w),
                                 o.tty and os.isatty(sys.stdout.fileno())), \
                    sig_proxy(client, cid, not o.tty and o.sig_proxy != "false"):  # fmt: skip
                pump(conn, stdin=attach_stdin, tty=o.tty, detach_keys=o.detach_keys)
    except Detached:
        conn.close()
        return 0
    finally:
        conn.close()
    result = waiter.read_wait(wait_resp)
    waiter.close()
    err = (result.get("Error") or {}).get("Message")
    if err:
        cli.eprint(f"skiff: Error response from daemon: {err}")
        return 125
    return int(result.get("StatusCode", 0))


@contextlib.contextmanager
def sig_proxy(client: Client, cid: str, enabled: bool) -> Any:
    """Forward SIGINT/SIGTERM/SIGHUP to the container, as docker's --sig-proxy."""
    if not enabled:
        yield
        return
    previous = {}

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(Exception):
            client_copy = Client(client.host, tls=client.tls, version=client.api_version)
            client_copy.kill(cid, signal.Signals(signum).name)
            client_copy.close()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def cmd_start(cli: Cli, argv: list[str]) -> int:
    p = parser("start", usage="skiff start [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(argv)
    client = cli.client
    if o.attach or o.interactive:
        if len(o.containers) > 1:
            raise UsageError("you cannot start and attach multiple containers at once")
        info = client.inspect_container(o.containers[0])
        cid = info["Id"]
        tty = bool(info["Config"]["Tty"])
        stdin = o.interactive and bool(info["Config"]["OpenStdin"])
        conn = client.attach(cid, stdin=stdin, detach_keys=o.detach_keys)
        waiter = Client(client.host, tls=client.tls, version=client.api_version)
        wait_resp = waiter.wait_response(cid, "next-exit")
        try:
            with raw_terminal(sys.stdin.fileno(), tty and stdin and os.isatty(0)):
                client.start(cid)
                with forward_resizes(1, lambda h, w: client.resize(cid, h, w), tty):
                    pump(conn, stdin=stdin, tty=tty, detach_keys=o.detach_keys)
        except Detached:
            return 0
        finally:
            conn.close()
        result = waiter.read_wait(wait_resp)
        waiter.close()
        return int(result.get("StatusCode", 0))
    failed = []
    for c in o.containers:
        try:
            client.start(c)
            cli.print(c)
        except APIError as e:
            cli.eprint(f"Error response from daemon: {e.message}")
            failed.append(c)
    if failed:
        raise StatusError(1, f"Error: failed to start containers: {', '.join(failed)}")
    return 0


def for_each(cli: Cli, names: list[str], action: Callable[[str], None]) -> int:
    # the names that worked as they go, the errors together at the end, as the docker CLI
    errors = []
    for n in names:
        try:
            action(n)
            cli.print(n)
        except APIError as e:
            errors.append(f"Error response from daemon: {e.message}")
    if errors:
        cli.eprint("\n".join(errors))
    return 1 if errors else 0


def cmd_stop(cli: Cli, argv: list[str], restart: bool = False) -> int:
    verb = "restart" if restart else "stop"
    p = parser(verb, usage=f"skiff {verb} [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time")
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(argv)
    fn = cli.client.restart if restart else cli.client.stop
    return for_each(cli, o.containers, lambda c: fn(c, o.time, o.signal))


def cmd_restart(cli: Cli, argv: list[str]) -> int:
    return cmd_stop(cli, argv, restart=True)


def cmd_kill(cli: Cli, argv: list[str]) -> int:
    p = parser("kill", usage="skiff kill [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(argv)
    return for_each(cli, o.containers, lambda c: cli.client.kill(c, o.signal))


def cmd_rm(cli: Cli, argv: list[str]) -> int:
    p = parser("rm", usage="skiff rm [OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(argv)
    return for_each(cli, o.containers,
                    lambda c: cli.client.remove_container(c, o.force, o.volumes, o.link))  # fmt: skip


def simple(verb: str, call: Callable[[Client, str], Any]) -> Command:
    def cmd(cli: Cli, argv: list[str]) -> int:
        p = parser(verb, usage=f"skiff {verb} CONTAINER [CONTAINER...]")
        p.add_argument("containers", nargs="+")
        o = p.parse_args(argv)
        return for_each(cli, o.containers, lambda c: call(cli.client, c))

    return cmd


def cmd_wait(cli: Cli, argv: list[str]) -> int:
    p = parser("wait", usage="skiff wait CONTAINER [CONTAINER...]")
    p.add_argument("containers", nargs="+")
    o = p.parse_args(argv)
    status = 0
    for c in o.containers:
        try:
            cli.print(cli.client.wait(c).get("StatusCode", 0))
        except APIError as e:
            cli.eprint(f"Error response from daemon: {e.message}")
            status = 1
    return status


def cmd_rename(cli: Cli, argv: list[str]) -> int:
    p = parser("rename", usage="skiff rename CONTAINER NEW_NAME")
    p.add_argument("container")
    p.add_argument("name")
    o = p.parse_args(argv)
    try:
        cli.client.rename(o.container, o.name)
    except APIError as e:
        raise StatusError(1, f"Error response from daemon: {e.message}\n"
                             f"Error: failed to rename container named {o.container}") from None  # fmt: skip
    return 0


def cmd_update(cli: Cli, argv: list[str]) -> int:
    p = parser("update", usage="skiff update [OPTIONS] CONTAINER [CONTAINER...]")
    a = p.add_argument
    a("-m", "--memory")
    a("--memory-swap")
    a("--cpus")
    a("--cpu-shares", type=int)
    a("--cpuset-cpus")
    a("--pids-limit", type=int)
    a("--restart")
    a("containers", nargs="+")
    o = p.parse_args(argv)
    body = update_body(o)
    if not body:
        raise UsageError("you must provide one or more flags when using this command")

    def upd(c: str) -> None:
        for w in cli.client.update(c, body).get("Warnings") or []:
            cli.eprint(f"WARNING: {w}")

    return for_each(cli, o.containers, upd)


# -- ps ----------------------------------------------------------------------

PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
    "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
    "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
}  # fmt: skip
PS_TABLE = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)


def format_ports(ports: list[dict[str, Any]]) -> str:
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""))):
        priv = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP", "")
            ip = f"[{ip}]" if ":" in ip else ip
            out.append(f"{ip}:{p['PublicPort']}->{priv}")
        else:
            out.append(priv)
    return ", ".join(dict.fromkeys(out))


def ps_row(c: dict[str, Any], trunc: bool) -> dict[str, Any]:
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n] or names[:1]
    image = c.get("Image", "")
    if trunc and image.startswith("sha256:"):
        image = fmt.short_id(image)
    command = c.get("Command", "")
    if trunc:
        command = fmt.ellipsis(command, 20)
    size = fmt.human_size(c.get("SizeRw") or 0)
    if c.get("SizeRootFs"):
        size += f" (virtual {fmt.human_size(c['SizeRootFs'])})"
    labels = c.get("Labels") or {}
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    nets = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    import json

    return fmt.LabeledRow(
        labels,
        {
            "ID": fmt.short_id(c["Id"]) if trunc else c["Id"],
            "Image": image,
            "Command": json.dumps(command, ensure_ascii=False),
            "CreatedAt": fmt.go_time(c.get("Created", 0)),
            "RunningFor": fmt.ago(c.get("Created", 0)),
            "Ports": format_ports(c.get("Ports") or []),
            "State": c.get("State", ""),
            "Status": c.get("Status", ""),
            "Size": size,
            "Names": ",".join(names),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "Mounts": ",".join(fmt.ellipsis(m, 15) if trunc else m for m in mounts),
            "Networks": ",".join(nets),
            "Platform": None,
            "LocalVolumes": str(
                sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")
            ),
        },
    )


def cmd_ps(cli: Cli, argv: list[str]) -> int:
    p = parser("ps", usage="skiff ps [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format", default="")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    o = p.parse_args(argv)
    limit = 1 if o.latest else (o.last if o.last > 0 else None)
    fmt_str = o.format
    size = o.size or ".Size" in fmt_str or "json ." in fmt_str
    containers = cli.client.containers(all=o.all or limit is not None, limit=limit, size=size,
                                       filters=parse_kv_filters(o.filter))  # fmt: skip
    if o.quiet and not fmt_str:
        for c in containers:
            cli.print(c["Id"] if o.no_trunc else fmt.short_id(c["Id"]))
        return 0
    default = PS_TABLE + ("\t{{.Size}}" if o.size else "")
    rows = [ps_row(c, not o.no_trunc) for c in containers]
    fmt.Formatter(
        fmt_str,
        default,
        PS_HEADERS,
        go_type="*formatter.ContainerContext",
        errors=("failed to parse template", "failed to execute template"),
    ).render(rows, cli.out)
    return 0


# -- logs / attach / exec ----------------------------------------------------


def cmd_logs(cli: Cli, argv: list[str]) -> int:
    p = parser("logs", usage="skiff logs [OPTIONS] CONTAINER")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("container")
    o = p.parse_args(argv)
    client = cli.client
    info = client.inspect_container(o.container)  # first, as the docker CLI
    since, until = to_unix_param(o.since, "since"), to_unix_param(o.until, "until")
    resp = client.logs(info["Id"], follow=o.follow, timestamps=o.timestamps, tail=o.tail,
                       since=since, until=until)  # fmt: skip
    out = cli.out_binary()
    err = sys.stderr.buffer
    chunks = client.stream_bytes(resp)
    try:
        if info["Config"].get("Tty"):
            for chunk in chunks:
                out.write(chunk)
                out.flush()
        else:
            for stream, payload in demux(chunks):
                target = err if stream == 2 else out
                target.write(payload)
                target.flush()
    except KeyboardInterrupt:
        return 0
    return 0


def to_unix_param(value: str | None, flag: str = "") -> str | None:
    """docker's --since/--until: a unix time, an RFC 3339 date, or a duration ago.

    A bad value fails with status 1 in the docker CLI's words (logs name the flag)."""
    if not value:
        return None
    try:
        float(value)
        return value
    except ValueError:
        pass
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", value)
    if m:
        from skiff.cli.options import duration_ns

        return f"{time.time() - duration_ns(value) / 1e9:.9f}"
    try:
        return f"{fmt.parse_time(value):.9f}"
    except ValueError:
        what = f'failed to parse value as time or duration: "{value}"'
        raise StatusError(1, f'invalid value for "{flag}": {what}' if flag else what) from None


def cmd_attach(cli: Cli, argv: list[str]) -> int:
    p = parser("attach", usage="skiff attach [OPTIONS] CONTAINER")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    o = p.parse_args(argv)
    client = cli.client
    info = client.inspect_container(o.container)
    if not info["State"].get("Running"):
        raise StatusError(1, "You cannot attach to a stopped container, start it first")
    if info["State"].get("Paused"):
        raise StatusError(1, "You cannot attach to a paused container, unpause it first")
    cid = info["Id"]
    tty = bool(info["Config"].get("Tty"))
    stdin = bool(info["Config"].get("OpenStdin")) and not o.no_stdin
    # as docker: the wait is registered first, so the exit status is the one that ends the stream
    waiter = Client(client.host, tls=client.tls, version=client.api_version)
    wait_resp = waiter.wait_response(cid)
    conn = client.attach(cid, stdin=stdin, detach_keys=o.detach_keys)
    try:
        with (
            raw_terminal(0, tty and stdin and os.isatty(0)),
            forward_resizes(1, lambda h, w: client.resize(cid, h, w), tty),
        ):
            pump(conn, stdin=stdin, tty=tty, detach_keys=o.detach_keys)
    except Detached:
        waiter.close()
        return 0
    finally:
        conn.close()
    # the stream ends when the container does; should the daemon have ended it for
    # another reason (the container still runs), do not wait forever
    wait_resp.stream.sock.settimeout(10)
    try:
        result = waiter.read_wait(wait_resp)
    except OSError:
        return 0
    finally:
        waiter.close()
    return int(result.get("StatusCode", 0))


def cmd_exec(cli: Cli, argv: list[str]) -> int:
    p = parser("exec", usage="skiff exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse_remainder())
    o = p.parse_args(argv)
    rest = o.command
    if not rest:
        raise UsageError(f"{p.prog}: requires at least 2 arguments\nSee '{p.prog} --help'.")
    from skiff.cli.options import env_list

    cli.daemon_error_status = 1
    if o.tty and o.interactive and not o.detach and not os.isatty(sys.stdin.fileno()):
        cli.client.inspect_container(o.container)  # a missing container is reported first
        raise StatusError(1, "the input device is not a TTY")
    config: dict[str, Any] = {
        "User": o.user or "",
        "Privileged": o.privileged,
        "Tty": o.tty,
        "AttachStdin": o.interactive and not o.detach,
        "AttachStdout": not o.detach,
        "AttachStderr": not o.detach,
        "Detach": o.detach,
        "Env": env_list(o.env, o.env_file) or None,
        "WorkingDir": o.workdir or "",
        "Cmd": rest,
    }
    if o.detach_keys:
        config["DetachKeys"] = o.detach_keys
    from skiff.cli.streams import terminal_size

    # the docker CLI sends the terminal's size at create and at start (ConsoleSize), so
    # the process starts with it instead of 0x0 until the first resize
    size = terminal_size(sys.stdout.fileno()) if o.tty and os.isatty(0) else None
    console = [size[0], size[1]] if size and size[0] and size[1] else None
    if console:
        config["ConsoleSize"] = console
    client = cli.client
    exec_id = client.exec_create(o.container, config)
    if o.detach:
        client.exec_start_detached(exec_id)
        return 0
    conn = client.exec_attach(exec_id, o.tty, console)
    try:
        with (
            raw_terminal(0, o.tty and o.interactive and os.isatty(0)),
            forward_resizes(
                1, lambda h, w: client.exec_resize(exec_id, h, w), o.tty and os.isatty(1)
            ),
        ):
            pump(conn, stdin=o.interactive, tty=o.tty, detach_keys=o.detach_keys)
    except Detached:
        return 0
    finally:
        conn.close()
    info = client.exec_inspect(exec_id)
    code = info.get("ExitCode")
    return int(code) if code is not None else 0


# -- cp ----------------------------------------------------------------------


def split_cp_arg(arg: str) -> tuple[str | None, str]:
    if arg.startswith((".", "/")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


def cmd_cp(cli: Cli, argv: list[str]) -> int:
    p = parser("cp", usage="skiff cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                           "       skiff cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH")  # fmt: skip
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("src")
    p.add_argument("dest")
    o = p.parse_args(argv)
    sc, spath = split_cp_arg(o.src)
    dc, dpath = split_cp_arg(o.dest)
    from skiff.cli import copy

    if sc and not dc:
        copy.from_container(cli, sc, spath, dpath, o.follow_link)
    elif dc and not sc:
        copy.to_container(cli, spath, dc, dpath, o.follow_link, o.archive)
    elif sc and dc:
        raise UsageError("copying between containers is not supported")
    else:
        raise UsageError("must specify at least one container source")
    return 0


# -- inspection --------------------------------------------------------------


def cmd_top(cli: Cli, argv: list[str]) -> int:
    p = parser("top", usage="skiff top CONTAINER [ps OPTIONS]")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse_remainder())
    o = p.parse_args(argv)
    top = cli.client.top(o.container, " ".join(o.ps_args) or None)
    rows = ["\t".join(top.get("Titles") or [])]
    rows += ["\t".join(proc) for proc in top.get("Processes") or []]
    cli.out.write(fmt.tabwrite(rows, minwidth=20, padding=3))
    return 0


def argparse_remainder() -> str:
    import argparse

    return argparse.REMAINDER


def cmd_port(cli: Cli, argv: list[str]) -> int:
    p = parser("port", usage="skiff port CONTAINER [PRIVATE_PORT[/PROTO]]")
    p.add_argument("container")
    p.add_argument("port", nargs="?")
    o = p.parse_args(argv)
    info = cli.client.inspect_container(o.container)
    ports: dict[str, Any] = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if o.port:
        key = o.port if "/" in o.port else f"{o.port}/tcp"
        bindings = ports.get(key)
        if not bindings:
            raise StatusError(1, f"Error: No public port '{o.port}' published for {o.container}")
        for b in bindings:
            cli.print(host_port(b))
        return 0
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        for b in ports[key] or []:
            cli.print(f"{key} -> {host_port(b)}")
    return 0


def host_port(b: dict[str, str]) -> str:
    ip = b.get("HostIp", "") or "0.0.0.0"
    return f"[{ip}]:{b.get('HostPort')}" if ":" in ip else f"{ip}:{b.get('HostPort')}"


def cmd_diff(cli: Cli, argv: list[str]) -> int:
    p = parser("diff", usage="skiff diff CONTAINER")
    p.add_argument("container")
    o = p.parse_args(argv)
    kinds = {0: "C", 1: "A", 2: "D"}
    for ch in cli.client.changes(o.container):
        cli.print(f"{kinds.get(ch.get('Kind', 0), '?')} {ch.get('Path')}")
    return 0


def cmd_export(cli: Cli, argv: list[str]) -> int:
    p = parser("export", usage="skiff export [OPTIONS] CONTAINER")
    p.add_argument("-o", "--output")
    p.add_argument("container")
    o = p.parse_args(argv)
    write_stream(cli, cli.client.export(o.container), o.output)
    return 0


def write_stream(cli: Cli, chunks: Any, output: str | None) -> None:
    if output:
        tmp = f"{output}.skiff-tmp"
        with open(tmp, "wb") as f:
            for c in chunks:
                f.write(c)
        os.replace(tmp, output)
        return
    if cli.out_is_tty():
        raise StatusError(1, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
    out = cli.out_binary()
    for c in chunks:
        out.write(c)
    out.flush()


def cmd_commit(cli: Cli, argv: list[str]) -> int:
    p = parser("commit", usage="skiff commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]")
    p.add_argument("-a", "--author")
    p.add_argument("-m", "--message")
    p.add_argument("-p", "--pause", default="true")
    p.add_argument("container")
    p.add_argument("ref", nargs="?")
    o = p.parse_args(argv)
    repo, tag = (None, None)
    if o.ref:
        from skiff.cli.image import split_ref

        repo, tag = split_ref(o.ref)
    r = cli.client.commit(o.container, repo, tag, o.message, o.author, o.pause != "false")
    cli.print(r["Id"])
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.system import inspect_objects

    return inspect_objects(cli, argv, "container")


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    p = parser("container prune", usage="skiff container prune [OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append")
    o = p.parse_args(argv)
    if not o.force and not confirm(cli, "WARNING! This will remove all stopped containers."):
        return 0
    r = cli.client.prune_containers(parse_kv_filters(o.filter))
    deleted = r.get("ContainersDeleted") or []
    if deleted:
        cli.print("Deleted Containers:")
        for d in deleted:
            cli.print(d)
        cli.print()
    cli.print(f"Total reclaimed space: {fmt.human_size(r.get('SpaceReclaimed') or 0)}")
    return 0


def confirm(cli: Cli, warning: str, inline: bool = False) -> bool:
    sep = " " if inline else "\n"
    cli.out.write(f"{warning}{sep}Are you sure you want to continue? [y/N] ")
    cli.out.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def cmd_stats(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.stats import stats

    return stats(cli, argv)


VERBS: dict[str, Command] = {
    "run": cmd_run,
    "create": cmd_create,
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "kill": cmd_kill,
    "rm": cmd_rm,
    "remove": cmd_rm,
    "ls": cmd_ps,
    "ps": cmd_ps,
    "list": cmd_ps,
    "logs": cmd_logs,
    "attach": cmd_attach,
    "exec": cmd_exec,
    "cp": cmd_cp,
    "top": cmd_top,
    "stats": cmd_stats,
    "wait": cmd_wait,
    "rename": cmd_rename,
    "pause": simple("pause", lambda c, n: c.pause(n)),
    "unpause": simple("unpause", lambda c, n: c.unpause(n)),
    "update": cmd_update,
    "port": cmd_port,
    "diff": cmd_diff,
    "export": cmd_export,
    "commit": cmd_commit,
    "inspect": cmd_inspect,
    "prune": cmd_prune,
}


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print("Usage:  skiff container COMMAND\n\nCommands:\n  " + "\n  ".join(sorted(VERBS)))
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
