"""The Dockerfile word lexer: quotes, escapes and substitutions."""

from __future__ import annotations

import pytest

from skiff.engine.build.shell import ShellLex
from skiff.errors import InvalidArgument

ENV = {"A": "1", "EMPTY": "", "SPACED": "x  y", "PATH_": "/usr/local/bin"}
lex = ShellLex()


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "1"),
        ("${A}", "1"),
        ("pre${A}post", "pre1post"),
        ("$UNSET", ""),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${UNSET-dflt}", "dflt"),
        ("${A:-dflt}", "1"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("${UNSET:-$A}", "1"),
        ("${UNSET:-${A}x}", "1x"),
        ("'$A'", "$A"),
        ('"$A"', "1"),
        ('"a\\"b"', 'a"b'),
        ('"\\$A"', "$A"),
        ("\\$A", "$A"),
        ('"a\\nb"', "a\\nb"),
        ("a\\ b", "a b"),
        ("$", "$"),
        ("a$-b", "a$-b"),
        ("${PATH_#/usr}", "/local/bin"),
        ("${PATH_##*/}", "bin"),
        ("${PATH_%/*}", "/usr/local"),
        ("${PATH_%%/l*}", "/usr"),
        ("${PATH_/local/opt}", "/usr/opt/bin"),
        ("${SPACED}", "x  y"),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert lex.process_word(word, ENV) == expected


def test_process_words_splits_unquoted_expansions() -> None:
    assert lex.process_words("a $SPACED 'c d' \"$SPACED\"", ENV) == ["a", "x", "y", "c d", "x  y"]
    assert lex.process_words("80/tcp ${UNSET}", ENV) == ["80/tcp"]


def test_backtick_escape() -> None:
    assert ShellLex("`").process_word("a`$A\\b", ENV) == "a$A\\b"


def test_errors() -> None:
    with pytest.raises(InvalidArgument, match="missing '}'"):
        lex.process_word("${A", ENV)
    with pytest.raises(InvalidArgument, match="single-quote"):
        lex.process_word("'abc", ENV)
    with pytest.raises(InvalidArgument, match="UNSET: is not allowed to be unset"):
        lex.process_word("${UNSET:?}", ENV)
    with pytest.raises(InvalidArgument, match="UNSET: give it"):
        lex.process_word("${UNSET?give it}", ENV)
    with pytest.raises(InvalidArgument, match="unsupported modifier"):
        lex.process_word("${A:x}", ENV)
