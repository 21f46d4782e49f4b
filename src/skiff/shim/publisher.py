"""Publishes task events from skiff-shim to its supervisor, in order, off the RPC path.

containerd 1.6 takes them on its ttrpc address (TTRPC_ADDRESS in the shim's
environment) as containerd.services.events.ttrpc.v1.Events/Forward; without
that address we fall back to executing the -publish-binary
(`containerd --address A publish --topic T --namespace NS`, the Any on stdin).
An event the supervisor cannot take after a few tries is dropped: on restart
it asks the shim for the state anyway.
"""

from __future__ import annotations

import os
import queue
import threading
import time

from skiff.errors import SkiffError
from skiff.ttrpc import events
from skiff.ttrpc.client import Client
from skiff.ttrpc.protobuf import Any_, Message, Timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Publisher:
    def __init__(
        self,
        *,
        namespace: str,
        ttrpc_address: str,
        publish_binary: str,
        containerd_address: str,
        log: Callable[[str], None],
    ) -> None:
        self._namespace = namespace
        self._ttrpc_address = ttrpc_address
        self._publish_binary = publish_binary
        self._containerd_address = containerd_address
        self._log = log
        self._queue: queue.Queue[tuple[str, Message, int] | None] = queue.Queue()
        self._client: Client | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def publish(self, event: Message) -> None:
        topic = event.TOPIC
        self._queue.put((topic, event, time.time_ns()))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the queue is empty; used before the shim exits."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() or self._busy:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)

    _busy = False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._busy = True
            topic, event, at_ns = item
            for attempt in range(5):
                try:
                    self._send(topic, event, at_ns)
                    break
                except (SkiffError, OSError) as exc:
                    self._drop_client()
                    if attempt == 4:
                        self._log(f"publish {topic}: {exc}; event dropped")
                    else:
                        time.sleep(0.05 * (attempt + 1))
            self._busy = self._queue.qsize() > 0

    def _send(self, topic: str, event: Message, at_ns: int) -> None:
        payload = Any_.pack(event)
        if self._ttrpc_address:
            if self._client is None or self._client.closed:
                self._client = Client(self._ttrpc_address, timeout=5.0)
            envelope = events.Envelope(
                timestamp=Timestamp.from_ns(at_ns),
                namespace=self._namespace,
                topic=topic,
                event=payload,
            )
            self._client.call(
                events.SERVICE,
                "Forward",
                events.ForwardRequest(envelope=envelope).encode(),
                timeout=5.0,
            )
            return
        if not self._publish_binary:
            return
        import subprocess  # only on this fallback path

        # The reaper may collect this child first, so success is all we can know.
        subprocess.run(
            [
                self._publish_binary,
                "--address",
                self._containerd_address,
                "publish",
                "--topic",
                topic,
                "--namespace",
                self._namespace,
            ],
            input=payload.encode(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=10,
        )

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def publisher_from_env(
    namespace: str, publish_binary: str, containerd_address: str, log: Callable[[str], None]
) -> Publisher:
    return Publisher(
        namespace=namespace,
        ttrpc_address=os.environ.get("TTRPC_ADDRESS", ""),
        publish_binary=publish_binary,
        containerd_address=containerd_address,
        log=log,
    )
