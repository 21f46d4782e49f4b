"""Detach keys: docker's key syntax and the escape sequence held back from the container."""

from __future__ import annotations

import pytest

from skiff.cli.streams import Detached, EscapeWatcher, parse_detach_keys


def test_parse_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-[") == b"\x00\x1b"
    with pytest.raises(ValueError):
        parse_detach_keys("alt-x")


def test_escape_sequence_detaches_and_is_not_sent() -> None:
    w = EscapeWatcher(b"\x10\x11")
    assert w.feed(b"ls\r") == b"ls\r"
    assert w.feed(b"\x10") == b""  # held back: it may start the sequence
    with pytest.raises(Detached):
        w.feed(b"\x11")


def test_partial_sequence_is_passed_on() -> None:
    w = EscapeWatcher(b"\x10\x11")
    assert w.feed(b"\x10") == b""
    assert w.feed(b"a") == b"\x10a"
    assert w.feed(b"\x10\x10") == b"\x10"  # the second ctrl-p may still start the sequence
    with pytest.raises(Detached):
        w.feed(b"\x11")
    assert EscapeWatcher(b"").feed(b"\x10\x11") == b"\x10\x11"
