"""skiff-ctr containers, tasks and run: the task lifecycle as ctr drives it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator

from skiff.containerd.client import containers as cs
from skiff.containerd.ctr._format import go_time, rfc3339, table
from skiff.containerd.ctr._misc import parse_labels, snapshotter
from skiff.errors import FailedPrecondition, Internal, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of run's start-up)
if TYPE_CHECKING:  # run drives a lean client; the others core.Client
    import argparse
    from typing import Any

    from skiff.containerd.client import Client, Container

RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"


def parse_signal(text: str) -> int:
    if not text:
        return int(signal.SIGTERM)
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


def _runc_options(binary: str) -> tuple[str, bytes] | None:
    if not binary:
        return None
    from skiff.api.gen.containerd.runc.v1 import options_pb2

    data: bytes = options_pb2.Options(binary_name=binary).SerializeToString()
    return RUNC_OPTIONS_TYPE, data


def _mount(text: str) -> dict[str, Any]:
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    dst = fields.get("dst") or fields.get("destination") or fields.get("target")
    if not dst:
        raise InvalidArgument(f"mount {text!r}: no destination")
    return {
        "destination": dst,
        "type": fields.get("type", "bind"),
        "source": fields.get("src") or fields.get("source", ""),
        "options": [o for o in fields.get("options", "").split(":") if o],
    }


def _run_options(args: argparse.Namespace) -> cs.RunOptions:
    env = list(args.env)
    if args.env_file:
        with open(args.env_file) as f:
            env = [line.strip() for line in f if line.strip() and not line.startswith("#")] + env
    return cs.RunOptions(
        args=list(args.command),
        env=env,
        terminal=args.tty,
        cwd=args.cwd,
        user=args.user,
        hostname=args.hostname,
        readonly=args.read_only,
        privileged=args.privileged,
        net_host=args.net_host,
        mounts=[_mount(m) for m in args.mount],
        labels=parse_labels(args.label),
        runtime=args.runtime,
        runtime_options=_runc_options(args.runc_binary),
        snapshotter=snapshotter(args),
    )


# -- containers ----------------------------------------------------------------------


def containers_ls(client: Client, args: argparse.Namespace) -> int:
    items = client.list_containers(args.filters)
    if args.quiet:
        for c in items:
            print(c.id)
        return 0
    lines = ["CONTAINER\tIMAGE\tRUNTIME\t"]
    for c in items:
        lines.append(f"{c.id}\t{c.image or '-'}\t{c.runtime.name}\t")
    table(lines)
    return 0


def containers_create(client: Client, args: argparse.Namespace) -> int:
    cs.new_container(client, args.id, args.image, _run_options(args))
    return 0


def containers_rm(client: Client, args: argparse.Namespace) -> int:
    for cid in args.ids:
        try:
            task = client.get_task(cid)
        except NotFound:
            task = None
        if task is not None:
            if str(task.status) != "STOPPED":
                raise FailedPrecondition(f"cannot delete a non stopped container: {cid}")
            client.delete_task(cid)
        cs.remove_container(client, cid, keep_snapshot=args.keep_snapshot)
    return 0


def _container_json(c: Container) -> dict[str, Any]:
    runtime: dict[str, Any] = {"Name": c.runtime.name}
    if c.runtime.options_type:
        runtime["Options"] = {"type_url": c.runtime.options_type}
    return {
        "ID": c.id,
        "Labels": dict(c.labels) or None,
        "Image": c.image,
        "Runtime": runtime,
        "SnapshotKey": c.snapshot_key,
        "Snapshotter": c.snapshotter,
        "CreatedAt": rfc3339(c.created_at),
        "UpdatedAt": rfc3339(c.updated_at),
        "Extensions": {k: base64.b64encode(v).decode() for k, v in c.extensions.items()} or None,
        "Spec": c.spec,
    }


def containers_info(client: Client, args: argparse.Namespace) -> int:
    c = client.get_container(args.id)
    obj = c.spec if args.spec else _container_json(c)
    print(json.dumps(obj, indent=4))
    return 0


# -- attaching a process -----------------------------------------------------------------


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not os.isatty(0):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _resize(client: Client, cid: str, exec_id: str = "") -> None:
    with contextlib.suppress(OSError):
        size = os.get_terminal_size(0)
        client.resize_pty(cid, size.columns, size.lines, exec_id)


def _attach(
    client: Client,
    cid: str,
    exec_id: str,
    io: cs.FifoIO | None,
    tty: bool,
    start: Any,
) -> int:
    """Start the process, forward signals and stdin EOF, wait, return its exit code."""
    waiter = client.wait_task_async(cid, exec_id)
    with _raw_terminal(tty):
        start()
        if tty:
            _resize(client, cid, exec_id)
        if io is not None and io.stdin_path and not tty:

            def close_stdin() -> None:
                io.stdin_done.wait()
                with contextlib.suppress(Exception):
                    client.close_io(cid, exec_id)

            threading.Thread(target=close_stdin, daemon=True).start()
        previous = {}
        if not tty and threading.current_thread() is threading.main_thread():
            # --sig-proxy, ctr's default: our signals go to the process
            def forward(signum: int, frame: object) -> None:
                with contextlib.suppress(Exception):
                    client.kill_task(cid, signum, exec_id=exec_id)

            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                previous[s] = signal.signal(s, forward)
        try:
            status = waiter.result()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    if io is not None:
        io.wait_output()
    return status.code


def _fifo_io(args: argparse.Namespace, name: str, tty: bool) -> cs.FifoIO | None:
    if getattr(args, "null_io", False) or getattr(args, "detach", False):
        return None
    return cs.FifoIO(
        name,
        stdin=sys.stdin.buffer,
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
        terminal=tty,
        base=args.fifo_dir or None,
    )


def _write_pid(args: argparse.Namespace, pid: int) -> None:
    if getattr(args, "pid_file", ""):
        with open(args.pid_file, "w") as f:
            f.write(str(pid))


def _start_task(client: Client, container: Container, args: argparse.Namespace) -> int:
    tty = bool(container.spec and container.spec.get("process", {}).get("terminal"))
    io = _fifo_io(args, container.id, tty)
    try:
        pid = cs.new_task(client, container, io, terminal=tty)
        _write_pid(args, pid)
        if args.detach:
            client.start_task(container.id)
            return 0
        try:
            return _attach(
                client, container.id, "", io, tty, lambda: client.start_task(container.id)
            )
        finally:
            with contextlib.suppress(NotFound):
                client.delete_task(container.id)
    finally:
        if io is not None:
            io.close()


def run(client: Client, args: argparse.Namespace) -> int:
    if args.rm and args.detach:
        raise InvalidArgument("flags --detach and --rm cannot be specified together")
    container = cs.new_container(client, args.id, args.image, _run_options(args))
    try:
        return _start_task(client, container, args)
    finally:
        if args.rm:
            with contextlib.suppress(NotFound):
                cs.remove_container(client, container.id)


# -- tasks ----------------------------------------------------------------------------------


def tasks_ls(client: Client, args: argparse.Namespace) -> int:
    tasks = client.list_tasks()
    if args.quiet:
        for t in tasks:
            print(t.id or t.container_id)
        return 0
    lines = ["TASK\tPID\tSTATUS\t"]
    for t in tasks:
        lines.append(f"{t.id or t.container_id}\t{t.pid}\t{t.status}")
    table(lines)
    return 0


def tasks_start(client: Client, args: argparse.Namespace) -> int:
    return _start_task(client, client.get_container(args.id), args)


def tasks_kill(client: Client, args: argparse.Namespace) -> int:
    sig = args.signal
    if not sig:
        container = client.get_container(args.id)
        sig = container.labels.get("io.containerd.image.config.stop-signal", "SIGTERM")
    if args.all and args.exec_id:
        raise InvalidArgument("specify an exec-id or all; not both")
    client.kill_task(args.id, parse_signal(sig), exec_id=args.exec_id, all=args.all)
    return 0


def tasks_rm(client: Client, args: argparse.Namespace) -> int:
    for cid in args.ids:
        if args.exec_id:
            client.delete_process(cid, args.exec_id)
            continue
        task = client.get_task(cid)
        if args.force and str(task.status) not in ("STOPPED", "CREATED"):
            waiter = client.wait_task_async(cid)
            client.kill_task(cid, int(signal.SIGKILL), all=True)
            waiter.result(30)
        status = client.delete_task(cid)
        if status.code:
            print(f"WARN: task {cid} exit with non-zero exit code {status.code}")
    return 0


def tasks_exec(client: Client, args: argparse.Namespace) -> int:
    if not args.command:
        raise InvalidArgument("no command specified")
    container = client.get_container(args.id)
    spec = container.spec or {}
    process = dict(spec.get("process") or {})
    process["args"] = list(args.command)
    process["terminal"] = args.tty
    if args.cwd:
        process["cwd"] = args.cwd
    if args.user:
        uid, _, gid = args.user.partition(":")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    io = _fifo_io(args, f"{args.id}-{args.exec_id}", args.tty)
    try:
        client.exec_process(
            args.id,
            args.exec_id,
            process,
            stdin=io.stdin_path if io else "",
            stdout=io.stdout_path if io else "",
            stderr=io.stderr_path if io else "",
            terminal=args.tty,
        )
        if args.detach:
            client.start_task(args.id, args.exec_id)
            return 0
        try:
            return _attach(
                client,
                args.id,
                args.exec_id,
                io,
                args.tty,
                lambda: client.start_task(args.id, args.exec_id),
            )
        finally:
            with contextlib.suppress(NotFound):
                client.delete_process(args.id, args.exec_id)
    finally:
        if io is not None:
            io.close()


def tasks_ps(client: Client, args: argparse.Namespace) -> int:
    procs = client.list_pids(args.id)
    lines = ["PID\tINFO"]
    for p in procs:
        info = "-"
        if p.info_type.endswith("containerd.runc.v1.ProcessDetails") and p.info:
            from skiff.api.gen.containerd.runc.v1 import options_pb2

            details = options_pb2.ProcessDetails.FromString(p.info)
            info = f"&ProcessDetails{{ExecID:{details.exec_id},}}"
        lines.append(f"{p.pid}\t{info}")
    table(lines)
    return 0


def tasks_pause(client: Client, args: argparse.Namespace) -> int:
    client.pause_task(args.id)
    return 0


def tasks_resume(client: Client, args: argparse.Namespace) -> int:
    client.resume_task(args.id)
    return 0


CGROUPS_V1_METRICS = "io.containerd.cgroups.v1.Metrics"


def _cgroup_metrics(data_type: str, data: bytes) -> Any:
    """The decoded io.containerd.cgroups.v1.Metrics, or None for another type."""
    if data_type.rsplit("/", 1)[-1] != CGROUPS_V1_METRICS:
        return None
    from skiff.api.gen.containerd.cgroups.v1 import metrics_pb2

    return metrics_pb2.Metrics.FromString(data)


def _go_json(msg: Any) -> dict[str, Any]:
    """A message as Go's encoding/json writes containerd's generated structs: proto
    field names, every field omitempty (zero scalars and empty lists left out, a
    present message kept even when empty), in field number order."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.message_type is not None:
            if fd.is_repeated:
                out[fd.name] = [_go_json(v) for v in value]
            else:
                out[fd.name] = _go_json(value)
        elif fd.is_repeated:
            out[fd.name] = list(value)
        else:
            out[fd.name] = value
    return out


