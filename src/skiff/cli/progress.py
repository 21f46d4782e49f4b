"""Rendering of the daemon's JSON progress streams (pull, push, load, import).

Part of the CLI (DESIGN.md: skiff CLI). In a terminal each layer keeps its own
line and is redrawn in place with cursor movements, as docker's jsonmessage
does; elsewhere only the status lines are printed and progress updates are
dropped, so logs stay readable. Imported only by the commands that stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

from skiff.cli.formatting import human_size


class StreamError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def progress_bar(detail: dict[str, Any], width: int = 50) -> str:
    current = detail.get("current") or 0
    total = detail.get("total") or 0
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current, 4):>8}"
    pct = min(int(current / total * 100) // 2, 50)
    if current < total:
        bar = "[" + "=" * pct + ">" + " " * max(width - pct, 0) + "] "
    else:
        bar = "[" + "=" * pct + "] "
    return bar + f"{human_size(current, 4):>8}/{human_size(total, 4)}"


def display(messages: Iterable[dict[str, Any]], out: TextIO, tty: bool) -> dict[str, Any]:
    """Print a progress stream; raise StreamError on an error message; return the aux data."""
    lines: dict[str, int] = {}
    aux: dict[str, Any] = {}
    for jm in messages:
        if jm.get("errorDetail") or jm.get("error"):
            raise StreamError(str((jm.get("errorDetail") or {}).get("message") or jm.get("error")))
        if "aux" in jm:
            aux.update(jm["aux"] or {})
            continue
        has_progress = "progressDetail" in jm or bool(jm.get("progress"))
        jid = jm.get("id", "")
        diff = 0
        if jid and has_progress:
            if jid not in lines:
                lines[jid] = len(lines)
                if tty:
                    out.write("\n")
            diff = len(lines) - lines[jid]
            if tty:
                out.write(f"\033[{diff}A")
        else:
            lines = {}
        bar = jm.get("progress") or progress_bar(jm.get("progressDetail") or {})
        if tty and has_progress:
            out.write("\033[2K\r")
        elif bar:
            continue  # progress updates are not printed outside a terminal
        text = ""
        if jid:
            text += f"{jid}: "
        status = jm.get("status", "")
        if tty and has_progress:
            text += f"{status} {bar}\r"
        elif "stream" in jm:
            text += jm["stream"]
        else:
            text += f"{status}\n"
        out.write(text)
        if jid and tty and has_progress:
            out.write(f"\033[{diff}B")
        out.flush()
    return aux
