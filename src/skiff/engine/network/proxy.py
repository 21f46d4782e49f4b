"""The userland proxy of skiffd's published ports, and the loop it runs on.

DNAT cannot catch connections to the host's loopback address, so, as Docker's
docker-proxy does, a listener on the published host address forwards each TCP
connection or UDP flow to the container. All listeners of the daemon share one
asyncio loop in a thread of the network layer (`ServiceLoop`), which also
serves the embedded DNS servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

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


class _Flow(asyncio.DatagramProtocol):
    """One client's UDP flow: a socket connected to the container."""

    def __init__(self, proxy: UdpProxy, client: tuple[str, int]) -> None:
        self.proxy = proxy
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last = 0.0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.last = asyncio.get_running_loop().time()
        if self.proxy.transport is not None:
            self.proxy.transport.sendto(data, self.client)


class UdpProxy(asyncio.DatagramProtocol):
    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[tuple[str, int], _Flow] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=self.sock)
        self._reaper = loop.create_task(self._reap())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's UDP transport is not a DatagramTransport subclass
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        flow = self.flows.get(addr)
        if flow is not None and flow.transport is not None:
            flow.last = asyncio.get_running_loop().time()
            flow.transport.sendto(data)
            return
        asyncio.get_running_loop().create_task(self._open_flow(addr, data))

    async def _open_flow(self, addr: tuple[str, int], first: bytes) -> None:
        loop = asyncio.get_running_loop()
        if addr in self.flows:
            flow = self.flows[addr]
        else:
            flow = _Flow(self, addr)
            self.flows[addr] = flow
            transport, _ = await loop.create_datagram_endpoint(
                lambda: flow, remote_addr=self.target
            )
            flow.transport = transport
        flow.last = loop.time()
        if flow.transport is not None:
            flow.transport.sendto(first)

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(UDP_IDLE_SECONDS / 3)
            for addr, flow in list(self.flows.items()):
                if loop.time() - flow.last > UDP_IDLE_SECONDS:
                    if flow.transport is not None:
                        flow.transport.close()
                    del self.flows[addr]

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for flow in self.flows.values():
            if flow.transport is not None:
                flow.transport.close()
        self.flows.clear()
        if self.transport is not None:
            self.transport.close()
        self.sock.close()
