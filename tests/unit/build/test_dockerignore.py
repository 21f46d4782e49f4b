""".dockerignore: Docker's reading and matching rules."""

from __future__ import annotations

import pytest

from skiff.engine.build.dockerignore import Matcher, read
from skiff.errors import InvalidArgument


def test_read_cleans_like_docker() -> None:
    text = "# comment\n\n  spaced  \n/abs/x\n!/keep\n ./a/../b\n  # not a comment\n//dbl\n"
    assert read(text) == ["spaced", "abs/x", "!keep", "b", "# not a comment", "dbl"]


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.md"], "README.md", True),
        (["*.md"], "docs/README.md", False),  # `*` does not cross `/`
        (["**/*.md"], "docs/a/README.md", True),
        (["**/*.md"], "README.md", True),
        (["docs"], "docs/a/b.txt", True),  # a directory excludes its contents
        (["docs/**"], "docs/a/b.txt", True),
        (["**"], "anything/at/all", True),
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["a/**/b"], "a/x/y/c", False),
        (["tmp?"], "tmp1", True),
        (["tmp?"], "tmp12", False),
        (["[a-c].txt"], "b.txt", True),
        (["[^a-c].txt"], "b.txt", False),
        (["[^a-c].txt"], "d.txt", True),
        (["*", "!keep.txt"], "keep.txt", False),
        (["*", "!keep.txt"], "other.txt", True),
        (["!keep.txt", "*"], "keep.txt", True),  # the last match wins
        (["*.log", "!important.log", "important.log"], "important.log", True),
        (["/root.txt"], "root.txt", True),
        (["dir/*.txt"], "dir/a.txt", True),
        (["dir/*.txt"], "dir/sub/a.txt", False),
        (["\\*literal"], "*literal", True),
        (["\\*literal"], "xliteral", False),
        (["a.b"], "axb", False),  # dots are literal
    ],
)
def test_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert Matcher(read("\n".join(patterns))).excluded(path) is excluded


def test_exception_inside_excluded_directory_needs_descent() -> None:
    m = Matcher(read("vendor\n!vendor/keep\n"))
    assert m.excluded("vendor/drop")
    assert not m.excluded("vendor/keep")
    assert m.may_include_below("vendor")
    assert not m.may_include_below("other")
    assert not Matcher(read("vendor\n")).may_include_below("vendor")


def test_lone_bang_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="illegal exclusion pattern"):
        Matcher(["!"])
