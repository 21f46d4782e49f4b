"""skiffd's embedded DNS server, Docker's 127.0.0.11, one per container namespace.

The server's sockets are opened inside the container's network namespace (so
the container reaches them at 127.0.0.11:53) and served from the network
layer's loop. It answers the names of containers on the asking container's
user-defined networks (container names, network aliases, short ids,
`name.network`) and forwards every other query to the host's resolvers, from
the daemon's namespace. Only the DNS wire format the job needs is coded here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
TTL = 600
FORWARD_TIMEOUT = 2.0
DNS_IP = "127.0.0.11"


class DnsFormatError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    flags: int
    question: Question
    question_wire: bytes  # the question section as sent, echoed in the answer


def _read_name(data: bytes, off: int) -> tuple[str, int]:
    labels: list[str] = []
    end = -1
    hops = 0
    while True:
        if off >= len(data):
            raise DnsFormatError("name runs past the message")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data) or hops > 16:
                raise DnsFormatError("bad compression pointer")
            if end < 0:
                end = off + 2
            off = ((n & 0x3F) << 8) | data[off + 1]
            hops += 1
            continue
        off += 1
        if n == 0:
            break
        labels.append(data[off : off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels).lower(), (end if end >= 0 else off)


def parse_query(data: bytes) -> Query:
    if len(data) < 12:
        raise DnsFormatError("short message")
    qid, flags, qdcount = struct.unpack_from("!HHH", data)
    if qdcount < 1:
        raise DnsFormatError("no question")
    name, off = _read_name(data, 12)
    if off + 4 > len(data):
        raise DnsFormatError("short question")
    qtype, qclass = struct.unpack_from("!HH", data, off)
    return Query(qid, flags, Question(name, qtype, qclass), data[12 : off + 4])


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(qid: int, name: str, qtype: int = TYPE_A) -> bytes:
    """A recursive query, for clients (tests, health checks)."""
    return (
        struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", qtype, CLASS_IN)
    )


def build_answer(query: Query, rcode: int, answers: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """The reply to query: (type, rdata) records for the question's name."""
    # QR, the query's opcode and RD, RA, AA (we are the authority for our names)
    flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | 0x0400 | rcode
    head = struct.pack("!HHHHHH", query.id, flags, 1, len(answers), 0, 0)
    body = b"".join(
        struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, TTL, len(rdata)) + rdata
        for rtype, rdata in answers
    )
    return head + query.question_wire + body


def parse_answer(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(rcode, [(type, rdata)]) of a reply, for clients and tests."""
    _qid, flags, qd, an = struct.unpack_from("!HHHH", data)
    off = 12
    for _ in range(qd):
        _, off = _read_name(data, off)
        off += 4
    out = []
    for _ in range(an):
        _, off = _read_name(data, off)
        rtype, _cls, _ttl, length = struct.unpack_from("!HHIH", data, off)
        off += 10
        out.append((rtype, data[off : off + length]))
        off += length
    return flags & 0xF, out


def reverse_name(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


#: name -> the addresses of that name on the asker's networks, None if not ours
LookupFn = Callable[[str], list[str] | None]
#: address -> the name of the container that has it, None if not ours
ReverseFn = Callable[[str], str | None]


class Resolver:
    """Answers one container's queries; forwards what is not ours upstream."""

    def __init__(
        self, lookup: LookupFn, reverse: ReverseFn, upstreams: Sequence[tuple[str, int]]
    ) -> None:
        self.lookup = lookup
        self.reverse = reverse
        self.upstreams = list(upstreams)

    async def answer(self, data: bytes) -> bytes | None:
        try:
            query = parse_query(data)
        except DnsFormatError:
            return None
        q = query.question
        if q.qclass == CLASS_IN and q.qtype == TYPE_PTR and q.name.endswith(".in-addr.arpa"):
            parts = q.name[: -len(".in-addr.arpa")].split(".")
            if len(parts) == 4:
                ip = ".".join(reversed(parts))
                name = self.reverse(ip)
                if name is not None:
                    return build_answer(query, RCODE_OK, [(TYPE_PTR, encode_name(name))])
        elif q.qclass == CLASS_IN:
            ips = self.lookup(q.name)
            if ips is not None:
                if q.qtype == TYPE_A:
                    recs = [(TYPE_A, ipaddress.IPv4Address(ip).packed) for ip in ips]
                    return build_answer(query, RCODE_OK, recs)
                # a name of ours without records of this type: NOERROR, no answers
                return build_answer(query, RCODE_OK)
        return await self.forward(query, data)

    async def forward(self, query: Query, data: bytes) -> bytes:
        for host, port in self.upstreams:
            reply = await _udp_exchange(data, (host, port))
            if reply is not None:
                return reply
        return build_answer(query, RCODE_SERVFAIL)


async def _udp_exchange(data: bytes, server: tuple[str, int]) -> bytes | None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()

    class _Client(asyncio.DatagramProtocol):
        def datagram_received(self, reply: bytes, addr: tuple[str, int]) -> None:
            if not done.done() and reply[:2] == data[:2]:
                done.set_result(reply)

        def error_received(self, exc: Exception) -> None:
            if not done.done():
                done.set_exception(exc)

    try:
        transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=server)
    except OSError:
        return None
    try:
        transport.sendto(data)
        return await asyncio.wait_for(done, FORWARD_TIMEOUT)
    except (TimeoutError, OSError):
        return None
    finally:
        transport.close()


def open_sockets(ip: str = DNS_IP, port: int = 53) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on ip:port; call inside the container's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((ip, port))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ip, port))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class DnsServer(asyncio.DatagramProtocol):
    """One container's 127.0.0.11, UDP and TCP, on the network layer's loop."""

    def __init__(self, resolver: Resolver, udp: socket.socket, tcp: socket.socket) -> None:
        self.resolver = resolver
        self.udp = udp
        self.tcp = tcp
        self.transport: asyncio.DatagramTransport | None = None
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=self.udp)
        self.server = await asyncio.start_server(self._serve_tcp, sock=self.tcp)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's UDP transport is not a DatagramTransport subclass
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.resolver.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await self.resolver.answer(await reader.readexactly(length))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.server is not None:
            self.server.close()
        with contextlib.suppress(OSError):
            self.udp.close()
            self.tcp.close()


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            servers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields[0] == "options":
            options += fields[1:]
    return servers, search, options
