"""skiff-containerd's own gRPC server (`[grpc] server = "h2"`): gRPC over
HTTP/2 on a unix socket, with the pure-Python `h2` state machine and
threads, serving the same adapters as grpcio would (rpc.py's method tables).

Why: grpcio alone costs an idle daemon about 20 MB of RSS. What is served:
unary, server-streaming (events Subscribe, content Read/List), client- and
bidi-streaming (content Write), metadata, statuses with grpc-message,
trailers-only errors, flow control both ways, GOAWAY on stop.

Threads: one reader per connection (it alone feeds h2), one per call. The
h2 connection and the socket's write side are guarded by one lock per
connection; a sender short of flow-control window waits on that lock's
condition, which the reader signals on WINDOW_UPDATE.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError

from skiff.containerd.server.rpc import (
    INTERNAL,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    UNIMPLEMENTED,
    Method,
    RpcStatus,
    methods_of,
    status_of,
)

log = logging.getLogger("skiff.containerd.server.h2")

# What we let a client send ahead of our reading (per stream and for the
# connection): big enough that a content Write of 1 MiB chunks streams.
_WINDOW = 4 << 20
_MAX_STREAMS = 1 << 20
_END = object()
# headers a client sends that are not gRPC metadata
_RESERVED = {"te", "content-type", "user-agent", "grpc-timeout", "grpc-encoding"}
_RESERVED_PREFIX = (":", "grpc-accept-encoding")


def _percent_encode(message: str) -> str:
    """grpc-message is percent-encoded UTF-8 (the gRPC over HTTP/2 spec)."""
    out = []
    for b in message.encode():
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(chr(b))
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Cancelled(Exception):
    """The client went away or reset the stream."""


class Context:
    """The handler's view of its call (the part of grpc.ServicerContext the
    adapters use)."""

    def __init__(self, call: _Call) -> None:
        self._call = call

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._call.metadata

    def is_active(self) -> bool:
        return not self._call.cancelled

    def abort(self, code: int, details: str) -> None:
        raise RpcStatus(int(getattr(code, "value", (code,))[0]), details)


class _Call:
    def __init__(
        self,
        conn: _Connection,
        stream_id: int,
        method: Method | None,
        headers: dict[str, str],
        metadata: list[tuple[str, str]],
    ) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.method = method
        self.headers = headers
        self.metadata = metadata
        self.inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.buffer = bytearray()
        self.cancelled = False
        self.headers_sent = False
        self.error: RpcStatus | None = None  # a framing error seen by the reader

    # -- receiving (reader thread, under the connection lock) -------------------------

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 5:
            compressed, length = struct.unpack(">BI", self.buffer[:5])
            if length > self.conn.server.max_recv:
                self.error = RpcStatus(
                    RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({length} vs. {self.conn.server.max_recv})",
                )
                self.inbox.put(_END)
                return
            if len(self.buffer) < 5 + length:
                return
            message = bytes(self.buffer[5 : 5 + length])
            del self.buffer[: 5 + length]
            if compressed:
                if self.headers.get("grpc-encoding") != "gzip":
                    self.error = RpcStatus(
                        UNIMPLEMENTED,
                        f"grpc: compression {self.headers.get('grpc-encoding')!r} is not supported",
                    )
                    self.inbox.put(_END)
                    return
                # bounded: a small gzip message must not inflate past the limit
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                message = inflate.decompress(message, self.conn.server.max_recv + 1)
                if len(message) > self.conn.server.max_recv or inflate.unconsumed_tail:
                    self.error = RpcStatus(
                        RESOURCE_EXHAUSTED, "grpc: decompressed message larger than max"
                    )
                    self.inbox.put(_END)
                    return
            self.inbox.put(message)

    # -- the handler's side (its own thread) ----------------------------------------

    def messages(self) -> Iterator[Any]:
        assert self.method is not None
        while True:
            item = self.inbox.get()
            if item is _END:
                if self.error is not None:
                    raise self.error
                if self.cancelled:
                    raise _Cancelled()
                return
            try:
                yield self.method.request.FromString(item)
            except DecodeError as exc:
                raise RpcStatus(INTERNAL, f"grpc: error unmarshalling request: {exc}") from None

    def single(self) -> Any:
        items = self.messages()
        request = next(items, None)
        if request is None:
            raise RpcStatus(INTERNAL, "grpc: no request message")
        for _ in items:
            raise RpcStatus(INTERNAL, "grpc: too many request messages for a unary call")
        return request

    def send(self, message: Any, flush: bool = True) -> None:
        data = message.SerializeToString()
        if len(data) > self.conn.server.max_send:
            raise RpcStatus(
                RESOURCE_EXHAUSTED,
                f"grpc: trying to send message larger than max ({len(data)} vs. {self.conn.server.max_send})",
            )
        self.conn.send_data(self, struct.pack(">BI", 0, len(data)) + data, flush)

    def finish(self, code: int, message: str) -> None:
        trailers = [("grpc-status", str(code))]
        if message:
            trailers.append(("grpc-message", _percent_encode(message)))
        self.conn.send_trailers(self, trailers)

    def run(self) -> None:
        m = self.method
        try:
            if m is None:
                raise RpcStatus(UNIMPLEMENTED, f"unknown method {self.headers.get(':path', '')}")
            ctx = Context(self)
            request = self.messages() if m.client_streaming else self.single()
            result = m.handler(request, ctx)
            if m.server_streaming:
                try:
                    for response in result:
                        if self.cancelled:
                            raise _Cancelled()
                        self.send(response)
                finally:
                    result.close()
            else:
                # headers, message and trailers leave in one write
                self.send(result, flush=False)
            self.finish(0, "")
        except _Cancelled:
            pass
        except Exception as exc:
            if self.cancelled:
                return
            code, message = status_of(exc)
            with contextlib.suppress(_Cancelled):
                self.finish(code, message)
        finally:
            self.conn.forget(self)


class _Connection:
    def __init__(self, server: H2Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.lock = threading.Lock()
        self.window = threading.Condition(self.lock)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding="utf-8",
                # Header validation is a quarter of h2's time per call. Our
                # own headers are well-formed; a peer's are only looked up
                # (:path in a dict) or passed on as metadata strings, so a
                # malformed one cannot hurt us.
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
            )
        )
        self.calls: dict[int, _Call] = {}
        self.closed = False

    def _flush(self) -> None:
        """Send what h2 has queued; the caller holds the lock."""
        out = self.h2.data_to_send()
        if out and not self.closed:
            try:
                self.sock.sendall(out)
            except OSError:
                self._close_locked()

    def serve(self) -> None:
        with self.lock:
            self.h2.initiate_connection()
            self.h2.update_settings(
                {
                    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
                    # h2 allows 100 streams; dockerd keeps a Wait open per
                    # running container on one connection (grpc-go's server
                    # has no limit either)
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _MAX_STREAMS,
                }
            )
            self.h2.increment_flow_control_window(_WINDOW)
            self._flush()
        try:
            while True:
                try:
                    data = self.sock.recv(1 << 16)
                except OSError:
                    break
                if not data:
                    break
                starts = []
                with self.lock:
                    try:
                        events = self.h2.receive_data(data)
                    except h2.exceptions.ProtocolError as exc:
                        log.debug("h2 protocol error: %s", exc)
                        self._flush()
                        break
                    for ev in events:
                        call = self._event(ev)
                        if call is not None:
                            starts.append(call)
                    self._flush()
                for call in starts:
                    self.server.workers.submit(call.run)
        finally:
            with self.lock:
                self._close_locked()
            self.server.forget(self)

    def _event(self, ev: Any) -> _Call | None:
        """Apply one h2 event; returns a call to start. Under the lock."""
        if isinstance(ev, h2.events.RequestReceived):
            pairs = [(_text(k), _text(v)) for k, v in ev.headers or ()]
            headers = dict(pairs)
            metadata = [
                (k, v)
                for k, v in pairs
                if k not in _RESERVED and not k.startswith(_RESERVED_PREFIX)
            ]
            method = self.server.methods.get(headers.get(":path", ""))
            started = _Call(self, int(ev.stream_id or 0), method, headers, metadata)
            self.calls[started.stream_id] = started
            return started
        call = self.calls.get(int(getattr(ev, "stream_id", 0) or 0))
        if isinstance(ev, h2.events.DataReceived):
            # acknowledged at once: a message may be larger than the window,
            # and the content Write protocol is ping-pong anyway
            if ev.flow_controlled_length:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, int(ev.stream_id or 0))
            if call is not None and call.error is None and ev.data:
                call.feed(ev.data)
        elif isinstance(ev, h2.events.StreamEnded):
            if call is not None:
                call.inbox.put(_END)
        elif isinstance(ev, h2.events.StreamReset):
            if call is not None:
                call.cancelled = True
                call.inbox.put(_END)
            self.window.notify_all()
        elif isinstance(ev, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.notify_all()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self._close_locked()
        return None

    def _close_locked(self) -> None:
        if self.closed:
            return
        self.closed = True
        for call in self.calls.values():
            call.cancelled = True
            call.inbox.put(_END)
        self.window.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def forget(self, call: _Call) -> None:
        with self.lock:
            self.calls.pop(call.stream_id, None)

    def _headers_locked(self, call: _Call) -> None:
        if not call.headers_sent:
            call.headers_sent = True
            self.h2.send_headers(
                call.stream_id, [(":status", "200"), ("content-type", "application/grpc")]
            )

    def send_data(self, call: _Call, data: bytes, flush: bool = True) -> None:
        view = memoryview(data)
        with self.lock:
            try:
                self._headers_locked(call)
                while view:
                    if call.cancelled or self.closed:
                        raise _Cancelled()
                    room = min(
                        self.h2.local_flow_control_window(call.stream_id),
                        self.h2.max_outbound_frame_size,
                        len(view),
                    )
                    if room <= 0:
                        self._flush()
                        self.window.wait(1.0)
                        continue
                    self.h2.send_data(call.stream_id, view[:room].tobytes())
                    view = view[room:]
                    if flush or view:
                        self._flush()
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                raise _Cancelled() from None

    def send_trailers(self, call: _Call, trailers: list[tuple[str, str]]) -> None:
        with self.lock:
            if call.cancelled or self.closed:
                raise _Cancelled()
            try:
                if not call.headers_sent:
                    # trailers-only: one HEADERS frame carries the status
                    call.headers_sent = True
                    self.h2.send_headers(
                        call.stream_id,
                        [(":status", "200"), ("content-type", "application/grpc"), *trailers],
                        end_stream=True,
                    )
                else:
                    self.h2.send_headers(call.stream_id, trailers, end_stream=True)
                self._flush()
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                raise _Cancelled() from None

    def go_away(self) -> None:
        with self.lock:
            if not self.closed:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.close_connection()
                self._flush()

    def idle(self) -> bool:
        with self.lock:
            return not self.calls

    def end_streams(self) -> None:
        """At stop: server streams (Subscribe above all) never end by
        themselves, so they are cancelled rather than waited for."""
        with self.lock:
            for call in self.calls.values():
                if call.method is not None and call.method.server_streaming:
                    call.cancelled = True
                    call.inbox.put(_END)
            self.window.notify_all()

    def close(self) -> None:
        with self.lock:
            self._close_locked()


class _Workers:
    """Threads that run calls. A call may block for as long as its client
    likes (Wait, Subscribe), so there is no upper bound: a call that finds no
    idle thread gets a new one. Reusing threads matters: Thread.start waits
    for the new thread to be scheduled, a GIL hand-off per call."""

    def __init__(self, keep_idle: int) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.idle = 0
        self.keep_idle = keep_idle

    def submit(self, job: Any) -> None:
        with self.lock:
            spawn = self.idle == 0
            if not spawn:
                self.idle -= 1
        self.jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="grpc-call", daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job()
            except Exception:
                log.exception("call failed")
            with self.lock:
                if self.idle >= self.keep_idle:
                    return
                self.idle += 1


class _Stopped:
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class H2Server:
    """The same surface as the grpcio server the wiring uses."""

    def __init__(self, max_workers: int, max_recv: int, max_send: int) -> None:
        # max_workers bounds the idle threads kept, not the calls served
        self.workers = _Workers(min(max_workers, 8))
        self.max_recv = max_recv
        self.max_send = max_send
        self.methods: dict[str, Method] = {}
        self.service_names: set[str] = set()
        self.listeners: list[socket.socket] = []
        self.connections: set[_Connection] = set()
        self.lock = threading.Lock()
        self.stopping = False

    def add_service(self, descriptor: ServiceDescriptor, servicer: object) -> None:
        self.add_methods(descriptor.full_name, methods_of(descriptor, servicer))

    def add_methods(self, service: str, methods: list[Method]) -> None:
        self.service_names.add(service)
        for m in methods:
            self.methods[m.path] = m

    def add_insecure_port(self, address: str) -> int:
        if not address.startswith("unix:"):
            raise RpcStatus(UNAVAILABLE, f"address {address}: only unix sockets are served")
        path = address.removeprefix("unix:").removeprefix("//")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(128)
        self.listeners.append(sock)
        return 0

    def start(self) -> None:
        for sock in self.listeners:
            threading.Thread(
                target=self._accept, args=(sock,), name="grpc-accept", daemon=True
            ).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self.stopping:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            conn = _Connection(self, sock)
            with self.lock:
                if self.stopping:
                    sock.close()
                    return
                self.connections.add(conn)
            self.workers.submit(conn.serve)

    def forget(self, conn: _Connection) -> None:
        with self.lock:
            self.connections.discard(conn)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def stop(self, grace: float | None) -> _Stopped:
        """No new calls; running calls get `grace` seconds, then every
        connection is closed (streams see their clients go)."""
        done = threading.Event()
        with self.lock:
            self.stopping = True
            conns = list(self.connections)
        for sock in self.listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for conn in conns:
            conn.go_away()
            conn.end_streams()

        def finish() -> None:
            deadline = (grace or 0.0) + time.monotonic()
            while time.monotonic() < deadline and not all(c.idle() for c in conns):
                threading.Event().wait(0.05)
            for conn in conns:
                conn.close()
            done.set()

        threading.Thread(target=finish, name="grpc-stop", daemon=True).start()
        return _Stopped(done)
