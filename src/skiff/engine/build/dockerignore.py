"""`.dockerignore` with Docker's rules: patterns are Go filepath.Match
globs plus `**`, a leading `/` is dropped, `!` makes an exception, the last
matching pattern wins, and a pattern that matches a directory excludes
everything under it. Used by the builder on the context it received.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from dataclasses import dataclass

from skiff.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    exclusion: bool  # a `!` exception
    regex: re.Pattern[str]
    dirs: tuple[str, ...]  # the pattern's directory components


def read(data: str | bytes) -> list[str]:
    """The patterns of a .dockerignore file, cleaned as Docker cleans them."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if data.startswith("\ufeff"):
        data = data[1:]
    out: list[str] = []
    for raw in data.splitlines():
        if raw.startswith("#"):
            continue  # only a `#` in the first column starts a comment
        line = raw.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if line.startswith("//"):
                line = "/" + line.lstrip("/")
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        if invert:
            line = "!" + line
        out.append(line)
    return out


def _regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    out.append(".*")
                else:
                    out.append("(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i < n:
                out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("^"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\")
            out.append("[" + body + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.S)


@functools.lru_cache(maxsize=256)
def _component_regex(pattern: str) -> re.Pattern[str]:
    return _regex(pattern)


def match_component(pattern: str, name: str) -> bool:
    """Go's filepath.Match for one path component: `*`, `?`, classes with `^`
    negation (`[!...]` is a class holding `!`), `\\` escapes."""
    return _component_regex(pattern).match(name) is not None


def compile_patterns(lines: list[str]) -> list[Pattern]:
    patterns: list[Pattern] = []
    for line in lines:
        exclusion = line.startswith("!")
        text = line[1:] if exclusion else line
        if not text:
            raise InvalidArgument('illegal exclusion pattern: "!"')
        patterns.append(
            Pattern(
                text=text,
                exclusion=exclusion,
                regex=_regex(text),
                dirs=tuple(text.split("/")),
            )
        )
    return patterns


class Matcher:
    """Matches context-relative paths (with `/`) against the patterns."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns = compile_patterns(lines)
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        path = posixpath.normpath(path.replace(os.sep, "/")).lstrip("/")
        parents = path.split("/")[:-1]
        matched = False
        for p in self.patterns:
            hit = bool(p.regex.match(path))
            if not hit and parents:
                # a pattern matching a parent directory covers everything below it
                for i in range(len(parents)):
                    if p.regex.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not p.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception could re-include something under an excluded
        directory (so a walk must descend into it)."""
        if not self.has_exclusions:
            return False
        directory = directory.strip("/")
        for p in self.patterns:
            if not p.exclusion:
                continue
            if "**" in p.text or p.text.startswith(directory + "/") or _prefix_glob(p, directory):
                return True
        return False


def _prefix_glob(p: Pattern, directory: str) -> bool:
    """Whether the pattern's leading components could match `directory`."""
    parts = directory.split("/")
    if len(p.dirs) <= len(parts):
        return False
    prefix = "/".join(p.dirs[: len(parts)])
    return bool(_regex(prefix).match(directory))
