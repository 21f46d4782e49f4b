"""Output formatting shared by the CLI's commands: Go's tabwriter, docker's
units (sizes, durations), --format handling (table, json, Go templates).

Part of the CLI (DESIGN.md: skiff CLI). Mirrors the docker CLI's formatter
package so `skiff X --format ...` prints what `docker X --format ...` prints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from skiff.cli.gotemplate import Template, TemplateError


def tabwrite(rows: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells like Go's tabwriter (docker: 10, 1, 3, ' ', 0).

    A line's last cell (not ended by a tab) takes no part in the alignment.
    """
    lines = [r.split("\t") for r in rows]
    widths: dict[int, int] = {}
    for cells in lines:
        for i, c in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, minwidth), len(c) + padding)
    out = []
    for cells in lines:
        parts = [c.ljust(widths[i]) for i, c in enumerate(cells[:-1])]
        parts.append(cells[-1])
        out.append("".join(parts))
    return "".join(line + "\n" for line in out)


def human_size(size: float, precision: int = 3) -> str:
    """units.HumanSizeWithPrecision: decimal units, %.<precision>g."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def bytes_size(size: float) -> str:
    """units.BytesSize: binary units, %.4g (used by stats)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{units[i]}"


def human_duration(seconds: float) -> str:
    """units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(unix: float) -> str:
    return human_duration(time.time() - unix) + " ago"


def parse_time(s: str) -> float:
    """An RFC 3339 timestamp with nanoseconds, as the daemon writes them."""
    if not s or s.startswith("0001-01-01"):
        return 0.0
    main, _, frac = s.rstrip("Z").partition(".")
    tz = "+00:00"
    for sep in ("+", "-"):
        if sep in frac:
            frac, _, rest = frac.partition(sep)
            tz = sep + rest
            break
    else:
        if len(main) > 19:
            main, tz = main[:19], main[19:]
    base = datetime.fromisoformat(main + tz).timestamp()
    return base + (float("0." + frac) if frac.isdigit() else 0.0)


def go_time(unix: float) -> str:
    """time.Time's String() in local time: 2006-01-02 15:04:05 -0700 MST."""
    dt = datetime.fromtimestamp(unix, UTC).astimezone()
    return dt.strftime("%Y-%m-%d %H:%M:%S %z ") + (dt.tzname() or "UTC")


def ellipsis(s: str, width: int) -> str:
    if len(s) <= width:
        return s
    return s[: width - 1] + "…"


def natural_less(a: str, b: str) -> bool:
    """The docker CLI's natural order (sortorder.NaturalLess): runs of digits compare
    as numbers, everything else byte by byte."""
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i].isdigit() and b[j].isdigit():
            si, sj = i, j
            while i < len(a) and a[i].isdigit():
                i += 1
            while j < len(b) and b[j].isdigit():
                j += 1
            na, nb = a[si:i].lstrip("0"), b[sj:j].lstrip("0")
            if len(na) != len(nb):
                return len(na) < len(nb)
            if na != nb:
                return na < nb
            if i - si != j - sj:
                return i - si < j - sj
        else:
            if a[i] != b[j]:
                return a[i] < b[j]
            i += 1
            j += 1
    return len(a) - i < len(b) - j


def natural_key(name: str) -> Any:
    import functools

    def compare(x: str, y: str) -> int:
        return -1 if natural_less(x, y) else (1 if natural_less(y, x) else 0)

    return functools.cmp_to_key(compare)(name)


def short_id(id: str) -> str:
    return id.split(":", 1)[-1][:12]


