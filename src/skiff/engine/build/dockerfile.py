"""The Dockerfile parser: text -> instructions, with Docker's syntax and
error wording. Part of skiffd's builder (engine/build): the planner
(stages) and the executor (builder) take what this module produces;
variable substitution happens later, per step, with the build's values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from skiff.errors import InvalidArgument

INSTRUCTIONS = (
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
)

# the flags each instruction accepts; a flag value of None is a bare --flag
FLAGS: dict[str, frozenset[str]] = {
    "from": frozenset({"platform"}),
    "run": frozenset({"mount", "network", "security"}),
    "copy": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "add": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"}),
    "healthcheck": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}

HEREDOC_INSTRUCTIONS = frozenset({"run", "copy", "add"})

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_.-]*)\2")


class ParseError(InvalidArgument):
    """A Dockerfile syntax error, worded as Docker words it."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"dockerfile parse error on line {line}: {message}")
        self.line = line
        self.detail = message


@dataclass(frozen=True, slots=True)
class Heredoc:
    name: str
    content: str
    expand: bool  # an unquoted delimiter: variables in the body are expanded
    chomp: bool  # `<<-`: leading tabs were removed


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    cmd: str  # the keyword, lower case
    line: int  # first line (1-based)
    end_line: int
    original: str  # the logical line as written (continuations joined)
    rest: str  # what follows the keyword and the flags
    flags: tuple[tuple[str, str | None], ...] = ()
    args: tuple[str, ...] = ()  # raw words (before substitution), per instruction
    json: bool = False  # exec (JSON) form
    heredocs: tuple[Heredoc, ...] = ()
    trigger: Instruction | None = None  # ONBUILD's instruction

    def flag(self, name: str) -> str | None:
        for key, value in reversed(self.flags):
            if key == name:
                return value if value is not None else "true"
        return None

    def flag_values(self, name: str) -> list[str]:
        return [v if v is not None else "true" for k, v in self.flags if k == name]

    @property
    def keyword(self) -> str:
        return self.cmd.upper()


@dataclass(slots=True)
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    syntax: str | None = None
    warnings: list[str] = field(default_factory=list)


def parse(text: str | bytes) -> Dockerfile:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    result = Dockerfile([])
    start = _directives(lines, result)
    continuation = re.compile(re.escape(result.escape) + r"[ \t]*$")
    i = start
    n = len(lines)
    while i < n:
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i + 1
        parts: list[str] = []
        while True:
            line = lines[i]
            if parts:
                s = line.strip()
                if not s:
                    result.warnings.append(f"empty continuation line found in line {i + 1}")
                    i += 1
                    if i >= n:
                        break
                    continue
                if s.startswith("#"):
                    i += 1
                    if i >= n:
                        break
                    continue
            m = continuation.search(line)
            if m:
                parts.append(line[: m.start()])
                i += 1
                if i >= n:
                    break
                continue
            parts.append(line)
            i += 1
            break
        logical = "".join(parts).strip()
        if not logical:
            continue
        inst, i = _instruction(logical, first, i, lines, result)
        result.instructions.append(inst)
    return result


def _directives(lines: list[str], result: Dockerfile) -> int:
    seen: set[str] = set()
    i = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip()) if line.strip().startswith("#") else None
        if m is None:
            return i
        key, value = m.group(1).lower(), m.group(2)
        if key not in _KNOWN_DIRECTIVES:
            return i  # an unknown directive is a comment and ends the directives
        if key in seen:
            raise ParseError(i + 1, f"only one {key} parser directive can be used")
        seen.add(key)
        if key == "escape":
            if value not in ("\\", "`"):
                raise ParseError(i + 1, f"invalid escape token '{value}' does not match ` or \\")
            result.escape = value
        elif key == "syntax":
            result.syntax = value
    return len(lines)


def _instruction(
    logical: str, line: int, nxt: int, lines: list[str], result: Dockerfile
) -> tuple[Instruction, int]:
    keyword, _, rest = _split_keyword(logical)
    cmd = keyword.lower()
    if cmd not in INSTRUCTIONS:
        raise ParseError(line, f"unknown instruction: {keyword.upper()}")
    heredocs: tuple[Heredoc, ...] = ()
    if cmd in HEREDOC_INSTRUCTIONS and "<<" in rest:
        heredocs, nxt = _read_heredocs(rest, nxt, lines, line)
    end_line = nxt if heredocs else line + logical.count("\n")
    inst = _build(cmd, keyword, rest, logical, line, max(end_line, line), heredocs, result.escape)
    return inst, nxt


