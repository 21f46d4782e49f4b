"""skiffd's event bus: what `/events` streams, in Docker's message shape.

Every action the daemon takes on a container, image, volume or network is
published here once; subscribers get a queue each, and a bounded history
answers `since` for clients that connect late.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

HISTORY = 1024


def event(
    kind: str,
    action: str,
    actor_id: str,
    attributes: dict[str, str] | None = None,
    scope: str = "local",
) -> dict[str, Any]:
    now = time.time_ns()
    attrs = dict(attributes or {})
    message: dict[str, Any] = {
        "Type": kind,
        "Action": action,
        "Actor": {"ID": actor_id, "Attributes": attrs},
        "scope": scope,
        "time": now // 1_000_000_000,
        "timeNano": now,
    }
    if kind == "container":
        # the pre-1.22 fields the docker CLI still reads
        message["status"] = action
        message["id"] = actor_id
        message["from"] = attrs.get("image", "")
    elif kind == "image":
        message["status"] = action
        message["id"] = actor_id
    return message


def parse_filters(raw: dict[str, Any] | None) -> dict[str, set[str]]:
    """Docker's filters JSON: {"key": ["v", ...]} or the old {"key": {"v": true}}."""
    result: dict[str, set[str]] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, dict):
            result[key] = {k for k, v in value.items() if v}
        elif isinstance(value, list):
            result[key] = {str(v) for v in value}
        else:
            result[key] = {str(value)}
    return result


def matches(message: dict[str, Any], filters: dict[str, set[str]]) -> bool:
    actor = message["Actor"]
    attrs = actor.get("Attributes", {})
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type":
            ok = message["Type"] in wanted
        elif key in ("event", "action"):
            ok = any(
                message["Action"] == w or message["Action"].startswith(w + ":") for w in wanted
            )
        elif key in ("container", "image", "volume", "network"):
            if message["Type"] != key:
                return False
            ok = (
                actor["ID"] in wanted
                or attrs.get("name") in wanted
                or any(actor["ID"].startswith(w) for w in wanted)
            )
        elif key == "label":
            ok = any(_label_matches(attrs, w) for w in wanted)
        elif key == "scope":
            ok = message.get("scope") in wanted
        else:
            ok = True
        if not ok:
            return False
    return True


def _label_matches(attrs: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if not sep:
        return key in attrs
    return attrs.get(key) == value


class EventBus:
    def __init__(self) -> None:
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, message: dict[str, Any]) -> None:
        self.history.append(message)
        for queue in list(self.subscribers):
            queue.put_nowait(message)

    def emit(
        self, kind: str, action: str, actor_id: str, attributes: dict[str, str] | None = None
    ) -> None:
        self.publish(event(kind, action, actor_id, attributes))

    async def stream(
        self, since: float | None, until: float | None, filters: dict[str, set[str]]
    ) -> AsyncIterator[dict[str, Any]]:
        """Past events from `since`, then live ones until `until` (or forever)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            if since is not None:
                for message in list(self.history):
                    t = message["timeNano"] / 1e9
                    if t >= since and (until is None or t <= until) and matches(message, filters):
                        yield message
            while True:
                timeout = None if until is None else until - time.time()
                if timeout is not None and timeout <= 0:
                    return
                try:
                    message = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    return
                if until is not None and message["timeNano"] / 1e9 > until:
                    return
                if matches(message, filters):
                    yield message
        finally:
            self.subscribers.discard(queue)
