"""A lean client for the calls of `skiff-ctr run`: gRPC over a hand-rolled
HTTP/2 client on the unix socket, messages through skiff.ttrpc's small
protobuf codec. It sits beside core.Client (same method names, same
attribute names in its results, same skiff.errors) and imports neither grpcio nor the
generated protobuf modules, which cost a short-lived CLI process 150-350 ms
of start-up; any other method is handed to a full core.Client made on first
use (an image that still needs unpacking, for instance).

HTTP/2 as far as a unary and server-streaming gRPC client needs it: one call
at a time per connection (a second concurrent call, such as the Wait that
runs beside Start, opens a second connection), our headers as literals
without indexing, the server's decoded by a small HPACK reader with its
dynamic table, and windows kept open with WINDOW_UPDATEs.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from datetime import UTC, datetime

from skiff import errors
from skiff.containerd.client._defaults import DEFAULT_RUNTIME, SPEC_TYPE_URL
from skiff.ttrpc.protobuf import (
    BOOL,
    BYTES,
    INT32,
    INT64,
    STRING,
    UINT32,
    Any_,
    Field,
    Message,
    Timestamp,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

NAMESPACE_HEADER = "containerd-namespace"

# --- messages (field numbers from containerd's protos; checked against the
# generated modules by tests/unit/containerd_client/test_lean_client.py) ----------------


class _Label(Message):
    key: str
    value: str
    FIELDS = (Field(1, "key", STRING), Field(2, "value", STRING))


class _AnyEntry(Message):
    key: str
    value: Any_ | None
    FIELDS = (Field(1, "key", STRING), Field(2, "value", Any_))


def _labels_in(labels: Mapping[str, str] | None) -> list[_Label]:
    return [_Label(key=k, value=v) for k, v in (labels or {}).items()]


def _labels_out(entries: list[_Label]) -> dict[str, str]:
    return {e.key: e.value for e in entries}


class _Descriptor(Message):
    media_type: str
    digest: str
    size: int
    annotations: list[_Label]
    FIELDS = (
        Field(1, "media_type", STRING),
        Field(2, "digest", STRING),
        Field(3, "size", INT64),
        Field(5, "annotations", _Label, repeated=True),
    )


class _Mount(Message):
    type: str
    source: str
    target: str
    options: list[str]
    FIELDS = (
        Field(1, "type", STRING),
        Field(2, "source", STRING),
        Field(3, "target", STRING),
        Field(4, "options", STRING, repeated=True),
    )


class _Mounts(Message):  # PrepareSnapshotResponse, MountsResponse
    mounts: list[_Mount]
    FIELDS = (Field(1, "mounts", _Mount, repeated=True),)


class _Runtime(Message):
    name: str
    options: Any_ | None
    FIELDS = (Field(1, "name", STRING), Field(2, "options", Any_))


class _Container(Message):
    id: str
    labels: list[_Label]
    image: str
    runtime: _Runtime | None
    spec: Any_ | None
    snapshotter: str
    snapshot_key: str
    created_at: Timestamp | None
    updated_at: Timestamp | None
    extensions: list[_AnyEntry]
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "labels", _Label, repeated=True),
        Field(3, "image", STRING),
        Field(4, "runtime", _Runtime),
        Field(5, "spec", Any_),
        Field(6, "snapshotter", STRING),
        Field(7, "snapshot_key", STRING),
        Field(8, "created_at", Timestamp),
        Field(9, "updated_at", Timestamp),
        Field(10, "extensions", _AnyEntry, repeated=True),
    )


class _ContainerMsg(Message):  # Get/Create Container Response, CreateContainerRequest
    container: _Container | None
    FIELDS = (Field(1, "container", _Container),)


class _Id(Message):  # GetContainerRequest, DeleteContainerRequest, GetImageRequest, InfoRequest
    id: str
    FIELDS = (Field(1, "id", STRING),)


class _Image(Message):
    name: str
    labels: list[_Label]
    target: _Descriptor | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    FIELDS = (
        Field(1, "name", STRING),
        Field(2, "labels", _Label, repeated=True),
        Field(3, "target", _Descriptor),
        Field(7, "created_at", Timestamp),
        Field(8, "updated_at", Timestamp),
    )


class _ImageMsg(Message):
    image: _Image | None
    FIELDS = (Field(1, "image", _Image),)


class _ContentInfo(Message):
    digest: str
    size: int
    created_at: Timestamp | None
    updated_at: Timestamp | None
    labels: list[_Label]
    FIELDS = (
        Field(1, "digest", STRING),
        Field(2, "size", INT64),
        Field(3, "created_at", Timestamp),
        Field(4, "updated_at", Timestamp),
        Field(5, "labels", _Label, repeated=True),
    )


class _ContentInfoMsg(Message):
    info: _ContentInfo | None
    FIELDS = (Field(1, "info", _ContentInfo),)


class _ReadContentRequest(Message):
    digest: str
    offset: int
    size: int
    FIELDS = (Field(1, "digest", STRING), Field(2, "offset", INT64), Field(3, "size", INT64))


class _ReadContentResponse(Message):
    offset: int
    data: bytes
    FIELDS = (Field(1, "offset", INT64), Field(2, "data", BYTES))


class _SnapshotKey(Message):  # Stat, Mounts, Remove; Prepare with parent and labels
    snapshotter: str
    key: str
    parent: str
    labels: list[_Label]
    FIELDS = (
        Field(1, "snapshotter", STRING),
        Field(2, "key", STRING),
        Field(3, "parent", STRING),
        Field(4, "labels", _Label, repeated=True),
    )


class _SnapshotInfo(Message):
    name: str
    parent: str
    kind: int
    created_at: Timestamp | None
    updated_at: Timestamp | None
    labels: list[_Label]
    FIELDS = (
        Field(1, "name", STRING),
        Field(2, "parent", STRING),
        Field(3, "kind", INT32),
        Field(4, "created_at", Timestamp),
        Field(5, "updated_at", Timestamp),
        Field(6, "labels", _Label, repeated=True),
    )


class _SnapshotInfoMsg(Message):
    info: _SnapshotInfo | None
    FIELDS = (Field(1, "info", _SnapshotInfo),)


class _CreateTaskRequest(Message):
    container_id: str
    rootfs: list[_Mount]
    stdin: str
    stdout: str
    stderr: str
    terminal: bool
    options: Any_ | None
    runtime_path: str
    FIELDS = (
        Field(1, "container_id", STRING),
        Field(3, "rootfs", _Mount, repeated=True),
        Field(4, "stdin", STRING),
        Field(5, "stdout", STRING),
        Field(6, "stderr", STRING),
        Field(7, "terminal", BOOL),
        Field(9, "options", Any_),
        Field(10, "runtime_path", STRING),
    )


class _CreateTaskResponse(Message):
    container_id: str
    pid: int
    FIELDS = (Field(1, "container_id", STRING), Field(2, "pid", UINT32))


class _ProcessRef(Message):  # Start, Wait, CloseIO (stdin), Kill (signal, all as 3, 4)
    container_id: str
    exec_id: str
    flag3: int
    flag4: int
    FIELDS = (
        Field(1, "container_id", STRING),
        Field(2, "exec_id", STRING),
        Field(3, "flag3", UINT32),
        Field(4, "flag4", UINT32),
    )


class _Pid(Message):  # StartResponse
    pid: int
    FIELDS = (Field(1, "pid", UINT32),)


class _WaitResponse(Message):
    exit_status: int
    exited_at: Timestamp | None
    FIELDS = (Field(1, "exit_status", UINT32), Field(2, "exited_at", Timestamp))


class _DeleteResponse(Message):
    id: str
    pid: int
    exit_status: int
    exited_at: Timestamp | None
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "pid", UINT32),
        Field(3, "exit_status", UINT32),
        Field(4, "exited_at", Timestamp),
    )


class _Empty(Message):
    FIELDS = ()


# --- results -------------------------------------------------------------------------------


class Record:
    """A result with the attribute names of the client's dataclass of that
    name (Container, Runtime, Mount, Image, ContentInfo, SnapshotInfo,
    ExitStatus): the run path only reads attributes, and a score of frozen
    dataclasses would cost its start-up 20 ms."""

    def __init__(self, record_name: str, /, **fields: Any) -> None:
        self.record_name_ = record_name
        self.__dict__.update(fields)

    def __getattr__(self, name: str) -> Any:  # for mypy: fields are dynamic
        raise AttributeError(f"{self.record_name_} has no field {name}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k != "record_name_")
        return f"{self.record_name_}({fields})"


def _time(ts: Timestamp | None) -> datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def _container_out(c: _Container | None) -> Record:
    c = c or _Container()
    spec = None
    if c.spec is not None and c.spec.value:
        try:
            spec = json.loads(c.spec.value)
        except ValueError:
            spec = None
    rt = c.runtime or _Runtime()
    runtime = Record("Runtime", name=rt.name, options_type="", options=b"")
    if rt.options is not None:
        runtime = Record(
            "Runtime", name=rt.name, options_type=rt.options.type_url, options=rt.options.value
        )
    return Record(
        "Container",
        id=c.id,
        image=c.image,
        labels=_labels_out(c.labels),
        runtime=runtime,
        spec=spec,
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=_time(c.created_at),
        updated_at=_time(c.updated_at),
        extensions={e.key: e.value.value if e.value else b"" for e in c.extensions},
    )


def _mounts_out(mounts: list[_Mount]) -> list[Record]:
    return [
        Record("Mount", type=m.type, source=m.source, target=m.target, options=m.options)
        for m in mounts
    ]


# --- gRPC status ---------------------------------------------------------------------------

_CODE_NAMES = [
    *("ok", "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found"),
    *("already_exists", "permission_denied", "resource_exhausted", "failed_precondition"),
    *("aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss"),
    "unauthenticated",
]

# the same mapping as _grpc._BY_CODE, by number
_BY_CODE: dict[int, type[errors.SkiffError]] = {
    5: errors.NotFound,
    6: errors.AlreadyExists,
    3: errors.InvalidArgument,
    9: errors.FailedPrecondition,
    14: errors.Unavailable,
    12: errors.NotImplemented_,
    13: errors.Internal,
    11: errors.InvalidArgument,
    15: errors.Internal,
}


def _percent_decode(text: str) -> str:
    if "%" not in text:
        return text
    raw = text.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw):
            try:
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out.append(raw[i])
        i += 1
    return out.decode(errors="replace")


def status_error(code: int, message: str) -> errors.SkiffError:
    """The skiff error for a gRPC status, worded as _grpc.error_from_rpc words it."""
    cls = _BY_CODE.get(code, errors.SkiffError)
    name = _CODE_NAMES[code] if 0 <= code < len(_CODE_NAMES) else "unknown"
    err = cls(message or name)
    err.grpc_code = code
    return err


# --- HPACK (RFC 7541), the decoding side -------------------------------------------------

_STATIC: tuple[tuple[str, str], ...] = (
    ("", ""),
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
)

_huffman: dict[tuple[int, int], int] | None = None


def _huffman_codes() -> dict[tuple[int, int], int]:
    """(bit length, code) -> symbol, from RFC 7541 Appendix B as the hpack
    package (a dependency, through h2) ships it; its data file is read alone
    because importing the package costs ~25 ms (it pulls in logging)."""
    global _huffman
    if _huffman is None:
        import importlib.util

        spec = importlib.util.find_spec("hpack")
        if spec is None or not spec.submodule_search_locations:
            raise errors.Internal("hpack: the huffman table is not installed")
        path = f"{next(iter(spec.submodule_search_locations))}/huffman_constants.py"
        ns: dict[str, Any] = {}
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), ns)
        _huffman = {
            (length, code): sym
            for sym, (code, length) in enumerate(
                zip(ns["REQUEST_CODES"], ns["REQUEST_CODES_LENGTH"], strict=True)
            )
        }
    return _huffman


def huffman_decode(data: bytes) -> bytes:
    codes = _huffman_codes()
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            sym = codes.get((length, code))
            if sym is not None:
                if sym == 256:
                    raise errors.Internal("hpack: EOS in a string")
                out.append(sym)
                code = length = 0
    if length > 7 or code != (1 << length) - 1:
        raise errors.Internal("hpack: bad huffman padding")
    return bytes(out)


class HpackDecoder:
    def __init__(self, max_size: int = 4096) -> None:
        self.table: list[tuple[str, str]] = []  # newest first
        self.size = 0
        self.max_size = max_size

    @staticmethod
    def _int(data: bytes, pos: int, bits: int) -> tuple[int, int]:
        mask = (1 << bits) - 1
        value = data[pos] & mask
        pos += 1
        if value < mask:
            return value, pos
        shift = 0
        while True:
            b = data[pos]
            pos += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos

    def _str(self, data: bytes, pos: int) -> tuple[str, int]:
        huffman = data[pos] & 0x80
        n, pos = self._int(data, pos, 7)
        raw = data[pos : pos + n]
        if len(raw) != n:
            raise errors.Internal("hpack: truncated string")
        text = huffman_decode(raw) if huffman else raw
        return text.decode("utf-8", errors="replace"), pos + n

    def _entry(self, index: int) -> tuple[str, str]:
        if 0 < index < len(_STATIC):
            return _STATIC[index]
        i = index - len(_STATIC)
        if 0 <= i < len(self.table):
            return self.table[i]
        raise errors.Internal(f"hpack: bad index {index}")

    def _evict(self) -> None:
        while self.size > self.max_size and self.table:
            name, value = self.table.pop()
            self.size -= len(name) + len(value) + 32

    def decode(self, data: bytes) -> list[tuple[str, str]]:
        headers = []
        pos = 0
        while pos < len(data):
            b = data[pos]
            if b & 0x80:  # indexed field
                index, pos = self._int(data, pos, 7)
                headers.append(self._entry(index))
                continue
            if b & 0xE0 == 0x20:  # dynamic table size update
                self.max_size, pos = self._int(data, pos, 5)
                self._evict()
                continue
            indexing = b & 0xC0 == 0x40
            index, pos = self._int(data, pos, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, pos = self._str(data, pos)
            value, pos = self._str(data, pos)
            headers.append((name, value))
            if indexing:
                self.table.insert(0, (name, value))
                self.size += len(name) + len(value) + 32
                self._evict()
        return headers


def _literal(name: str, value: str) -> bytes:
    """A header as a literal without indexing, new name, no huffman."""

    def string(text: str) -> bytes:
        raw = text.encode()
        n = len(raw)
        if n < 127:
            return bytes([n]) + raw
        out = bytearray([127])
        n -= 127
        while n >= 128:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out) + raw

    return b"\x00" + string(name) + string(value)


# --- HTTP/2 --------------------------------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0,
    1,
    3,
    4,
    6,
    7,
    8,
    9,
)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_WINDOW = 1 << 24  # what we let the server send before a WINDOW_UPDATE
_MAX_MESSAGE = 16 << 20


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


class H2Connection:
    """One HTTP/2 connection carrying one gRPC call at a time."""

    def __init__(self, address: str, timeout: float | None) -> None:
        path = address.removeprefix("unix://").removeprefix("unix:")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise errors.Unavailable(
                f"connection error: failed to connect to {address}: {e.strerror or e}"
            ) from None
        self._buf = bytearray()
        self._hpack = HpackDecoder()
        self._next_stream = 1
        # what the server lets us send (RFC 9113 6.9): its defaults until its SETTINGS
        self._send_window = 65535  # the connection's
        self._stream_window = 65535  # the current stream's
        self._initial_window = 65535
        self._max_frame = 16384
        self._stream = 0
        self._pending: bytearray | None = None  # a header block awaiting CONTINUATION
        self._pending_sid = 0
        self._pending_end = False
        self._headers: list[tuple[str, str]] = []  # the current stream's, both blocks
        self._ended = False
        settings = struct.pack(">HI", 4, _WINDOW)  # SETTINGS_INITIAL_WINDOW_SIZE
        settings += struct.pack(">HI", 2, 0)  # SETTINGS_ENABLE_PUSH off
        self.sock.sendall(
            _PREFACE
            + _frame(SETTINGS, 0, 0, settings)
            + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", _WINDOW - 65535))
        )

    def close(self) -> None:
        self.sock.close()

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise errors.Unavailable("connection error: the supervisor closed the connection")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _read_frame(self) -> tuple[int, int, int, bytes]:
        head = self._read(9)
        length = int.from_bytes(head[:3], "big")
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        return head[3], head[4], stream, self._read(length)

    def call(
        self, path: str, request: bytes, metadata: Sequence[tuple[str, str]]
    ) -> Iterator[bytes]:
        """Send one request; yield each response message as it arrives."""
        stream = self._next_stream
        self._next_stream += 2
        block = (
            b"\x83\x86"  # :method POST, :scheme http (static table)
            + _literal(":path", path)
            + _literal(":authority", "localhost")
            + _literal("content-type", "application/grpc")
            + _literal("te", "trailers")
            + b"".join(_literal(k, v) for k, v in metadata)
        )
        body = memoryview(b"\x00" + struct.pack(">I", len(request)) + request)
        self._stream = stream
        self._stream_window = self._initial_window
        self._headers, self._ended = [], False
        out = _frame(HEADERS, END_HEADERS, stream, block)
        while body:
            n = min(len(body), self._max_frame, self._send_window, self._stream_window)
            if n <= 0:
                # the windows are spent: send what we have, wait for a WINDOW_UPDATE
                self.sock.sendall(out)
                out = b""
                self._control(*self._read_frame())
                continue
            chunk, body = body[:n], body[n:]
            self._send_window -= n
            self._stream_window -= n
            out += _frame(DATA, 0 if body else END_STREAM, stream, bytes(chunk))
        self.sock.sendall(out)
        return self._responses(stream)

    def _control(self, kind: int, flags: int, sid: int, payload: bytes) -> bool:
        """Handle a frame about the connection (or a stream's window, or another
        stream's headers); False for one our stream's reader must see."""
        if kind == SETTINGS:
            if not flags & ACK:
                for i in range(0, len(payload) - 5, 6):
                    ident, value = struct.unpack(">HI", payload[i : i + 6])
                    if ident == 4:  # INITIAL_WINDOW_SIZE: open streams move by the delta
                        self._stream_window += value - self._initial_window
                        self._initial_window = value
                    elif ident == 5:
                        self._max_frame = value
                self.sock.sendall(_frame(SETTINGS, ACK, 0))
            return True
        if kind == PING:
            if not flags & ACK:
                self.sock.sendall(_frame(PING, ACK, 0, payload))
            return True
        if kind == WINDOW_UPDATE:
            inc = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if sid == 0:
                self._send_window += inc
            elif sid == self._stream:
                self._stream_window += inc
            return True
        if kind == GOAWAY:
            if int.from_bytes(payload[:4], "big") & 0x7FFFFFFF >= self._stream:
                return True  # a graceful GOAWAY that still lets our stream finish
            raise errors.Unavailable("connection error: the supervisor went away")
        if kind in (HEADERS, CONTINUATION):
            # every block goes through the decoder, whatever its stream, or the
            # dynamic table drifts from the server's
            if kind == HEADERS:
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & PRIORITY:
                    payload = payload[5:]
                self._pending, self._pending_sid = bytearray(payload), sid
                self._pending_end = bool(flags & END_STREAM)
            elif self._pending is not None:
                self._pending += payload
            if flags & END_HEADERS and self._pending is not None:
                block, self._pending = bytes(self._pending), None
                headers = self._hpack.decode(block)
                if self._pending_sid == self._stream:
                    self._headers += headers
                    self._ended = self._ended or self._pending_end
            return True
        return sid != self._stream  # RST_STREAM and DATA of streams long done

    def _responses(self, stream: int) -> Iterator[bytes]:
        data = bytearray()
        while True:
            if self._ended:  # trailers (or a trailers-only response) came in
                self._finish(self._headers)
                return
            kind, flags, sid, payload = self._read_frame()
            if self._control(kind, flags, sid, payload):
                continue
            if kind == RST_STREAM:
                code = int.from_bytes(payload[:4], "big")
                raise errors.Unavailable(f"stream reset by the supervisor (http2 error {code})")
            if kind == DATA:
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if payload:
                    data += payload
                    inc = struct.pack(">I", len(payload))
                    self.sock.sendall(
                        _frame(WINDOW_UPDATE, 0, 0, inc) + _frame(WINDOW_UPDATE, 0, stream, inc)
                    )
                while len(data) >= 5:
                    if data[0]:
                        raise errors.Internal("grpc: compressed messages are not supported")
                    n = int.from_bytes(data[1:5], "big")
                    if n > _MAX_MESSAGE:
                        raise errors.InvalidArgument(f"grpc: message of {n} bytes is too large")
                    if len(data) < 5 + n:
                        break
                    yield bytes(data[5 : 5 + n])
                    del data[: 5 + n]
                if flags & END_STREAM:
                    raise errors.Internal("grpc: the stream ended without a status")

    @staticmethod
    def _finish(headers: list[tuple[str, str]]) -> None:
        fields = dict(headers)
        status = fields.get(":status", "200")
        if "grpc-status" not in fields:
            raise errors.Unavailable(f"grpc: no status in the response (http {status})")
        code = int(fields["grpc-status"])
        if code:
            raise status_error(code, _percent_decode(fields.get("grpc-message", "")))


# --- the client ----------------------------------------------------------------------------


class LeanClient:
    """The run path's calls, as core.Client has them; the rest go to a core.Client."""

    def __init__(self, address: str, namespace: str, *, timeout: float | None = None) -> None:
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self.lease = ""
        self._idle: list[H2Connection] = []
        self._lock = threading.Lock()
        self._full: Any = None

    def __getattr__(self, name: str) -> Any:
        # anything not implemented here: the full gRPC client, made on first use
        if name.startswith("_"):
            raise AttributeError(name)
        if self._full is None:
            from skiff.containerd.client.core import Client

            self._full = Client(self.address, self.namespace, timeout=self.timeout)
        return getattr(self._full, name)

    def close(self) -> None:
        with self._lock:
            conns, self._idle = self._idle, []
        for c in conns:
            c.close()
        if self._full is not None:
            self._full.close()

    def _conn(self, timeout: float | None) -> H2Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return H2Connection(self.address, timeout)

    def _stream(
        self, path: str, request: Message, *, timeout: float | None = None
    ) -> Iterator[bytes]:
        conn: H2Connection | None = None
        ok = False
        try:
            conn = self._conn(self.timeout)
            conn.sock.settimeout(timeout)
            yield from conn.call(path, request.encode(), [(NAMESPACE_HEADER, self.namespace)])
            ok = True
        except errors.SkiffError as e:
            ok = e.grpc_code != 14  # a status from the server: the connection is fine
            raise
        except TimeoutError:
            # what grpcio's client raises for a deadline (see _grpc.error_from_rpc)
            raise status_error(4, "Deadline Exceeded") from None
        except OSError as e:
            raise errors.Unavailable(f"connection error: {e}") from None
        finally:
            if conn is not None and ok:
                with self._lock:
                    self._idle.append(conn)
            elif conn is not None:
                conn.close()

    def _call(self, path: str, request: Message, *, wait: bool = False) -> bytes:
        last = b""
        for message in self._stream(path, request, timeout=None if wait else self.timeout):
            last = message
        return last

    # -- containers --------------------------------------------------------------------

    def get_container(self, id: str) -> Record:
        r = self._call("/containerd.services.containers.v1.Containers/Get", _Id(id=id))
        return _container_out(_ContainerMsg.decode(r).container)

    def create_container(
        self,
        id: str,
        *,
        spec: Mapping[str, Any],
        image: str = "",
        runtime: str = DEFAULT_RUNTIME,
        runtime_options: tuple[str, bytes] | None = None,
        snapshotter: str = "",
        snapshot_key: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Record:
        rt = _Runtime(name=runtime)
        if runtime_options is not None:
            rt.options = Any_(type_url=runtime_options[0], value=runtime_options[1])
        c = _Container(
            id=id,
            image=image,
            labels=_labels_in(labels),
            runtime=rt,
            spec=Any_(type_url=SPEC_TYPE_URL, value=json.dumps(spec).encode()),
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
        )
        r = self._call(
            "/containerd.services.containers.v1.Containers/Create", _ContainerMsg(container=c)
        )
        return _container_out(_ContainerMsg.decode(r).container)

    def delete_container(self, id: str) -> None:
        self._call("/containerd.services.containers.v1.Containers/Delete", _Id(id=id))

    # -- images and content --------------------------------------------------------------

    def get_image(self, name: str) -> Record:
        r = self._call("/containerd.services.images.v1.Images/Get", _Id(id=name))
        i = _ImageMsg.decode(r).image or _Image()
        d = i.target or _Descriptor()
        # a Descriptor's attributes, the digest a plain str (no skiff.oci.image on this path)
        target = Record(
            "Descriptor",
            media_type=d.media_type,
            digest=d.digest,
            size=d.size,
            annotations=_labels_out(d.annotations),
        )
        return Record(
            "Image",
            name=i.name,
            target=target,
            labels=_labels_out(i.labels),
            created_at=_time(i.created_at),
            updated_at=_time(i.updated_at),
        )

    def content_info(self, digest: str) -> Record:
        r = self._call("/containerd.services.content.v1.Content/Info", _Id(id=str(digest)))
        i = _ContentInfoMsg.decode(r).info or _ContentInfo()
        return Record(
            "ContentInfo",
            digest=i.digest,
            size=i.size,
            created_at=_time(i.created_at),
            updated_at=_time(i.updated_at),
            labels=_labels_out(i.labels),
        )

    def read_content(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        req = _ReadContentRequest(digest=str(digest), offset=offset, size=size)
        for r in self._stream("/containerd.services.content.v1.Content/Read", req):
            yield _ReadContentResponse.decode(r).data

    # -- snapshots -----------------------------------------------------------------------

    def stat_snapshot(self, snapshotter: str, key: str) -> Record:
        r = self._call(
            "/containerd.services.snapshots.v1.Snapshots/Stat",
            _SnapshotKey(snapshotter=snapshotter, key=key),
        )
        i = _SnapshotInfoMsg.decode(r).info or _SnapshotInfo()
        return Record(
            "SnapshotInfo",
            name=i.name,
            parent=i.parent,
            kind=i.kind,
            labels=_labels_out(i.labels),
            created_at=_time(i.created_at),
            updated_at=_time(i.updated_at),
        )

    def prepare_snapshot(
        self,
        snapshotter: str,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> list[Record]:
        r = self._call(
            "/containerd.services.snapshots.v1.Snapshots/Prepare",
            _SnapshotKey(
                snapshotter=snapshotter, key=key, parent=parent, labels=_labels_in(labels)
            ),
        )
        return _mounts_out(_Mounts.decode(r).mounts)

    def snapshot_mounts(self, snapshotter: str, key: str) -> list[Record]:
        r = self._call(
            "/containerd.services.snapshots.v1.Snapshots/Mounts",
            _SnapshotKey(snapshotter=snapshotter, key=key),
        )
        return _mounts_out(_Mounts.decode(r).mounts)

    def remove_snapshot(self, snapshotter: str, key: str) -> None:
        self._call(
            "/containerd.services.snapshots.v1.Snapshots/Remove",
            _SnapshotKey(snapshotter=snapshotter, key=key),
        )

    # -- tasks ---------------------------------------------------------------------------

    def create_task(
        self,
        container_id: str,
        *,
        rootfs: Sequence[Any] = (),
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        options: tuple[str, bytes] | None = None,
        runtime_path: str = "",
    ) -> int:
        req = _CreateTaskRequest(
            container_id=container_id,
            rootfs=[
                _Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
                for m in rootfs
            ],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
            runtime_path=runtime_path,
        )
        if options is not None:
            req.options = Any_(type_url=options[0], value=options[1])
        r = self._call("/containerd.services.tasks.v1.Tasks/Create", req)
        return int(_CreateTaskResponse.decode(r).pid)

    def start_task(self, container_id: str, exec_id: str = "") -> int:
        r = self._call(
            "/containerd.services.tasks.v1.Tasks/Start",
            _ProcessRef(container_id=container_id, exec_id=exec_id),
        )
        return int(_Pid.decode(r).pid)

    def delete_task(self, container_id: str) -> Record:
        r = self._call(
            "/containerd.services.tasks.v1.Tasks/Delete", _ProcessRef(container_id=container_id)
        )
        d = _DeleteResponse.decode(r)
        return Record(
            "ExitStatus", code=d.exit_status, exited_at=_time(d.exited_at), pid=d.pid, id=d.id
        )

    def kill_task(
        self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False
    ) -> None:
        self._call(
            "/containerd.services.tasks.v1.Tasks/Kill",
            _ProcessRef(container_id=container_id, exec_id=exec_id, flag3=signal, flag4=int(all)),
        )

    def resize_pty(self, container_id: str, width: int, height: int, exec_id: str = "") -> None:
        self._call(
            "/containerd.services.tasks.v1.Tasks/ResizePty",
            _ProcessRef(container_id=container_id, exec_id=exec_id, flag3=width, flag4=height),
        )

    def close_io(self, container_id: str, exec_id: str = "", *, stdin: bool = True) -> None:
        self._call(
            "/containerd.services.tasks.v1.Tasks/CloseIO",
            _ProcessRef(container_id=container_id, exec_id=exec_id, flag3=int(stdin)),
        )

    def wait_task(self, container_id: str, exec_id: str = "") -> Record:
        """Block until the process exits; no client timeout applies."""
        r = self._call(
            "/containerd.services.tasks.v1.Tasks/Wait",
            _ProcessRef(container_id=container_id, exec_id=exec_id),
            wait=True,
        )
        w = _WaitResponse.decode(r)
        return Record("ExitStatus", code=w.exit_status, exited_at=_time(w.exited_at), pid=0, id="")

    def wait_task_async(self, container_id: str, exec_id: str = "") -> LeanWait:
        """Start waiting now (before Start, so a quick exit is not missed)."""
        return LeanWait(self, container_id, exec_id)


class LeanWait:
    """A Wait call running in a thread on its own connection."""

    def __init__(self, client: LeanClient, container_id: str, exec_id: str) -> None:
        self._result: Record | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(client, container_id, exec_id), daemon=True
        )
        self._thread.start()

    def _run(self, client: LeanClient, container_id: str, exec_id: str) -> None:
        try:
            self._result = client.wait_task(container_id, exec_id)
        except BaseException as e:
            self._error = e
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Record:
        if not self._done.wait(timeout):
            raise TimeoutError("the process has not exited")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
