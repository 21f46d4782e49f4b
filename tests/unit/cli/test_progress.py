"""Pull/push progress: per-layer lines redrawn in place on a terminal, plain
status lines elsewhere, errors in the stream raised."""

from __future__ import annotations

import io

import pytest

from skiff.cli.progress import StreamError, display, progress_bar

STREAM = [
    {"status": "Pulling from library/busybox", "id": "latest"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 500, "total": 1000}, "id": "aaa"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:abc"},
    {"aux": {"ID": "x"}},
]


def test_plain_output_has_status_lines_only() -> None:
    out = io.StringIO()
    aux = display(STREAM, out, tty=False)
    assert out.getvalue() == (
        "latest: Pulling from library/busybox\naaa: Pulling fs layer\nbbb: Pulling fs layer\n"
        "aaa: Download complete\nbbb: Pull complete\nDigest: sha256:abc\n"
    )
    assert aux == {"ID": "x"}


def test_terminal_output_redraws_each_layer_line() -> None:
    out = io.StringIO()
    display(STREAM, out, tty=True)
    text = out.getvalue()
    # aaa is line 0 of 2 when its progress arrives: up 2, clear, draw, down 2
    assert "\x1b[2A\x1b[2K\raaa: Downloading [=========================>" in text
    assert "500B/1kB\r\x1b[2B" in text
    assert "\x1b[1A\x1b[2K\rbbb: Pull complete" in text
    assert text.endswith("Digest: sha256:abc\n")


def test_errors_raise() -> None:
    with pytest.raises(StreamError, match="manifest unknown"):
        display([{"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}],
                io.StringIO(), tty=False)  # fmt: skip


def test_progress_bar() -> None:
    assert progress_bar({}) == ""
    assert progress_bar({"current": 2000}) == "     2kB"
    full = progress_bar({"current": 10, "total": 10})
    assert full.startswith("[" + "=" * 50 + "] ")
