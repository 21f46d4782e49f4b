"""The build context: safe unpacking, scoped lookups, wildcards, digests."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator

import pytest

from skiff.engine.build.context import Context
from skiff.errors import InvalidArgument, NotFound


def make_tar(entries: list[tuple[str, str, str | bytes]]) -> io.BytesIO:
    """entries: (kind, name, data-or-linkname) with kind file|dir|sym|link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for kind, name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "file":
                raw = data.encode() if isinstance(data, str) else data
                ti.size = len(raw)
                ti.mode = 0o644
                tar.addfile(ti, io.BytesIO(raw))
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(ti)
    buf.seek(0)
    return buf


@pytest.fixture
def workdir(tmp_path: str) -> Iterator[str]:
    yield str(tmp_path)


def test_unpack_and_read(workdir: str) -> None:
    body = make_tar(
        [("file", "Dockerfile", "FROM x\n"), ("dir", "src", ""), ("file", "src/a.txt", "A")]
    )
    with Context.from_tar(body, workdir) as ctx:
        assert ctx.read_dockerfile("Dockerfile") == b"FROM x\n"
        assert [r for r, _ in ctx.sources("src/a.txt")] == ["src/a.txt"]
        root = ctx.root
    assert not os.path.exists(root)


def test_plain_dockerfile_body(workdir: str) -> None:
    with Context.from_tar(io.BytesIO(b"FROM busybox\n"), workdir) as ctx:
        assert ctx.read_dockerfile("") == b"FROM busybox\n"


@pytest.mark.parametrize("name", ["../escape", "/etc/abs", "a/../../escape"])
def test_hostile_names_refused(workdir: str, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid build context"):
        Context.from_tar(make_tar([("file", name, "x")]), workdir)
    assert os.listdir(workdir) == []  # nothing left behind
    assert not os.path.exists(os.path.join(os.path.dirname(workdir), "escape"))


def test_symlinks_resolve_inside(workdir: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_text("host secret")
    body = make_tar(
        [
            ("file", "real", "inside"),
            ("sym", "abs", str(outside / "secret")),
            ("sym", "up", "../../../../../../" + str(outside) + "/secret"),
            ("sym", "etc", "/"),
            ("sym", "ok", "real"),
            ("sym", "loop", "loop"),
        ]
    )
    with Context.from_tar(body, workdir) as ctx:
        for name in ("abs", "up", "etc/" + str(outside) + "/secret"):
            host = ctx.resolve(name)
            assert host.startswith(ctx.root + os.sep) or host == ctx.root
            assert not os.path.exists(host)
            with pytest.raises(NotFound, match="file not found in build context"):
                ctx.sources(name)
        assert ctx.resolve("ok") == os.path.join(ctx.root, "real")
        assert ctx.resolve("../../real") == os.path.join(ctx.root, "real")
        with pytest.raises(InvalidArgument, match="too many levels"):
            ctx.resolve("loop")


def test_hardlink_outside_refused(workdir: str) -> None:
    with pytest.raises(InvalidArgument):
        Context.from_tar(make_tar([("link", "hl", "../../etc/passwd")]), workdir)


def test_dockerfile_missing(workdir: str) -> None:
    with (
        Context.from_tar(make_tar([("file", "a", "x")]), workdir) as ctx,
        pytest.raises(NotFound, match=r"Cannot locate specified Dockerfile: Dockerfile\.dev"),
    ):
        ctx.read_dockerfile("Dockerfile.dev")


def test_wildcards(workdir: str) -> None:
    body = make_tar(
        [
            ("file", "a.txt", "a"),
            ("file", "b.txt", "b"),
            ("file", "c.md", "c"),
            ("file", "d/e.txt", "e"),
        ]
    )
    with Context.from_tar(body, workdir) as ctx:
        assert [r for r, _ in ctx.sources("*.txt")] == ["a.txt", "b.txt"]
        assert [r for r, _ in ctx.sources("d/*.txt")] == ["d/e.txt"]
        assert [r for r, _ in ctx.sources("?.md")] == ["c.md"]
        assert ctx.sources("*.none") == []
        assert [r for r, _ in ctx.sources(".")] == ["."]
        assert [r for r, _ in ctx.sources("/a.txt")] == ["a.txt"]


def test_dockerignore_applied(workdir: str) -> None:
    body = make_tar(
        [
            ("file", "Dockerfile", "FROM x"),
            ("file", ".dockerignore", "*.log\nvendor\n!vendor/keep\nDockerfile\n.dockerignore\n"),
            ("file", "a.log", "l"),
            ("file", "app.py", "p"),
            ("file", "vendor/drop", "d"),
            ("file", "vendor/keep", "k"),
            ("file", "sub/b.log", "x"),
        ]
    )
    with Context.from_tar(body, workdir) as ctx:
        assert ctx.read_dockerfile("Dockerfile") == b"FROM x"
        ctx.apply_dockerignore("Dockerfile")
        assert sorted(ctx.walk()) == ["app.py", "sub", "sub/b.log", "vendor", "vendor/keep"]


def test_digest_follows_content_not_times(workdir: str) -> None:
    with Context.from_tar(make_tar([("file", "d/a", "1"), ("file", "d/b", "2")]), workdir) as ctx:
        d1 = ctx.digest(ctx.resolve("d"))
        os.utime(ctx.resolve("d/a"), (1, 1))
        ctx2 = Context(ctx.root, owned=False)
        assert ctx2.digest(ctx.resolve("d")) == d1
        with open(ctx.resolve("d/a"), "w") as f:
            f.write("changed")
        assert Context(ctx.root, owned=False).digest(ctx.resolve("d")) != d1


def test_wildcard_classes_as_go_reads_them(workdir: str) -> None:
    # filepath.Match: `[^...]` negates, `[!...]` is a class that holds `!`
    body = make_tar([("file", n, n) for n in ("a.txt", "b.txt", "!.txt")])
    with Context.from_tar(body, workdir) as ctx:
        assert [r for r, _ in ctx.sources("[^a].txt")] == ["!.txt", "b.txt"]
        assert [r for r, _ in ctx.sources("[!a].txt")] == ["!.txt", "a.txt"]
        assert [r for r, _ in ctx.sources("[a-b].txt")] == ["a.txt", "b.txt"]
