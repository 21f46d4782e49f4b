"""skiffd: the engine daemon, the dockerd of skiff.

Wiring only: read the configuration, claim the pid file, open the
listeners (unix, tcp with mutual TLS, systemd's fd://), find or start the
supervisor, build the daemon and its API, serve until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import socket
import ssl
import sys

from skiff import __version__
from skiff.errors import InvalidArgument, SkiffError

log = logging.getLogger("skiffd")

SD_LISTEN_FDS_START = 3


def systemd_sockets(which: str) -> list[socket.socket]:
    """The sockets systemd passed (LISTEN_PID/LISTEN_FDS); `which` is '' or an fd number."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise InvalidArgument("fd:// given but no sockets were passed by systemd (LISTEN_PID)")
    count = int(os.environ.get("LISTEN_FDS", "0"))
    if count <= 0:
        raise InvalidArgument("fd:// given but LISTEN_FDS is 0")
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))
    if which:
        wanted = int(which)
        if wanted not in fds:
            raise InvalidArgument(f"fd://{which}: not among the sockets systemd passed")
        fds = [wanted]
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    result = []
    for fd in fds:
        os.set_inheritable(fd, False)
        result.append(socket.socket(fileno=fd))
    return result


def unix_listener(path: str, group: str) -> socket.socket:
    os.makedirs(os.path.dirname(path) or ".", 0o755, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    gid = -1
    with contextlib.suppress(KeyError):
        gid = grp.getgrnam(group).gr_gid
    if gid >= 0:
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)
    else:
        os.chmod(path, 0o600)  # no such group: root only
    sock.listen(128)
    return sock


def tcp_listener(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    infos = socket.getaddrinfo(host, int(port or 2376), type=socket.SOCK_STREAM)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr)
    sock.listen(128)
    return sock


def tls_context(config: object) -> ssl.SSLContext:
    from skiff.engine.config import DaemonConfig

    assert isinstance(config, DaemonConfig)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.tlscert, config.tlskey)
    if config.tlsverify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(config.tlscacert)
    return ctx


def claim_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            old = int(f.read().strip() or "0")
        if old and os.path.exists(f"/proc/{old}") and old != os.getpid():
            raise InvalidArgument(f"pid file found, ensure skiffd is not running or delete {path}")
    except (FileNotFoundError, ValueError):
        pass
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.replace(tmp, path)


async def serve(
    config: object,
    listeners: list[tuple[socket.socket, ssl.SSLContext | None]],
    stop: asyncio.Event,
) -> None:
    from skiff.engine.api import build_router
    from skiff.engine.config import DaemonConfig
    from skiff.engine.daemon import Daemon
    from skiff.engine.http.server import Server
    from skiff.engine.network.service import NetworkService
    from skiff.engine.supervisor import Supervisor

    assert isinstance(config, DaemonConfig)
    supervisor = Supervisor(config)
    daemon = Daemon(config, supervisor)
    # first among the services: the containers restored after it find their endpoints
    daemon.services["networks"] = NetworkService(daemon)
    server = Server(build_router(daemon), server_header=f"skiffd/{__version__}")
    for sock, tls in listeners:
        await server.serve_sock(sock, tls)
    log.info("API listening on %s", ", ".join(config.listen))
    start = asyncio.get_running_loop().create_task(daemon.start())
    await stop.wait()
    log.info("shutting down (containers keep running)")
    start.cancel()
    await server.close()
    await daemon.stop()


def main(argv: list[str] | None = None) -> int:
    from skiff.engine.config import load

    try:
        config, args = load(argv)
    except SkiffError as e:
        print(f"skiffd: {e}", file=sys.stderr)
        return 1
    if args.version:
        print(f"skiffd version {__version__}")
        return 0
    level = {"warn": logging.WARNING, "fatal": logging.CRITICAL}.get(
        config.log_level, getattr(logging, config.log_level.upper(), logging.INFO)
    )
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format='time="%(asctime)s" level=%(levelname)s msg="%(message)s"',
    )
    if os.geteuid() != 0:
        print(
            "skiffd: needs to be started with root privileges (rootless mode is later work)",
            file=sys.stderr,
        )
        return 1
    listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = []
    try:
        for host in config.listen:
            proto, _, address = host.partition("://")
            if proto == "unix":
                listeners.append((unix_listener(address, config.group), None))
            elif proto == "tcp":
                if config.tlsverify or config.tls:
                    if not (
                        config.tlscert
                        and config.tlskey
                        and (config.tlscacert or not config.tlsverify)
                    ):
                        raise InvalidArgument("--tlsverify needs --tlscacert, --tlscert, --tlskey")
                    listeners.append((tcp_listener(address), tls_context(config)))
                elif config.insecure_tcp:
                    log.warning(
                        "listening on %s WITHOUT TLS: anyone who can reach it is root "
                        "on this machine",
                        host,
                    )
                    listeners.append((tcp_listener(address), None))
                else:
                    raise InvalidArgument(
                        f"refusing to listen on {host} without mutual TLS: give --tlsverify "
                        "--tlscacert --tlscert --tlskey, or --insecure-tcp to accept the risk"
                    )
            elif proto == "fd":
                listeners.extend((s, None) for s in systemd_sockets(address))
            else:
                raise InvalidArgument(f"invalid daemon host {host!r}: use unix://, tcp:// or fd://")
        os.makedirs(config.data_root, 0o711, exist_ok=True)
        os.makedirs(config.exec_root, 0o711, exist_ok=True)
        claim_pidfile(config.pidfile)
    except (SkiffError, OSError, ssl.SSLError) as e:
        print(f"skiffd: {e}", file=sys.stderr)
        return 1

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, listeners, stop)

    try:
        asyncio.run(run())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.pidfile)
        for host in config.listen:
            proto, _, address = host.partition("://")
            if proto == "unix":
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