def _split_keyword(text: str) -> tuple[str, str, str]:
    m = re.match(r"(\S+)\s*(.*)$", text, re.S)
    assert m is not None
    return m.group(1), " ", m.group(2)


def _read_heredocs(
    rest: str, nxt: int, lines: list[str], line: int
) -> tuple[tuple[Heredoc, ...], int]:
    docs: list[Heredoc] = []
    for m in _heredoc_markers(rest):
        chomp, quote, name = m.group(1) == "-", m.group(2), m.group(3)
        body: list[str] = []
        while True:
            if nxt >= len(lines):
                raise ParseError(line, f"unterminated heredoc {name}")
            text = lines[nxt]
            nxt += 1
            check = text.lstrip("\t") if chomp else text
            if check == name:
                break
            body.append(text.lstrip("\t") if chomp else text)
        content = "\n".join(body) + "\n" if body else ""
        docs.append(Heredoc(name=name, content=content, expand=not quote, chomp=chomp))
    return tuple(docs), nxt


def _heredoc_markers(rest: str) -> list[re.Match[str]]:
    """`<<NAME` markers outside quotes (`<<<` is a here-string, not a heredoc)."""
    found: list[re.Match[str]] = []
    quote = ""
    i = 0
    while i < len(rest):
        ch = rest[i]
        if quote:
            if ch == quote:
                quote = ""
            i += 1
            continue
        if ch in "'\"":
            quote = ch
            i += 1
            continue
        if rest.startswith("<<<", i):
            i += 3  # a here-string
            continue
        if rest.startswith("<<", i):
            m = _HEREDOC.match(rest, i)
            if m:
                found.append(m)
                i = m.end()
                continue
        i += 1
    return found


def _extract_flags(
    cmd: str, rest: str, line: int
) -> tuple[tuple[tuple[str, str | None], ...], str]:
    allowed = FLAGS.get(cmd)
    if not allowed:
        return (), rest
    flags: list[tuple[str, str | None]] = []
    while True:
        m = re.match(r"--([^\s=]*)(?:=((?:\"[^\"]*\"|'[^']*'|\S)*))?(?:\s+|$)", rest)
        if not rest.startswith("--") or m is None:
            break
        name, value = m.group(1), m.group(2)
        rest = rest[m.end() :]
        if name == "":
            break  # `--` ends the flags
        if name not in allowed:
            raise ParseError(line, f"Unknown flag: {name}")
        if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        flags.append((name, value))
    return tuple(flags), rest


