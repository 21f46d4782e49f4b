"""The build context: the tar the client uploads, unpacked under the data
root with the hostile-layer rules (skiff.image.layer), then read only
through `Context`, whose lookups follow symlinks *inside* the context, so
no COPY source can name a file outside it (`..`, absolute paths and
symlinks pointing out all resolve inside).
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from skiff.engine.build import dockerignore
from skiff.errors import InvalidArgument, NotFound
from skiff.image.layer import apply_layer

_MAX_LINKS = 40
_GLOB = re.compile(r"[*?\[]")


class Context:
    """An unpacked build context rooted at `root` (a directory we own)."""

    def __init__(self, root: str, *, owned: bool = True) -> None:
        self.root = os.path.realpath(root)
        self.owned = owned
        self._digests: dict[str, str] = {}

    # -- life cycle --------------------------------------------------------

    @classmethod
    def from_tar(cls, body: BinaryIO, workdir: str) -> Context:
        """Unpack an uploaded context (plain or gzip tar; or a bare
        Dockerfile, which Docker also accepts) into a new directory."""
        os.makedirs(workdir, exist_ok=True)
        root = tempfile.mkdtemp(prefix="context-", dir=workdir)
        ctx = cls(root)
        try:
            # a stream (the request body as it arrives): look at the head, then hand
            # head + rest on without seeking
            head = b""
            while len(head) < 512 and (data := body.read(512 - len(head))):
                head += data
            stream = _Prefixed(head, body)
            if _is_archive(head):
                try:
                    apply_layer(root, stream, chown=False)  # type: ignore[arg-type]
                except InvalidArgument as e:
                    raise InvalidArgument(f"invalid build context: {e}") from None
            else:
                with open(os.path.join(root, "Dockerfile"), "wb") as f:
                    shutil.copyfileobj(stream, f)
            os.chmod(root, 0o755)
        except BaseException:
            ctx.close()
            raise
        return ctx

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def resolve(self, path: str, *, follow_last: bool = True) -> str:
        """The host path of context path `path`, symlinks followed in scope."""
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        resolved: list[str] = []
        links = 0
        while parts:
            comp = parts.pop(0)
            if comp == "..":
                if resolved:
                    resolved.pop()
                continue
            host = os.path.join(self.root, *resolved, comp)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                resolved.append(comp)
                resolved.extend(p for p in parts if p not in ("..",))
                return os.path.join(self.root, *resolved)
            if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
                links += 1
                if links > _MAX_LINKS:
                    raise InvalidArgument(f"{path}: too many levels of symbolic links")
                target = os.readlink(host)
                if target.startswith("/"):
                    resolved = []
                parts[:0] = [p for p in target.split("/") if p not in ("", ".")]
                continue
            resolved.append(comp)
        return os.path.join(self.root, *resolved)

    def read_dockerfile(self, name: str) -> bytes:
        host = self.resolve(name or "Dockerfile")
        try:
            with open(host, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            if not name or name == "Dockerfile":
                # Docker also accepts the lower-case name
                alt = self.resolve("dockerfile")
                if os.path.isfile(alt):
                    with open(alt, "rb") as f:
                        return f.read()
            raise NotFound(f"Cannot locate specified Dockerfile: {name or 'Dockerfile'}") from None

    def apply_dockerignore(self, dockerfile: str) -> None:
        """Remove what .dockerignore excludes (the CLI already left most of it
        out, but it always sends the Dockerfile and .dockerignore themselves,
        and curl or an old client may send everything)."""
        path = os.path.join(self.root, ".dockerignore")
        if not os.path.isfile(path) or os.path.islink(path):
            return
        with open(path, "rb") as f:
            matcher = dockerignore.Matcher(dockerignore.read(f.read()))
        if not matcher.patterns:
            return
        self._prune(matcher, "")

    def _prune(self, matcher: dockerignore.Matcher, rel: str) -> None:
        base = os.path.join(self.root, rel)
        for name in sorted(os.listdir(base)):
            crel = f"{rel}/{name}" if rel else name
            host = os.path.join(base, name)
            is_dir = stat.S_ISDIR(os.lstat(host).st_mode)
            if matcher.excluded(crel):
                if is_dir and matcher.may_include_below(crel):
                    self._prune(matcher, crel)
                    continue
                if is_dir:
                    shutil.rmtree(host)
                else:
                    os.unlink(host)
            elif is_dir:
                self._prune(matcher, crel)

    def walk(self) -> Iterator[str]:
        """Every path in the context (relative, `/`-separated), parents first."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel
            for name in sorted(dirnames + filenames):
                yield f"{rel}/{name}" if rel else name

    def sources(self, pattern: str, *, what: str = "COPY") -> list[tuple[str, str]]:
        """(context path, host path) for a COPY/ADD source, wildcards
        expanded as filepath.Match does; a missing source is Docker's error."""
        clean = posixpath.normpath("/" + pattern.replace("\\", "/")).lstrip("/")
        if clean == "":
            return [(".", self.root)]
        if _GLOB.search(clean):
            matches: list[tuple[str, str]] = []
            depth = clean.count("/")
            for rel in self.walk():
                if rel.count("/") != depth:
                    continue
                if _match(clean, rel):
                    matches.append((rel, self.resolve(rel)))
            return matches
        host = self.resolve(clean)
        if not os.path.lexists(host):
            raise NotFound(
                f"{what} failed: file not found in build context or excluded by "
                f".dockerignore: stat {clean}: file does not exist"
            )
        return [(clean, host)]

    def digest(self, host: str) -> str:
        """A content digest of a file or a tree (names, modes, link targets and
        contents; not times, as Docker's cache ignores them)."""
        cached = self._digests.get(host)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        _hash_tree(h, host, "")
        value = "sha256:" + h.hexdigest()
        self._digests[host] = value
        return value


class _Prefixed:
    """`read(n)` over bytes already read, then the rest of a stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0 or n >= len(self.head):
                data, self.head = self.head, b""
            else:
                data, self.head = self.head[:n], self.head[n:]
            return data
        return self.rest.read(n)


def _match(pattern: str, path: str) -> bool:
    # filepath.Match: `*` and `?` never cross a `/`
    pp, sp = pattern.split("/"), path.split("/")
    return len(pp) == len(sp) and all(
        dockerignore.match_component(p, s) for p, s in zip(pp, sp, strict=True)
    )


def _hash_tree(h: hashlib._Hash, host: str, rel: str) -> None:
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        h.update(f"missing {rel}\0".encode())
        return
    h.update(f"{rel}\0{st.st_mode:o}\0".encode())
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(host).encode() + b"\0")
    elif stat.S_ISREG(st.st_mode):
        with open(host, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    elif stat.S_ISDIR(st.st_mode):
        try:
            names = sorted(os.listdir(host))
        except OSError as e:
            if e.errno != errno.EACCES:
                raise
            names = []
        for name in names:
            _hash_tree(h, os.path.join(host, name), f"{rel}/{name}")


def _is_archive(head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b" or head[:4] == b"\x28\xb5\x2f\xfd":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"
