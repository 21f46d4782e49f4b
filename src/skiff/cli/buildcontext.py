"""The build context `skiff build` uploads: a tar of a directory that honours
.dockerignore as the docker CLI does, a tar or a Dockerfile read from stdin,
and a Dockerfile from elsewhere added under a private name.

Part of the CLI (DESIGN.md: skiff CLI -> Engine API POST /build). skiffd's
builder has a matcher of its own (skiff.engine.build.dockerignore); the CLI
keeps its own small copy of the rules so that it depends on no engine module
and imports nothing heavy at start-up.

The rules (moby's patternmatcher and the docker CLI's build context code):
patterns are cleaned paths (a leading `/` dropped), `*` and `?` never match
`/`, `**` matches any number of path elements, `\\` escapes; a pattern also
matches when it matches the leading elements of a path (so a directory
pattern covers its contents); `!` makes an exception; the last pattern that
matches decides. An excluded directory is still walked when an exception
could match inside it.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import secrets
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class IgnoreError(ValueError):
    pass


@dataclass
class Pattern:
    text: str  # cleaned, without the `!`
    exclusion: bool
    regex: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.regex = re.compile(glob_to_regex(self.text))

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def glob_to_regex(pattern: str) -> str:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":  # `**/` is `**`
                    i += 1
                # `**` at the end matches everything, as in .gitignore; elsewhere any
                # number of elements (also none)
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        elif ch == "[":
            # a character class, copied through as Go's regexp reads it: `[^...]` is
            # negated, `[!...]` is not (as in filepath.Match)
            end = pattern.find("]", i + 1)
            if end < 0:
                raise IgnoreError(f"syntax error in pattern: {pattern}")
            out.append("[" + pattern[i:end] + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
    out.append("$")
    return "".join(out)


def parse_dockerignore(text: str) -> list[str]:
    """The lines of a .dockerignore as the docker CLI reads them."""
    out = []
    for lineno, line in enumerate(text.splitlines()):
        if lineno == 0:
            line = line.removeprefix("\ufeff")
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/") or "/"
        out.append("!" + line if invert else line)
    return out


class Matcher:
    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
                if not p:
                    raise IgnoreError('illegal exclusion pattern: "!"')
            p = posixpath.normpath(p)
            if p == ".":
                continue
            self.patterns.append(Pattern(p, exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether path (relative, `/`-separated) or one of its parents is excluded."""
        path = posixpath.normpath(path)
        parts = path.split("/")
        matched = False
        for p in self.patterns:
            hit = p.match(path) or any(p.match("/".join(parts[:i])) for i in range(1, len(parts)))
            if hit:
                matched = not p.exclusion
        return matched

    def may_include_under(self, directory: str) -> bool:
        """Whether an exception could bring back something under an excluded directory."""
        prefix = directory + "/"
        for p in self.patterns:
            if not p.exclusion:
                continue
            # only an exception spelled under the directory reopens it (not `!**/x`)
            if (p.text + "/").startswith(prefix):
                return True
        return False


def keep_build_files(
    excludes: list[str], dockerfile: str, dockerfile_from_stdin: bool
) -> list[str]:
    """The docker CLI always sends .dockerignore and the Dockerfile; the daemon drops them."""
    m = Matcher(excludes)
    out = list(excludes)
    if m.matches(".dockerignore"):
        out.append("!.dockerignore")
    if not dockerfile_from_stdin and m.matches(dockerfile):
        out.append("!" + dockerfile)
    return out


# -- the tar ----------------------------------------------------------------


class _Sink(io.RawIOBase):
    """What tarfile writes in stream mode, collected for the generator to hand on."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.offset

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(b))
        self.offset += len(b)
        return len(b)

    def open_tar(self) -> tarfile.TarFile:
        # closed by end(), never by close(): no context manager
        return tarfile.open(fileobj=self, mode="w", format=tarfile.PAX_FORMAT)

    def end(self, tar: tarfile.TarFile) -> bytes:
        """Close tar as Go's writer does: two zero blocks, no padding to a 10 KiB record
        (so the size printed while sending is the docker CLI's)."""
        self.write(b"\0" * 1024)
        tar.closed = True  # type: ignore[attr-defined]
        return self.take()

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def walk_context(root: str, matcher: Matcher) -> Iterator[str]:
    """Relative paths to send, parents before children, in Go's lexical walk order."""

    def walk(rel: str) -> Iterator[str]:
        full = os.path.join(root, rel) if rel else root
        try:
            names = sorted(os.listdir(full))
        except OSError as e:
            raise IgnoreError(f"can't stat '{full}': {e.strerror}") from None
        for name in names:
            child = f"{rel}/{name}" if rel else name
            is_dir = os.path.isdir(os.path.join(root, child)) and not os.path.islink(
                os.path.join(root, child)
            )
            if matcher.matches(child):
                if is_dir and matcher.has_exclusions and matcher.may_include_under(child):
                    yield from walk(child)
                continue
            yield child
            if is_dir:
                yield from walk(child)

    yield from walk("")


def tar_directory(root: str, excludes: list[str],
                  extra: dict[str, bytes] | None = None) -> Iterator[bytes]:  # fmt: skip
    """A tar of root (owner 0:0, as the docker CLI sends it), streamed as it is made.

    extra adds (or replaces) regular files at the top of the archive, for a
    Dockerfile from stdin and the .dockerignore that hides it.
    """
    matcher = Matcher(excludes)
    extra = dict(extra or {})
    sink = _Sink()
    tar = sink.open_tar()
    links: dict[tuple[int, int], str] = {}
    now = time.time()
    for rel in walk_context(root, matcher):
        if rel in extra:
            continue
        full = os.path.join(root, rel)
        st = os.lstat(full)
        if stat.S_ISSOCK(st.st_mode):
            continue
        info = tar.gettarinfo(full, arcname=rel)
        info.mtime = int(st.st_mtime)  # whole seconds, as docker's archive (a float needs pax)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if info.isreg() and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in links:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, links[key], 0
            else:
                links[key] = rel
        if info.isreg() and info.type != tarfile.LNKTYPE:
            try:
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            except PermissionError:
                raise IgnoreError(f"can't access '{full}'") from None
        else:
            tar.addfile(info)
        data = sink.take()
        if data:
            yield data
    for name, content in extra.items():
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(content), 0o600, int(now)
        tar.addfile(info, io.BytesIO(content))
    yield sink.end(tar)


def tar_single(name: str, content: bytes) -> bytes:
    sink = _Sink()
    tar = sink.open_tar()
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(content), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(content))
    return sink.end(tar)


def is_archive(head: bytes) -> bool:
    """What the docker CLI takes for a context on stdin: a tar, compressed or not."""
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    if head[:4] == b"\x28\xb5\x2f\xfd":  # zstd
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def private_dockerfile_name() -> str:
    return ".dockerfile." + secrets.token_hex(10)


def add_dockerfile(excludes_text: bytes | None, dockerfile: bytes) -> tuple[str, dict[str, bytes]]:
    """A Dockerfile from outside the context: a private name, hidden by .dockerignore."""
    name = private_dockerfile_name()
    ignore = (excludes_text or b"") + f"\n{name}\n".encode()
    return name, {name: dockerfile, ".dockerignore": ignore}
