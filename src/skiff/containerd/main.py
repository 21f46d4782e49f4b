"""Entry point of `skiff-containerd`, the supervisor (see DESIGN.md): parse
flags and config, build the daemon (server/grpc.py), serve until a signal.

    skiff-containerd [-a SOCK] [--root DIR] [--state DIR] [--config FILE] [--log-level L]
    skiff-containerd config default|dump
    skiff-containerd --address SOCK publish --topic T --namespace NS   (Any on stdin)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import threading

from skiff.containerd import config as cfg
from skiff.errors import SkiffError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skiff-containerd", description="skiff's container supervisor")
    p.add_argument("-a", "--address", help=f"gRPC socket (default {cfg.DEFAULT_ADDRESS})")
    p.add_argument("--root", help=f"persistent state (default {cfg.DEFAULT_ROOT})")
    p.add_argument("--state", help=f"runtime state (default {cfg.DEFAULT_STATE})")
    p.add_argument("-c", "--config", help="TOML file merged over the defaults")
    p.add_argument(
        "-l", "--log-level", choices=["trace", "debug", "info", "warn", "warning", "error"]
    )
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("config", help="print the configuration")
    c.add_argument("what", choices=["default", "dump"])
    pub = sub.add_parser("publish", help="publish an event (the Any on stdin)")
    pub.add_argument("--topic", required=True)
    pub.add_argument("--namespace", required=True)
    return p


def _publish_binary() -> str:
    here = os.path.abspath(sys.argv[0])
    if os.path.basename(here) == "skiff-containerd" and os.access(here, os.X_OK):
        return here
    beside = os.path.join(os.path.dirname(sys.executable), "skiff-containerd")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("skiff-containerd") or beside


def _notify_ready() -> None:
    """sd_notify(READY=1) for a systemd Type=notify unit."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.connect(path)
            s.send(b"READY=1")
        except OSError:
            pass


def _trim_memory() -> None:
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _publish(config: dict[str, object], topic: str, namespace: str) -> int:
    import grpc
    from google.protobuf import any_pb2

    from skiff.api.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc

    event = any_pb2.Any()
    event.ParseFromString(sys.stdin.buffer.read())
    address = config["grpc"]["address"]  # type: ignore[index]
    with grpc.insecure_channel("unix:" + str(address)) as ch:
        stub = events_pb2_grpc.EventsStub(ch)
        stub.Publish(
            events_pb2.PublishRequest(topic=topic, event=event),
            metadata=[("containerd-namespace", namespace)],
            timeout=10,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = cfg.load(args.config)
        config = cfg.apply_flags(
            config, address=args.address, root=args.root, state=args.state, log_level=args.log_level
        )
    except SkiffError as exc:
        print(f"skiff-containerd: {exc}", file=sys.stderr)
        return 1
    if args.command == "config":
        print(cfg.dumps(cfg.DEFAULTS if args.what == "default" else cfg.resolved(config)), end="")
        return 0
    if args.command == "publish":
        try:
            return _publish(config, args.topic, args.namespace)
        except Exception as exc:
            print(f"skiff-containerd publish: {exc}", file=sys.stderr)
            return 1
    config = cfg.resolved(config)
    level = str(config["debug"]["level"]).upper()
    level = {"TRACE": "DEBUG", "WARN": "WARNING"}.get(level, level)
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from skiff.containerd.server.grpc import Daemon

    try:
        daemon = Daemon(config, _publish_binary())
    except SkiffError as exc:
        print(f"skiff-containerd: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # a shim's death must not take us with it through SIGPIPE
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    daemon.start()
    _notify_ready()
    _trim_memory()
    # after a burst of work, hand freed heap back to the system (glibc keeps
    # it otherwise, and idle RSS is what a supervisor is judged by)
    while not stop.wait(30):
        _trim_memory()
    logging.getLogger("skiff.containerd").info("shutting down; shims keep running")
    daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