def _json_args(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _words(rest: str, escape: str) -> list[str]:
    """Split at whitespace outside quotes, keeping quotes and escapes (the
    shell lexer removes them when the words are substituted)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(rest):
        ch = rest[i]
        if quote:
            cur.append(ch)
            if ch == escape and quote == '"' and i + 1 < len(rest):
                cur.append(rest[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch == escape and i + 1 < len(rest):
            cur.extend((ch, rest[i + 1]))
            i += 2
            continue
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def _name_values(cmd: str, rest: str, escape: str, line: int) -> list[str]:
    """ENV/LABEL: `k=v k2=v2` or the old `k v with spaces` form; returns k, v pairs flat."""
    words = _words(rest, escape)
    if not words:
        raise ParseError(line, f"{cmd.upper()} requires at least one argument")
    if "=" not in words[0]:
        # the old form: one name, the rest of the line is the value
        parts = re.split(r"\s+", rest, maxsplit=1)
        if len(parts) < 2 or not parts[1]:
            raise ParseError(line, f"{cmd.upper()} must have two arguments")
        return [parts[0], parts[1]]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise ParseError(
                line, f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        key, _, value = word.partition("=")
        if not key:
            raise ParseError(line, f"{cmd.upper()} names can not be blank")
        out.extend((key, value))
    return out


def _build(
    cmd: str,
    keyword: str,
    rest: str,
    original: str,
    line: int,
    end_line: int,
    heredocs: tuple[Heredoc, ...],
    escape: str,
) -> Instruction:
    kw = cmd.upper()
    flags, rest = _extract_flags(cmd, rest.strip(), line)
    rest = rest.strip()
    args: list[str] = []
    is_json = False
    trigger: Instruction | None = None

    def at_least_one() -> None:
        if not rest and not heredocs:
            raise ParseError(line, f"{kw} requires at least one argument")

    if cmd == "from":
        args = _words(rest, escape)
        if len(args) not in (1, 3):
            raise ParseError(line, "FROM requires either one or three arguments")
        if len(args) == 3 and args[1].lower() != "as":
            raise ParseError(line, "FROM requires either one or three arguments")
    elif cmd in ("run", "cmd", "entrypoint"):
        if cmd == "run":
            at_least_one()
        j = _json_args(rest)
        if j is not None:
            args, is_json = j, True
        elif rest:
            args = [rest]
    elif cmd == "shell":
        at_least_one()
        j = _json_args(rest)
        if j is None:
            raise ParseError(line, "SHELL requires the arguments to be in JSON form")
        if not j:
            raise ParseError(line, "SHELL requires at least one argument")
        args, is_json = j, True
    elif cmd in ("env", "label"):
        args = _name_values(cmd, rest, escape, line)
    elif cmd == "arg":
        args = _words(rest, escape)
        if not args:
            raise ParseError(line, "ARG requires at least one argument")
        for word in args:
            if not word.split("=", 1)[0]:
                raise ParseError(line, "ARG names can not be blank")
    elif cmd in ("copy", "add"):
        j = _json_args(rest)
        if j is not None:
            args, is_json = j, True
        else:
            args = _words(rest, escape)
        if len(args) < 2:
            if not args:
                raise ParseError(line, f"{kw} requires at least two arguments")
            raise ParseError(
                line,
                f"{kw} requires at least two arguments, but only one was provided. "
                "Destination could not be determined.",
            )
    elif cmd == "volume":
        at_least_one()
        j = _json_args(rest)
        if j is not None:
            args, is_json = j, True
        else:
            args = _words(rest, escape)
        if not args or any(not a.strip() for a in args):
            raise ParseError(line, "VOLUME specified can not be an empty string")
    elif cmd == "expose":
        args = _words(rest, escape)
        if not args:
            raise ParseError(line, "EXPOSE requires at least one argument")
    elif cmd in ("user", "workdir", "stopsignal"):
        args = [rest] if cmd == "workdir" else _words(rest, escape)
        if len(args) != 1 or not rest:
            raise ParseError(line, f"{kw} requires exactly one argument")
    elif cmd == "maintainer":
        at_least_one()
        args = [rest]
    elif cmd == "healthcheck":
        at_least_one()
        typ, _, cmdline = rest.partition(" ")
        typ = typ.upper()
        if typ == "NONE":
            if cmdline.strip() or flags:
                raise ParseError(line, "HEALTHCHECK NONE takes no arguments")
            args = ["NONE"]
        elif typ == "CMD":
            cmdline = cmdline.strip()
            if not cmdline:
                raise ParseError(line, "Missing command after HEALTHCHECK CMD")
            j = _json_args(cmdline)
            if j is not None:
                args, is_json = ["CMD", *j], True
            else:
                args = ["CMD", cmdline]
        else:
            raise ParseError(line, f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    elif cmd == "onbuild":
        at_least_one()
        inner_kw, _, inner_rest = _split_keyword(rest)
        inner = inner_kw.lower()
        if inner == "onbuild":
            raise ParseError(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if inner in ("from", "maintainer"):
            raise ParseError(line, f"{inner.upper()} isn't allowed as an ONBUILD trigger")
        if inner not in INSTRUCTIONS:
            raise ParseError(line, f"unknown instruction: {inner_kw.upper()}")
        trigger = _build(inner, inner_kw, inner_rest, rest, line, end_line, heredocs, escape)
        args = [rest]
    return Instruction(
        cmd=cmd,
        line=line,
        end_line=end_line,
        original=original,
        rest=rest,
        flags=flags,
        args=tuple(args),
        json=is_json,
        heredocs=heredocs,
        trigger=trigger,
    )
