"""The userland proxy of skiffd's published ports, and the loop it runs on.

DNAT cannot catch connections to the host's loopback address, so, as Docker's
docker-proxy does, a listener on the published host address forwards each TCP
connection or UDP flow to the container. TCP listeners accept on one asyncio
loop in a thread of the network layer (`ServiceLoop`, which also serves the
embedded DNS servers) and splice each connection in threads of its own; each
UDP port is served by a thread of its own on epoll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

UDP_IDLE_SECONDS = 90.0


class ServiceLoop:
    """An asyncio loop in a daemon thread; other threads hand it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="skiff-network", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.call(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def bind_listener(proto: str, host_ip: str, port: int) -> socket.socket:
    """The proxy's listening socket, bound now so a taken port fails the caller."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    v6 = ":" in host_ip
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
    try:
        if v6:
            # [::] beside 0.0.0.0, as docker-proxy's tcp6/udp6 listeners: IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or "0.0.0.0", port))
        if proto == "tcp":
            sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def ipv6_listenable() -> bool:
    """Whether this network namespace can listen on IPv6 (it has ::1): dockerd then
    publishes a port without a host address on [::] too (libnetwork's IsV6Listenable)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


#: bytes moved per splice call, and the size asked for each direction's pipe
SPLICE_CHUNK = 1 << 20
_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_MORE", 4)


def _pump(src: socket.socket, dst: socket.socket, conn: _Conn) -> None:
    """Move one direction's bytes in the kernel (socket -> pipe -> socket) until EOF.

    A thread per direction: splice blocks, and copying through Python (asyncio
    streams) ran at half the speed of Go's docker-proxy. EOF is passed on as a
    half-close, so protocols that shut down one side keep working.
    """
    rfd, wfd = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, SPLICE_CHUNK)
        while True:
            n = os.splice(src.fileno(), wfd, SPLICE_CHUNK, flags=_SPLICE_FLAGS)
            if n == 0:
                break
            while n:
                n -= os.splice(rfd, dst.fileno(), n, flags=_SPLICE_FLAGS)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        conn.abort()  # a reset on one side ends both directions
    finally:
        os.close(rfd)
        os.close(wfd)
        conn.pump_done()


class _Conn:
    """A proxied connection: two sockets, two pumps; the last pump out closes both."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.socks = (client, upstream)
        self._left = 2
        self._lock = threading.Lock()

    def start(self) -> None:
        client, upstream = self.socks
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=_pump, args=(a, b, self), name="skiff-proxy", daemon=True
            ).start()

    def abort(self) -> None:
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def pump_done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            for s in self.socks:
                s.close()
            self.proxy.conns.discard(self)


class TcpProxy:
    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.conns: set[_Conn] = set()
        self._accepting: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(self.sock)
            except OSError:
                if self.sock.fileno() < 0:
                    return
                await asyncio.sleep(0.05)  # EMFILE and the like: try again shortly
                continue
            task = loop.create_task(self._connect(client))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        try:
            await loop.sock_connect(upstream, self.target)
        except OSError:
            upstream.close()
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(True)
            # as Go's net package (docker-proxy) does on every TCP connection
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(self, client, upstream)
        self.conns.add(conn)
        conn.start()

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._accepting
        for conn in list(self.conns):
            conn.abort()
        self.sock.close()


class _Flow:
    """One client's UDP flow: a socket connected to the container."""

    __slots__ = ("client", "last", "up")

    def __init__(self, client: Any, up: socket.socket, now: float) -> None:
        self.client = client
        self.up = up
        self.last = now


#: datagrams taken from one socket before the others get a turn
UDP_BATCH = 64


class UdpProxy:
    """A port's UDP flows, served by a thread of its own on epoll.

    Each readiness event drains up to UDP_BATCH datagrams into one reused buffer
    (recvfrom_into, send of a memoryview): asyncio's datagram transport made one
    loop turn and two bytes objects per datagram, and ran at half docker-proxy's
    rate (bench/network.py, UDP rows).
    """

    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.flows: dict[Any, _Flow] = {}  # client address -> flow
        self._by_fd: dict[int, _Flow] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        self.sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="skiff-udp-proxy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.epoll()
        listen = self.sock.fileno()
        poller.register(listen, select.EPOLLIN)
        poller.register(self._wake_r, select.EPOLLIN)
        buf = bytearray(65536)
        view = memoryview(buf)
        next_reap = time.monotonic() + UDP_IDLE_SECONDS / 3
        try:
            while True:
                events = poller.poll(UDP_IDLE_SECONDS / 3)
                now = time.monotonic()
                for fd, _ in events:
                    if fd == self._wake_r:
                        return
                    if fd == listen:
                        self._from_clients(poller, buf, view, now)
                    else:
                        flow = self._by_fd.get(fd)
                        if flow is not None:
                            self._from_container(flow, buf, view, now)
                if now >= next_reap:
                    next_reap = now + UDP_IDLE_SECONDS / 3
                    for flow in [f for f in self.flows.values() if now - f.last > UDP_IDLE_SECONDS]:
                        self._close_flow(flow)
        finally:
            for flow in list(self.flows.values()):
                self._close_flow(flow)
            poller.close()

    def _from_clients(
        self, poller: select.epoll, buf: bytearray, view: memoryview, now: float
    ) -> None:
        for _ in range(UDP_BATCH):
            try:
                n, addr = self.sock.recvfrom_into(buf)
            except OSError:
                return  # drained (or an error queued by ICMP: nothing to do with it)
            flow = self.flows.get(addr)
            if flow is None:
                up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    up.setblocking(False)
                    up.connect(self.target)
                except OSError:
                    up.close()
                    continue
                flow = _Flow(addr, up, now)
                self.flows[addr] = flow
                self._by_fd[up.fileno()] = flow
                poller.register(up.fileno(), select.EPOLLIN)
            flow.last = now
            with contextlib.suppress(OSError):  # a full buffer drops it, as UDP may
                flow.up.send(view[:n])

    def _from_container(self, flow: _Flow, buf: bytearray, view: memoryview, now: float) -> None:
        for _ in range(UDP_BATCH):
            try:
                n = flow.up.recv_into(buf)
            except OSError:
                return  # drained, or ECONNREFUSED from an ICMP port unreachable
            flow.last = now
            with contextlib.suppress(OSError):
                self.sock.sendto(view[:n], flow.client)

    def _close_flow(self, flow: _Flow) -> None:
        self.flows.pop(flow.client, None)
        self._by_fd.pop(flow.up.fileno(), None)
        flow.up.close()  # closing also takes it out of the epoll set

    async def stop(self) -> None:
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.sock.close()
