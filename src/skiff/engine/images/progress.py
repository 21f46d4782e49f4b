"""dockerd's streamed JSON progress lines (pull, push, load, import), so the
docker CLI draws its bars for skiffd as it does for dockerd. Engine layer.
"""

from __future__ import annotations

import json
from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    """go-units' HumanSize: decimal units, four significant digits."""
    size = float(n)
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def bar(current: int, total: int) -> str:
    """The `progress` text of a JSON message, as jsonmessage renders it."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(50, int(current / total * 100) // 2)
    box = f"[{'=' * filled}>{' ' * (50 - filled)}] "
    return box + f"{human_size(current):>8}/{human_size(total)}"


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\r\n").encode()


def status(text: str, ident: str = "") -> bytes:
    obj: dict[str, Any] = {"status": text}
    if ident:
        obj["id"] = ident
    return line(obj)


def layer(text: str, ident: str, current: int | None = None, total: int | None = None) -> bytes:
    """A per-layer message; with byte counts it carries a bar."""
    if current is None:
        return line({"status": text, "progressDetail": {}, "id": ident})
    detail = {"current": current, "total": total or 0}
    return line(
        {
            "status": text,
            "progressDetail": detail,
            "progress": bar(current, total or 0),
            "id": ident,
        }
    )


def stream(text: str) -> bytes:
    return line({"stream": text})


def error(message: str) -> bytes:
    return line({"errorDetail": {"message": message}, "error": message})


def aux(obj: dict[str, Any]) -> bytes:
    return line({"progressDetail": {}, "aux": obj})


def short(digest: str) -> str:
    """The 12 hex characters Docker shows for a layer or an image."""
    return digest.split(":", 1)[-1][:12]
