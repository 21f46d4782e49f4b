"""Inspect answers seen as the docker CLI sees them: decoded into Go structs.

Part of the CLI (DESIGN.md: skiff CLI, formatting). `docker inspect --format`
runs its template over the answer decoded into the API's Go types (only when
that fails, over the raw JSON), so `{{json .Config}}` prints the fields in the
Go struct's order, fills absent fields with zero values, drops unknown ones and
`omitempty` ones that are empty, and sorts map keys; `{{.HostConfig.RestartPolicy}}`
prints a struct as `{no 0}`. `typed` builds that view from the daemon's JSON
with the shapes in goshapes.py; `go_json` encodes a value as Go's encoder does.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from skiff.cli.goshapes import ROOTS, STRUCTS


@cache
def fields(struct: str) -> tuple[tuple[str, str, bool], ...]:
    """(name, Go type, omitempty) of each field of a struct, in declaration order."""
    out = []
    for spec in STRUCTS[struct]:
        name, _, rest = spec.partition(" ")
        typ, _, opts = rest.partition(",")
        out.append((name, typ, opts == "omitempty"))
    return tuple(out)


class GoStruct(dict[str, Any]):
    """A Go struct value: every field, in declaration order."""

    __slots__ = ("shape",)

    def __init__(self, shape: str, values: dict[str, Any]) -> None:
        super().__init__(values)
        self.shape = shape

    def missing_field(self, name: str) -> str:
        return f"can't evaluate field {name} in type {self.shape}"

    def go_string(self) -> str:
        from skiff.cli.gotemplate import go_str

        return "{" + " ".join(go_str(v) for v in self.values()) + "}"


class GoMap(dict[str, Any]):
    """A Go map value (its keys come out sorted, in JSON as in fmt)."""


class GoTime(str):
    """A time.Time: RFC 3339 with nanoseconds in JSON, Go's String() when printed."""

    __slots__ = ()

    def go_string(self) -> str:
        m = TIME_RE.fullmatch(self)
        if m is None:
            return str(self)
        day, clock, frac, zone = m.groups()
        if zone == "Z":
            return f"{day} {clock}{frac or ''} +0000 UTC"
        offset = zone.replace(":", "")
        return f"{day} {clock}{frac or ''} {offset} {offset}"


TIME_RE = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")
ZERO_TIME = GoTime("0001-01-01T00:00:00Z")


def go_time(v: Any) -> GoTime:
    if not isinstance(v, str):
        return ZERO_TIME
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", v)
    if m is None:
        return GoTime(v)
    base, frac, zone = m.groups()
    # time.Time keeps nanoseconds; RFC3339Nano drops trailing zeros, UTC is "Z"
    frac = (frac or "")[:9].rstrip("0")
    zone = "Z" if zone in ("Z", "+00:00", "-00:00") else zone
    return GoTime(base + (f".{frac}" if frac else "") + zone)


def typed(v: Any, typ: str) -> Any:
    """The value of Go type `typ` that json.Unmarshal makes of v (None is nil)."""
    if typ.startswith("*"):
        return None if v is None else typed(v, typ[1:])
    if typ.startswith("[]"):
        if isinstance(v, str) and typ == "[]string":
            return [v]  # strslice.StrSlice takes a lone string too
        return [typed(x, typ[2:]) for x in v] if isinstance(v, list) else None
    if typ.startswith("[2]"):
        items = (list(v) if isinstance(v, list) else []) + [None, None]
        return [typed(x, typ[3:]) for x in items[:2]]
    if typ.startswith("map[string]"):
        if not isinstance(v, dict):
            return None
        return GoMap({str(k): typed(x, typ[11:]) for k, x in v.items()})
    if typ == "string":
        return v if isinstance(v, str) else ""
    if typ == "bool":
        return v if isinstance(v, bool) else False
    if typ == "int":
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0
    if typ == "float":
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0
    if typ == "bytes":
        return v if isinstance(v, str) else None
    if typ == "any":
        return untyped(v)
    if typ == "time.Time":
        return go_time(v)
    src = v if isinstance(v, dict) else {}
    return GoStruct(typ, {name: typed(src.get(name), t) for name, t, _ in fields(typ)})


def untyped(v: Any) -> Any:
    """What json.Unmarshal makes of v in an interface{}: maps (sorted), floats."""
    if isinstance(v, dict):
        return GoMap({str(k): untyped(x) for k, x in v.items()})
    if isinstance(v, list):
        return [untyped(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def typed_root(kind: str, obj: Any) -> Any:
    """The inspect answer of a container, image, network or volume as Go structs."""
    root = ROOTS.get(kind)
    return typed(obj, root) if root is not None else obj


def empty(v: Any, typ: str) -> bool:
    """Go's omitempty test: false, 0, nil and zero-length values; structs never."""
    if typ.startswith("*") or typ in ("any", "bytes") or typ.startswith(("[]", "map[")):
        return v is None or (not typ.startswith("*") and len(v) == 0)
    if typ in ("string", "bool", "int", "float"):
        return not v
    return False


def go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'f' or 'e', -1, 64) as encoding/json chooses."""
    if f != f or f in (float("inf"), float("-inf")):
        return "null"
    r = repr(f)
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return re.sub(r"e-0(\d)$", r"e-\1", r)  # encoding/json writes e-7, not e-07
    if "e" in r or "E" in r:
        from decimal import Decimal

        r = format(Decimal(r), "f")
    return r[:-2] if r.endswith(".0") else r


def go_json(v: Any, indent: str = "", escape_html: bool = False, depth: int = 0) -> str:
    """Go's JSON encoding of v: the docker CLI's `json` function (SetEscapeHTML(false)),
    or with escape_html json.Marshal, and with indent json.MarshalIndent(v, "", indent)."""

    def sub(x: Any) -> str:
        return go_json(x, indent, escape_html, depth + 1)

    def key(k: str) -> str:
        return go_string_json(k, escape_html) + (": " if indent else ":")

    def wrap(open_: str, items: list[str], close: str) -> str:
        if not items:
            return open_ + close
        if not indent:
            return open_ + ",".join(items) + close
        inner = "\n" + indent * (depth + 1)
        return open_ + inner + ("," + inner).join(items) + "\n" + indent * depth + close

    if v is None:
        return "null"
    if isinstance(v, GoStruct):
        parts = []
        for name, typ, omit in fields(v.shape):
            value = v.get(name)
            if omit and empty(value, typ):
                continue
            parts.append(key(name) + sub(value))
        return wrap("{", parts, "}")
    if isinstance(v, dict):
        return wrap("{", [key(str(k)) + sub(v[k]) for k in sorted(v)], "}")
    if isinstance(v, list | tuple):
        return wrap("[", [sub(x) for x in v], "]")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    return go_string_json(v if isinstance(v, str) else str(v), escape_html)


def go_string_json(s: str, escape_html: bool = False) -> str:
    # Go escapes U+2028 and U+2029 even without HTML escaping; the rest as Python does
    out = json.dumps(s, ensure_ascii=False)
    out = out.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if escape_html:
        out = out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return out
