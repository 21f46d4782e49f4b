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
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar, cast

T = TypeVar("T")

UDP_IDLE_SECONDS = 90.0
CHUNK = 256 * 1024


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
    sock = socket.socket(socket.AF_INET, kind)
    try:
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class TcpProxy:
    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, sock=self.sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._conns.discard(w)
                w.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self._conns):
            w.close()
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
