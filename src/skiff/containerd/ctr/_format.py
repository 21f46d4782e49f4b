"""Output shaped like ctr's: Go tabwriter tables, Go time strings, sizes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of run's start-up)
if TYPE_CHECKING:
    from typing import TextIO


def table(
    lines: Sequence[str],
    *,
    minwidth: int = 4,
    padding: int = 4,
    out: TextIO | None = None,
) -> None:
    """Align tab-terminated cells as Go's text/tabwriter does with padchar ' ':
    a cell followed by a tab belongs to a column as wide as its widest cell
    plus padding; the last cell of a line is printed as it is."""
    out = out or sys.stdout
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    for cells in rows:
        text = "".join(cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])) + cells[-1]
        out.write(text + "\n")
    out.flush()


def tab_table(lines: Sequence[str], *, tabwidth: int = 8, out: TextIO | None = None) -> None:
    """tabwriter with padchar '\\t' (ctr content ls): columns padded with tabs."""
    out = out or sys.stdout
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            w = len(cell) + 1
            w = -(-w // tabwidth) * tabwidth
            widths[i] = max(widths.get(i, 0), w)
    for cells in rows:
        parts = []
        for i, cell in enumerate(cells[:-1]):
            parts.append(cell + "\t" * max(1, -(-(widths[i] - len(cell)) // tabwidth)))
        out.write("".join(parts) + cells[-1] + "\n")
    out.flush()


def go_time(t: datetime | None) -> str:
    """time.Time.String(): 2006-01-02 15:04:05.999999999 +0000 UTC."""
    if t is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    t = t.astimezone(UTC)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{frac}" if frac else "") + " +0000 UTC"


def rfc3339(t: datetime | None) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"
    t = t.astimezone(UTC)
    frac = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def binary_size(n: int) -> str:
    """ctr's progress.Bytes: 1012.8 KiB."""
    if n < 1024:
        return f"{n} B"
    div, exp = 1024, 0
    m = n // 1024
    while m >= 1024:
        div *= 1024
        exp += 1
        m //= 1024
    return f"{n / div:.1f} {'KMGTPE'[exp]}iB"


def human_size(n: int) -> str:
    """go-units HumanSize (decimal, 4 significant digits): 1.036MB."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    size = float(n)
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{units[i]}"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "26 seconds", "2 minutes"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def labels_text(labels: dict[str, str] | None) -> str:
    if not labels:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