class Formatter:
    """Renders objects with a docker --format: "", "table", "table TEMPLATE", "json", TEMPLATE.

    Rows are dicts or objects whose attributes the template reads; headers
    maps field names to column titles for table output.
    """

    def __init__(self, fmt: str, default_table: str, headers: dict[str, str],
                 funcs: dict[str, Callable[..., Any]] | None = None, go_type: str = "",
                 errors: tuple[str, str] = ("template parsing error",) * 2) -> None:  # fmt: skip
        # go_type: the docker CLI's context type, named when a field is missing; errors:
        # what its command says before a parse and an execution error (ps differs)
        self.go_type = go_type
        self.errors = errors
        fmt = fmt or default_table
        self.json = fmt.strip() == "json"
        # a row marshals as the docker CLI's formatter contexts do: keys sorted, HTML escaped
        funcs = {"json": row_json, **(funcs or {})}
        self.table = fmt.startswith("table")
        if self.table:
            body = fmt[len("table") :].strip()
            fmt = body or default_table[len("table") :].strip()
        try:
            self.template = None if self.json else Template(unescape(fmt), funcs)
        except TemplateError as e:
            raise template_failure(errors[0], e) from None
        self.headers = headers

    def typed(self, row: Any) -> Any:
        if not self.go_type:
            return row
        if type(row) is dict:
            return GoRow(row, self.go_type)
        try:
            row.go_type = self.go_type
        except AttributeError:
            pass
        return row

    def render(self, rows: Iterable[Any], out: TextIO) -> None:
        if self.json:
            for r in rows:
                out.write(row_json(r) + "\n")
            return
        assert self.template is not None
        lines = []
        try:
            if self.table:
                lines.append(self.template.render(HeaderRow(self.headers)))
            for r in rows:
                lines.append(self.template.render(self.typed(r)))
        except TemplateError as e:
            raise template_failure(self.errors[1], e) from None
        if self.table:
            out.write(tabwrite(lines))
        else:
            for line in lines:
                out.write(line + "\n")


def template_failure(what: str, e: Exception) -> Exception:
    from skiff.cli.common import StatusError

    return StatusError(1, f"{what}: {e}")


class GoRow(dict[str, Any]):
    """A row as the docker CLI's formatter context: a field it lacks is an error."""

    def __init__(self, fields: dict[str, Any], go_type: str) -> None:
        super().__init__(fields)
        self.go_type = go_type

    def missing_field(self, name: str) -> str:
        return f"can't evaluate field {name} in type {self.go_type}"


class LabeledRow(dict[str, Any]):
    """A row of ps, network ls or volume ls: its fields, and docker's `.Label "key"`
    method over the object's labels (the Labels field itself is the joined string)."""

    def __init__(self, labels: dict[str, str] | None, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.labels = dict(labels or {})

    def Label(self, name: str) -> str:  # Go method name, as templates call it
        return self.labels.get(name, "")

    def missing_field(self, name: str) -> str | None:
        go_type = getattr(self, "go_type", "")
        if not go_type or callable(getattr(type(self), name, None)):
            return None
        return f"can't evaluate field {name} in type {go_type}"


class HeaderRow:
    """The header of a table: every field renders as its column title."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.h = headers

    def __getattr__(self, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.h.get(name, name.upper())

    def Label(self, name: str) -> str:  # Go method name, as templates call it
        # docker titles the column with the key's last dotted part, - and _ as spaces
        return name.split(".")[-1].replace("-", " ").replace("_", " ")


def row_json(v: Any) -> str:
    """Go's json.Marshal of a formatter context: sorted keys, <, > and & escaped."""
    text = json.dumps(as_dict(v), separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def as_dict(r: Any) -> Any:
    if isinstance(r, dict):
        return r
    fields = getattr(r, "FIELDS", None)
    if fields:
        return {f: getattr(r, f) for f in fields}
    return r


def unescape(fmt: str) -> str:
    # docker's formatter turns the two-character sequences \t and \n into real ones
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render_template(fmt: str, obj: Any) -> str:
    return Template(unescape(fmt)).render(obj)


class StrictMap(dict[str, Any]):
    """Raw JSON as the docker CLI's inspect fallback sees it (missingkey=error)."""

    def missing_field(self, name: str) -> str:
        return f'map has no entry for key "{name}"'


def strict(v: Any) -> Any:
    if isinstance(v, dict):
        return StrictMap({k: strict(x) for k, x in v.items()})
    if isinstance(v, list):
        return [strict(x) for x in v]
    return v


def render_inspect(fmt: str, kind: str, obj: Any, fallback: bool = True) -> str:
    """An inspect template as the docker CLI runs it: over the answer decoded into the
    API's Go structs, and only if that fails over the raw JSON with missingkey=error."""
    from skiff.cli.goshape import go_json, typed_root
    from skiff.cli.gotemplate import NO_VALUE

    template = Template(unescape(fmt), {"json": lambda v: go_json(None if v is NO_VALUE else v)})
    try:
        return template.render(typed_root(kind, obj))
    except TemplateError:
        if not fallback:
            raise
        return template.render(strict(obj))


__all__ = ["Formatter", "TemplateError", "ago", "human_duration", "human_size", "tabwrite"]
