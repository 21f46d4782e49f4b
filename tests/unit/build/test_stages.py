"""Multi-stage planning: targets, skipped stages, ARGs before FROM."""

from __future__ import annotations

import pytest

from skiff.engine.build.dockerfile import ParseError, parse
from skiff.engine.build.stages import plan
from skiff.errors import InvalidArgument

DF = (
    "ARG BASE=busybox\n"
    "FROM $BASE AS base\nRUN a\n"
    "FROM busybox AS unused\nRUN b\n"
    "FROM base AS mid\nRUN c\n"
    "FROM scratch\nCOPY --from=mid /x /x\nCOPY --from=0 /y /y\n"
)


def test_last_stage_and_skipping() -> None:
    p = plan(parse(DF))
    assert p.target == 3
    assert p.order == [0, 2, 3]
    assert p.stages[0].base == "busybox"
    assert p.stages[2].base_stage == 0
    assert p.steps == 2 + 2 + 3


def test_target_and_build_arg_in_from() -> None:
    p = plan(parse(DF), target="BASE", build_args={"BASE": "alpine"})
    assert p.order == [0] and p.stages[0].base == "alpine"
    with pytest.raises(InvalidArgument, match="failed to reach build target x in Dockerfile"):
        plan(parse(DF), target="x")


def test_errors() -> None:
    with pytest.raises(ParseError, match="line 1: no build stage in current context"):
        plan(parse("RUN x\n"))
    with pytest.raises(InvalidArgument, match=r"the Dockerfile \(Dockerfile\) cannot be empty"):
        plan(parse("# only a comment\n"))
    with pytest.raises(ParseError, match="duplicate stage name 'a'"):
        plan(parse("FROM x AS a\nFROM y AS A\n"))
    with pytest.raises(ParseError, match="invalid name for build stage"):
        plan(parse("FROM x AS 1abc\n"))
    with pytest.raises(InvalidArgument, match="circular dependency"):
        plan(parse("FROM x AS a\nCOPY --from=a /x /y\n"))


def test_predefined_platform_args_in_from() -> None:
    p = plan(parse("ARG TARGETARCH\nFROM img-${TARGETARCH}\n"), predefined={"TARGETARCH": "amd64"})
    assert p.stages[0].base == "img-amd64"
