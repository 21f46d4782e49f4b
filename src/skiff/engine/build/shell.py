"""The Dockerfile's own small shell lexer: quotes, escapes and `$VAR` /
`${VAR:-default}` substitution, applied by the builder to exactly the
instructions where Docker applies it (RUN/CMD/ENTRYPOINT are left to the
container's shell)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from skiff.errors import InvalidArgument

_NAME_CHARS = re.compile(r"[A-Za-z0-9_]")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch


class ShellLex:
    """Docker's word processing with a given escape character (`\\` or `` ` ``)."""

    def __init__(self, escape: str = "\\") -> None:
        self.escape = escape

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand variables and remove quotes; whitespace is kept."""
        words = self._process(_Scanner(word), env, split=False, stop="")
        return words[0] if words else ""

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """Expand and split into words at unquoted whitespace (also inside
        unquoted expansions, as a shell's field splitting does)."""
        return self._process(_Scanner(text), env, split=True, stop="")

    # -- the scanner -----------------------------------------------------

    def _process(
        self, sc: _Scanner, env: Mapping[str, str], *, split: bool, stop: str
    ) -> list[str]:
        words: list[str] = []
        cur: list[str] = []
        started = False
        while True:
            ch = sc.peek()
            if not ch:
                if stop:
                    raise InvalidArgument("syntax error: missing '}'")
                break
            if stop and ch == stop:
                sc.next()
                break
            if split and ch in " \t\r\n":
                sc.next()
                if started:
                    words.append("".join(cur))
                    cur, started = [], False
                continue
            if ch == "'":
                sc.next()
                cur.append(self._single_quoted(sc))
                started = True
            elif ch == '"':
                sc.next()
                cur.append(self._double_quoted(sc, env))
                started = True
            elif ch == self.escape:
                sc.next()
                nxt = sc.next()
                if nxt:
                    cur.append(nxt)
                    started = True
            elif ch == "$":
                sc.next()
                value = self._dollar(sc, env)
                if split:
                    parts = re.split(r"[ \t\r\n]+", value)
                    # field splitting: the first part joins the current word,
                    # each later part starts a word of its own
                    cur.append(parts[0])
                    if parts[0]:
                        started = True
                    for part in parts[1:]:
                        if started:
                            words.append("".join(cur))
                        cur = [part]
                        started = bool(part)
                else:
                    cur.append(value)
                    started = True
            else:
                sc.next()
                cur.append(ch)
                started = True
        if started or (not split and cur):
            words.append("".join(cur))
        elif not split:
            words.append("")
        return words

    def _single_quoted(self, sc: _Scanner) -> str:
        out: list[str] = []
        while True:
            ch = sc.next()
            if not ch:
                raise InvalidArgument(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double_quoted(self, sc: _Scanner, env: Mapping[str, str]) -> str:
        out: list[str] = []
        while True:
            ch = sc.next()
            if not ch:
                raise InvalidArgument(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self._dollar(sc, env))
            elif ch == self.escape:
                nxt = sc.peek()
                if nxt in ('"', "$", self.escape):
                    out.append(sc.next())
                else:
                    out.append(ch)
            else:
                out.append(ch)

    def _name(self, sc: _Scanner) -> str:
        out: list[str] = []
        while sc.peek() and _NAME_CHARS.match(sc.peek()):
            out.append(sc.next())
        return "".join(out)

    def _dollar(self, sc: _Scanner, env: Mapping[str, str]) -> str:
        if sc.peek() != "{":
            name = self._name(sc)
            if not name:
                return "$"
            return env.get(name, "")
        sc.next()
        name = self._name(sc)
        if not name:
            raise InvalidArgument("bad substitution: missing variable name in ${}")
        ch = sc.next()
        if ch == "}":
            return env.get(name, "")
        if not ch:
            raise InvalidArgument("syntax error: missing '}'")
        colon = False
        if ch == ":":
            colon = True
            ch = sc.next()
        if ch in ("#", "%") and not colon:
            longest = sc.peek() == ch
            if longest:
                sc.next()
            pattern = self._inner(sc, env)
            return _trim(env.get(name, ""), pattern, prefix=ch == "#", longest=longest)
        if ch == "/" and not colon:
            every = sc.peek() == "/"
            if every:
                sc.next()
            pattern, repl = self._inner_pattern(sc, env)
            return _replace(env.get(name, ""), pattern, repl, every=every)
        if ch not in ("-", "+", "?"):
            raise InvalidArgument(f"unsupported modifier ({ch}) in substitution")
        word = self._inner(sc, env)
        is_set = name in env
        value = env.get(name, "")
        usable = is_set and (value != "" or not colon)
        if ch == "-":
            return value if usable else word
        if ch == "+":
            return word if usable else ""
        if not usable:
            reason = word or (
                "is not allowed to be empty" if is_set else "is not allowed to be unset"
            )
            raise InvalidArgument(f"{name}: {reason}")
        return value

    def _inner(self, sc: _Scanner, env: Mapping[str, str]) -> str:
        words = self._process(sc, env, split=False, stop="}")
        return words[0] if words else ""

    def _inner_pattern(self, sc: _Scanner, env: Mapping[str, str]) -> tuple[str, str]:
        # ${name/pattern/replacement}: the pattern ends at the first `/`
        pattern: list[str] = []
        while True:
            ch = sc.peek()
            if not ch:
                raise InvalidArgument("syntax error: missing '}'")
            sc.next()
            if ch == "}":
                return "".join(pattern), ""
            if ch == "/":
                break
            pattern.append(ch)
        return "".join(pattern), self._inner(sc, env)


def _glob_regex(pattern: str) -> str:
    # fnmatch.translate anchors with \Z; keep only the body
    body = fnmatch.translate(pattern)
    return body[4:-3] if body.startswith("(?s:") and body.endswith(")\\Z") else re.escape(pattern)


def _trim(value: str, pattern: str, *, prefix: bool, longest: bool) -> str:
    rx = re.compile("(?s)" + _glob_regex(pattern))
    candidates = range(len(value) + 1)
    order = reversed(candidates) if longest else candidates
    for n in order:
        if prefix and rx.fullmatch(value[:n]):
            return value[n:]
        if not prefix and rx.fullmatch(value[len(value) - n :]):
            return value[: len(value) - n]
    return value


def _replace(value: str, pattern: str, repl: str, *, every: bool) -> str:
    if not pattern:
        return value
    rx = re.compile("(?s)" + _glob_regex(pattern))
    return rx.sub(lambda _m: repl, value, count=0 if every else 1)