def _metrics_rows(m: Any) -> list[str]:
    rows = ["METRIC\tVALUE\t"]
    if m.HasField("memory"):
        rows.append(f"memory.usage_in_bytes\t{m.memory.usage.usage}\t")
        rows.append(f"memory.limit_in_bytes\t{m.memory.usage.limit}\t")
        rows.append(f"memory.stat.cache\t{m.memory.total_cache}\t")
    if m.HasField("cpu"):
        rows.append(f"cpuacct.usage\t{m.cpu.usage.total}\t")
        per_cpu = " ".join(str(x) for x in m.cpu.usage.per_cpu)
        rows.append(f"cpuacct.usage_percpu\t[{per_cpu}]\t")
    if m.HasField("pids"):
        rows.append(f"pids.current\t{m.pids.current}\t")
        rows.append(f"pids.limit\t{m.pids.limit}\t")
    return rows


def tasks_metrics(client: Client, args: argparse.Namespace) -> int:
    metrics = []
    for cid in args.ids:
        client.get_container(cid)  # ctr's error for an unknown container
        got = client.metrics([f"id=={cid}"])
        if not got:
            # a task without a task, or a shim that answered Stats with an error
            raise Internal("no metrics received")
        metrics += got
    for m in metrics:
        data = _cgroup_metrics(m.data_type, m.data)
        if args.format == "json":
            if data is not None:
                print(json.dumps(_go_json(data), indent=2))
            else:
                raw = {"type_url": m.data_type, "value": base64.b64encode(m.data).decode()}
                print(json.dumps(raw, indent=2))
            continue
        # as ctr: the ID table, a blank line, then the metric table, each aligned alone
        table(["ID\tTIMESTAMP\t", f"{m.id}\t{go_time(m.timestamp)}\t"])
        print()
        if data is None:
            raise InvalidArgument(f"cannot convert metric data of type {m.data_type!r}")
        table(_metrics_rows(data))
    return 0
