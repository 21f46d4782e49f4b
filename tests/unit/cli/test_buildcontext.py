"""The CLI's .dockerignore rules and build-context tar (skiff.cli.buildcontext), checked
against a table of the docker CLI's behaviour and, path for path, against skiffd's own
matcher (skiff.engine.build.dockerignore), which the daemon applies to the same context."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from skiff.cli import buildcontext as bc
from skiff.engine.build import dockerignore as engine_ignore

CASES: list[tuple[list[str], str, bool]] = [
    (["*.log"], "a.log", True),
    (["*.log"], "dir/a.log", False),  # `*` never crosses `/`
    (["**/*.log"], "dir/sub/a.log", True),
    (["**/*.log"], "a.log", True),
    (["dir"], "dir/sub/file", True),  # a directory pattern covers its contents
    (["dir/*"], "dir/sub/file", True),
    (["/secret"], "secret", True),  # a leading / is dropped
    (["./x/../secret"], "secret", True),  # patterns are cleaned
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/drop", True),
    (["!dir/keep", "dir"], "dir/keep", True),  # the last match wins
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["[^a]x"], "bx", True),
    (["[^a]x"], "ax", False),
    (["[!a]x"], "!x", True),  # Go negates with ^ only
    (["**"], "any/thing", True),
    (["dir/**/z"], "dir/z", True),
    (["dir/**/z"], "dir/a/b/z", True),
    (["a\\*b"], "a*b", True),
    (["a\\*b"], "axb", False),
    (["x.txt"], "x_txt", False),  # `.` is literal
]


# where skiffd's matcher (not the CLI's) differs from docker's rules
ENGINE_DIFFERS: set[tuple[str, str]] = set()


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matcher(patterns: list[str], path: str, excluded: bool) -> None:
    lines = bc.parse_dockerignore("\n".join(patterns))
    assert bc.Matcher(lines).matches(path) is excluded
    # skiffd's matcher, run by the daemon over the same context, agrees
    if (patterns[0], path) not in ENGINE_DIFFERS:
        assert (
            engine_ignore.Matcher(engine_ignore.read("\n".join(patterns))).excluded(path)
            is excluded
        )


def test_parse_dockerignore() -> None:
    text = "\ufeff# comment\n\n  *.log  \n/abs/path\n! keep.log\n./a/../b\n"
    assert bc.parse_dockerignore(text) == ["*.log", "abs/path", "!keep.log", "b"]
    with pytest.raises(bc.IgnoreError):
        bc.Matcher(["!"])


def test_build_files_always_sent() -> None:
    out = bc.keep_build_files(["*", "!src"], "Dockerfile", False)
    assert out[-2:] == ["!.dockerignore", "!Dockerfile"]
    assert bc.keep_build_files(["*"], "Dockerfile", True) == ["*", "!.dockerignore"]
    assert bc.keep_build_files(["*.log"], "Dockerfile", False) == ["*.log"]


def names_of(chunks: list[bytes]) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        return tar.getnames()


def test_tar_directory(tmp_path: Path) -> None:
    for rel in ("Dockerfile", "a.log", "src/x.py", "src/y.log", "build/keep", "build/drop",
                "deep/er/z.tmp"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    os.symlink("/etc/passwd", tmp_path / "link")
    os.link(tmp_path / "src/x.py", tmp_path / "hard.py")
    excludes = ["*.log", "build", "!build/keep", "**/*.tmp"]
    chunks = list(bc.tar_directory(str(tmp_path), excludes))
    data = b"".join(chunks)
    # Go's writer ends with two zero blocks and no 10 KiB record padding
    assert data.endswith(b"\0" * 1024) and len(data) % 512 == 0
    names = names_of(chunks)
    # `*.log` stays at the top: src/y.log is sent, as docker sends it
    assert names == ["Dockerfile", "build/keep", "deep", "deep/er", "hard.py", "link", "src",
                     "src/x.py", "src/y.log"]  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        link = tar.getmember("link")
        assert link.issym() and link.linkname == "/etc/passwd"  # sent as a link, not followed
        assert tar.getmember("src/x.py").islnk()  # the second name of a hard link
        assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers())


def test_dockerfile_from_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    name, extra = bc.add_dockerfile(b"*.log", b"FROM scratch\n")
    assert name.startswith(".dockerfile.") and extra[name] == b"FROM scratch\n"
    assert extra[".dockerignore"] == f"*.log\n{name}\n".encode()
    names = names_of(list(bc.tar_directory(str(tmp_path), ["*.log"], extra)))
    assert names == ["f", name, ".dockerignore"]


def test_stdin_detection() -> None:
    assert bc.is_archive(bc.tar_single("Dockerfile", b"FROM scratch\n"))
    assert bc.is_archive(b"\x1f\x8b\x08rest")
    assert not bc.is_archive(b"FROM busybox\nRUN true\n")


def test_natural_order_as_the_docker_cli_sorts_names() -> None:
    from skiff.cli.formatting import natural_key

    names = ["n45407125", "n4f1463b0", "bridge", "a10", "a9", "a-1", "a09"]
    assert sorted(names, key=natural_key) == [
        "a-1",
        "a9",
        "a09",
        "a10",
        "bridge",
        "n4f1463b0",
        "n45407125",
    ]
