"""The event exchange of skiff-containerd: services publish, shims forward
(over ttrpc, see forward.py), subscribers receive what their filters match.

A slow subscriber does not hold anyone up: each has a bounded queue, and one
that falls too far behind is dropped (its stream ends), as containerd does.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from skiff.containerd.events.filters import Filter, parse_filters
from skiff.containerd.metadata.db import AnyValue, validate_identifier
from skiff.errors import InvalidArgument

_TOPIC = re.compile(r"^/[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*$")
_QUEUE = 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    timestamp: int  # ns since the epoch
    namespace: str
    topic: str
    event: AnyValue | None

    def field(self, name: str) -> str | None:
        if name == "topic":
            return self.topic
        if name == "namespace":
            return self.namespace
        if name == "event.type" or name == "type":
            return self.event.type_url if self.event else None
        return None


class Subscription:
    def __init__(self, exchange: Exchange, flt: Filter) -> None:
        self._exchange = exchange
        self.filter = flt
        self._queue: queue.Queue[Envelope | None] = queue.Queue(_QUEUE)
        self.closed = False

    def offer(self, env: Envelope) -> None:
        if self.closed or not self.filter.match(env.field):
            return
        try:
            self._queue.put_nowait(env)
        except queue.Full:
            self.close()

    def get(self, timeout: float | None = None) -> Envelope | None:
        """The next event, or None once closed (or after `timeout`)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __iter__(self) -> Iterator[Envelope]:
        while not self.closed:
            env = self.get(timeout=0.5)
            if env is not None:
                yield env

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._exchange._remove(self)
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass


class Exchange:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def publish(self, namespace: str, topic: str, event: AnyValue | None) -> Envelope:
        return self.forward(Envelope(time.time_ns(), namespace, topic, event))

    def forward(self, env: Envelope) -> Envelope:
        validate_identifier("namespace", env.namespace)
        if not _TOPIC.match(env.topic):
            raise InvalidArgument(f"event topic {env.topic!r} is invalid")
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(env)
        return env

    def subscribe(self, filters: Sequence[str] = ()) -> Subscription:
        sub = Subscription(self, parse_filters(filters))
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
