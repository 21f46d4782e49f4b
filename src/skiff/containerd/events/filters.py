"""containerd's filter syntax, the basics: `field==value`, `field!=value`,
`field~=regexp` and bare `field` (present), joined by `,` (and); several
filters are alternatives (or). Fields are looked up by a callable, so the
same parser serves events (topic, namespace) and listings (name, labels.x).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skiff.errors import InvalidArgument

Lookup = Callable[[str], "str | None"]

_SEG = r'(?:[A-Za-z0-9_\-/\\]+|"[^"]*")'
_CLAUSE = re.compile(r"^\s*(" + _SEG + r"(?:\." + _SEG + r")*)\s*(?:(==|!=|~=)\s*(.*?))?\s*$")


@dataclass(frozen=True, slots=True)
class _Clause:
    field: str
    op: str  # "", "==", "!=", "~="
    value: str
    regexp: re.Pattern[str] | None

    def match(self, lookup: Lookup) -> bool:
        have = lookup(self.field)
        if self.op == "":
            return have is not None
        if self.op == "==":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        assert self.regexp is not None
        return have is not None and self.regexp.search(have) is not None


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'/":
        return text[1:-1]
    return text


def _split(expr: str) -> list[str]:
    """Split on commas outside quotes."""
    out, cur, quote = [], "", ""
    for ch in expr:
        if quote:
            cur += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur += ch
        elif ch == ",":
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if quote:
        raise InvalidArgument(f"filter {expr!r}: unterminated quote")
    out.append(cur)
    return out


@dataclass(frozen=True, slots=True)
class Filter:
    alternatives: tuple[tuple[_Clause, ...], ...]

    def match(self, lookup: Lookup) -> bool:
        if not self.alternatives:
            return True
        return any(all(c.match(lookup) for c in clauses) for clauses in self.alternatives)


def parse_filters(filters: Sequence[str]) -> Filter:
    alternatives = []
    for expr in filters:
        if not expr.strip():
            continue
        clauses = []
        for part in _split(expr):
            m = _CLAUSE.match(part)
            if m is None:
                raise InvalidArgument(f"filter {expr!r}: cannot parse {part.strip()!r}")
            field, op, value = _unquote(m.group(1)), m.group(2) or "", _unquote(m.group(3) or "")
            regexp = None
            if op == "~=":
                try:
                    regexp = re.compile(value)
                except re.error as e:
                    raise InvalidArgument(f"filter {expr!r}: bad regexp: {e}")
            clauses.append(_Clause(field, op, value, regexp))
        alternatives.append(tuple(clauses))
    return Filter(tuple(alternatives))


def labels_lookup(fields: dict[str, str], labels: dict[str, str]) -> Lookup:
    """A lookup over plain fields plus `labels.KEY` (and `labels."KEY"`)."""

    def lookup(name: str) -> str | None:
        if name.startswith("labels."):
            return labels.get(_unquote(name[len("labels.") :]))
        return fields.get(name)

    return lookup
