"""JSON for the runtime's hot path, from the C accelerator alone.

The json package imports re (and with it enum) at import time, about 10 ms
here; the runtime reads config.json and writes its state on the path to the
container's execve, so it uses the `_json` C module directly. Errors still
raise json.JSONDecodeError (the C code imports json.decoder only then).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _constant(name: str) -> float:
    return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]


def _unserialisable(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


_encode = _json.make_encoder(
    None, _unserialisable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
)
_encode_compact = _json.make_encoder(
    None, _unserialisable, _json.encode_basestring_ascii, None, ":", ",", False, False, True
)


class DecodeError(ValueError):
    """Raised for text that is not one JSON document."""


def loads(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    n = len(text)
    i = 0
    while i < n and text[i] in " \t\r\n":
        i += 1
    try:
        obj, end = _scan(text, i)
    except (StopIteration, ValueError, SystemError):
        end = -1
    if end >= 0:
        while end < n and text[end] in " \t\r\n":
            end += 1
        if end == n:
            return obj
    # the cold path: let the json package word the error
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DecodeError(str(e)) from None


def dumps(obj: Any, compact: bool = False) -> str:
    return "".join((_encode_compact if compact else _encode)(obj, 0))


def dumps_indent(obj: Any, indent: str = "  ", level: int = 0) -> str:
    """Indented output, as Go's json.MarshalIndent writes it."""
    pad = indent * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [
            f"{pad}{dumps(str(k))}: {dumps_indent(v, indent, level + 1)}" for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent * level + "}"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        items = [f"{pad}{dumps_indent(v, indent, level + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + indent * level + "]"
    return dumps(obj)
