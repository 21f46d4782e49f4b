"""A TCP proxy on 127.0.0.1 that cuts a connection after it has carried a
number of response bytes: a real broken connection mid-layer."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class CuttingProxy:
    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts_left = 0
        self.requests: list[str] = []  # request head of each connection
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        with self._lock:
            cut = self.cuts_left > 0
        head = b""

        def up() -> None:
            nonlocal head
            try:
                while data := client.recv(65536):
                    if len(head) < 4096:
                        head += data
                    server.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=up, daemon=True)
        t.start()
        sent = 0
        try:
            while data := server.recv(65536):
                if cut and sent + len(data) > self.cut_after:
                    with self._lock:
                        if self.cuts_left > 0:
                            self.cuts_left -= 1
                            client.sendall(data[: self.cut_after - sent])
                            break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self.requests.append(head.split(b"\r\n\r\n")[0].decode(errors="replace"))
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
            server.close()

    def ranges(self) -> list[str]:
        out = []
        for req in self.requests:
            for line in req.split("\r\n"):
                if line.lower().startswith("range:"):
                    out.append(line.split(":", 1)[1].strip())
        return out

    def close(self) -> None:
        self._stop = True
        self._sock.close()


@contextlib.contextmanager
def cutting_proxy(upstream_host: str, cut_after: int) -> Iterator[CuttingProxy]:
    host, port = upstream_host.rsplit(":", 1)
    proxy = CuttingProxy((host, int(port)), cut_after)
    try:
        yield proxy
    finally:
        proxy.close()
