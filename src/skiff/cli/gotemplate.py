"""A subset of Go's text/template, enough for the docker CLI's --format strings.

Part of the CLI (DESIGN.md: skiff CLI, formatting). Supports field chains
(`.State.Status`, `$.Name`, `$v.Key`), pipelines, parenthesised calls,
variables (`$x := ...`, `range $k, $v := ...`), `if/else if/else`, `range`
(with `else`), `with`, `end`, trim markers (`{{-` and `-}}`), and the functions
docker adds to Go's (json, join, split, lower, upper, title, pad, truncate)
besides Go's own (index, len, printf, print, println, eq, ne, lt, le, gt, ge,
and, or, not, slice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any


class TemplateError(Exception):
    pass


NO_VALUE = object()


# -- rendering values as Go's fmt would --------------------------------------


def go_str(v: Any) -> str:
    if v is NO_VALUE:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e21 else repr(v)
    if isinstance(v, str):
        return v if type(v) is str else str(getattr(v, "go_string", v.__str__)())
    if isinstance(v, dict):
        if type(v) is not dict and hasattr(v, "go_string"):
            return str(v.go_string())  # a Go struct (goshape.GoStruct) prints as {a b}
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def truthy(v: Any) -> bool:
    if v is NO_VALUE or v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | list | dict | tuple):
        return len(v) > 0
    return True


# -- functions ---------------------------------------------------------------


def fn_index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if v is None or v is NO_VALUE:
            raise TemplateError("index of untyped nil")
        if isinstance(v, dict):
            v = v.get(k, NO_VALUE)
        else:
            try:
                v = v[int(k)]
            except IndexError:
                raise TemplateError(f"error calling index: index out of range: {k}") from None
            except (ValueError, TypeError) as e:
                raise TemplateError(f"error calling index: {e}") from e
    return v


def fn_json(v: Any) -> str:
    if v is NO_VALUE:
        v = None
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def fn_printf(fmt: str, *args: Any) -> str:
    # Go verbs to Python %: %v/%s via go_str, %d, %q, %x; widths carried over
    out = []
    ai = 0
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        m = re.match(r"%([-+ 0#]*)(\d*)(?:\.(\d+))?([a-zA-Z%])", fmt[i:])
        if not m:
            out.append(c)
            i += 1
            continue
        flags, width, prec, verb = m.groups()
        i += m.end()
        if verb == "%":
            out.append("%")
            continue
        arg = args[ai] if ai < len(args) else NO_VALUE
        ai += 1
        if verb == "q":
            s = json.dumps(go_str(arg), ensure_ascii=False)
        elif verb == "d" and isinstance(arg, int | float):
            s = str(int(arg))
        elif verb == "x" and isinstance(arg, int):
            s = format(arg, "x")
        elif verb == "f" and isinstance(arg, int | float):
            s = f"{float(arg):.{int(prec) if prec else 6}f}"
        else:
            s = go_str(arg)
            if prec and verb == "s":
                s = s[: int(prec)]
        if width:
            s = s.ljust(int(width)) if "-" in flags else s.rjust(int(width))
        out.append(s)
    return "".join(out)


def fn_truncate(s: Any, n: int) -> str:
    t = go_str(s)
    return t[: int(n)] if len(t) > int(n) else t


def fn_pad(s: Any, left: int, right: int) -> str:
    return " " * int(left) + go_str(s) + " " * int(right)


def compare(op: str) -> Callable[..., bool]:
    def f(a: Any, *bs: Any) -> bool:
        if op == "eq":
            return any(a == b for b in bs)
        b = bs[0]
        return bool({"ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op])

    return f


def fn_slice(v: Any, *idx: int) -> Any:
    if len(idx) == 0:
        return v
    if len(idx) == 1:
        return v[int(idx[0]) :]
    return v[int(idx[0]) : int(idx[1])]


FUNCS: dict[str, Callable[..., Any]] = {
    "json": fn_json,
    "index": fn_index,
    "len": lambda v: len(v) if v not in (None, NO_VALUE) else 0,
    "join": lambda items, sep: sep.join(go_str(x) for x in items or []),
    "split": lambda s, sep: go_str(s).split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": lambda s: go_str(s).title(),
    "pad": fn_pad,
    "truncate": fn_truncate,
    "printf": fn_printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "eq": compare("eq"),
    "ne": compare("ne"),
    "lt": compare("lt"),
    "le": compare("le"),
    "gt": compare("gt"),
    "ge": compare("ge"),
    "not": lambda v: not truthy(v),
    "slice": fn_slice,
}


# -- parsing -----------------------------------------------------------------

TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<decl>:=)
    | (?P<assign>=)
    | (?P<var>\$[A-Za-z0-9_]*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|(),])
    )""",
    re.VERBOSE,
)


def tokenize(src: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:]!r} in command")
        kind = m.lastgroup or ""
        text = m.group(kind)
        # a field chain may follow a variable or a closing parenthesis directly
        out.append((kind, text))
        pos = m.end()
    return out


class Pipeline:
    def __init__(self, decl: list[str], cmds: list[list[Any]]) -> None:
        self.decl = decl  # variables it declares
        self.cmds = cmds  # each command: a list of operands


class Node:
    def __init__(self, kind: str, text: str = "", pipe: Pipeline | None = None,
                 source: str = "", offset: int = 0) -> None:  # fmt: skip
        self.kind = kind  # text, action, if, range, with
        self.text = text
        self.pipe = pipe
        self.body: list[Node] = []
        self.else_body: list[Node] = []
        self.source = source  # the pipeline's text and where it starts in the template,
        self.offset = offset  # for Go's "template: :LINE:COL: executing ..." errors


class Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def pipeline(self) -> Pipeline:
        decl: list[str] = []
        # $x := ... or $k, $v := ...
        j = self.i
        names = []
        while j < len(self.t) and self.t[j][0] == "var":
            names.append(self.t[j][1])
            j += 1
            if j < len(self.t) and self.t[j] == ("punct", ","):
                j += 1
                continue
            break
        if names and j < len(self.t) and self.t[j][0] in ("decl", "assign"):
            decl = names
            self.i = j + 1
        cmds = [self.command()]
        while self.peek() == ("punct", "|"):
            self.i += 1
            cmds.append(self.command())
        return Pipeline(decl, cmds)

    def command(self) -> list[Any]:
        ops: list[Any] = []
        while (tok := self.peek()) is not None and tok not in (("punct", "|"), ("punct", ")")):
            ops.append(self.operand())
        if not ops:
            raise TemplateError("missing value for command")
        return ops

    def operand(self) -> Any:
        kind, text = self.t[self.i]
        self.i += 1
        if kind == "punct" and text == "(":
            p = self.pipeline()
            if self.peek() != ("punct", ")"):
                raise TemplateError("unclosed left paren")
            self.i += 1
            node: Any = ("pipe", p)
        elif kind == "str":
            node = ("lit", json.loads(text))
        elif kind == "raw":
            node = ("lit", text[1:-1])
        elif kind == "num":
            node = ("lit", float(text) if "." in text else int(text))
        elif kind == "ident" and text in ("true", "false", "nil"):
            node = ("lit", {"true": True, "false": False, "nil": None}[text])
        else:
            node = (kind, text)
        # field access chained on a variable or parenthesised value
        while (tok := self.peek()) is not None and tok[0] == "field" and tok[1] != ".":
            if self.i > 0 and kind in ("var", "punct"):
                self.i += 1
                node = ("chain", node, tok[1])
            else:
                break
        return node


ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def parse(src: str) -> list[Node]:
    pieces: list[tuple[str, str, int]] = []
    pos = 0
    for m in ACTION.finditer(src):
        text = src[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        if pieces and pieces[-1][0] == "trimnext":
            pieces.pop()
            text = text.lstrip()
        pieces.append(("text", text, 0))
        body = m.group(2).strip()
        start = m.start(2) + len(m.group(2)) - len(m.group(2).lstrip())
        if not body.startswith("/*"):
            pieces.append(("action", body, start))
        if m.group(3):
            pieces.append(("trimnext", "", 0))
        pos = m.end()
    tail = src[pos:]
    if "{{" in tail:
        # an action never closed: Go's lexer stops at a lone "}" or at the end
        at = pos + tail.index("{{")
        where = f"template: :{src.count(chr(10), 0, at) + 1}: "
        if "}" in src[at:]:
            raise TemplateError(where + "bad character U+007D '}'")
        raise TemplateError(where + "unclosed action")
    if pieces and pieces[-1][0] == "trimnext":
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(("text", tail, 0))

    root: list[Node] = []
    stack: list[tuple[Node | None, list[Node]]] = [(None, root)]
    for kind, text, start in pieces:
        cur = stack[-1][1]
        if kind == "text":
            if text:
                cur.append(Node("text", text))
            continue
        try:
            parse_action(text, start, stack)
        except TemplateError as e:
            if str(e).startswith("template: "):
                raise
            raise TemplateError(f"template: :{src.count(chr(10), 0, start) + 1}: {e}") from None
    if len(stack) != 1:
        raise TemplateError(f"template: :{src.count(chr(10)) + 1}: unexpected EOF")
    return root


def parse_action(text: str, start: int, stack: list[tuple[Node | None, list[Node]]]) -> None:
    """Add the action `text` (at `start` in src) to the tree under construction."""
    cur = stack[-1][1]
    word = text.split(None, 1)
    head = word[0] if word else ""
    rest = word[1] if len(word) > 1 else ""
    rest_at = start + (text.find(rest, len(head)) if rest else 0)
    if head in ("if", "range", "with"):
        node = Node(head, pipe=Parser(tokenize(rest)).pipeline(), source=rest, offset=rest_at)
        cur.append(node)
        stack.append((node, node.body))
    elif head == "else":
        owner = stack[-1][0]
        if owner is None:
            raise TemplateError("unexpected {{else}}")
        stack.pop()
        if rest.startswith("if "):
            # else if: a nested if in the else branch, closed by the same end
            cond = rest[3:].lstrip()
            inner = Node("if", pipe=Parser(tokenize(cond)).pipeline(), source=cond,
                         offset=rest_at + rest.index(cond, 3))  # fmt: skip
            inner.text = "elseif"
            owner.else_body.append(inner)
            stack.append((owner, owner.else_body))
            stack.append((inner, inner.body))
        else:
            stack.append((owner, owner.else_body))
    elif head == "end":
        if len(stack) == 1:
            raise TemplateError("unexpected {{end}}")
        node_, _ = stack.pop()
        while node_ is not None and node_.text == "elseif":
            node_, _ = stack.pop()
    else:
        pipe = Parser(tokenize(text)).pipeline()
        cur.append(Node("action", pipe=pipe, source=text, offset=start))


# -- execution ---------------------------------------------------------------


def field_of(v: Any, name: str) -> Any:
    if isinstance(v, dict):
        if name not in v and hasattr(v, "missing_field"):
            # a Go struct or formatter context has no such field, a strict map no such key
            message = v.missing_field(name)
            if message:
                raise TemplateError(message)
        if name not in v and type(v) is not dict and callable(getattr(type(v), name, None)):
            raise TemplateError(f"wrong number of args for {name}: want 1 got 0")
        return v.get(name, NO_VALUE)
    if v is None or v is NO_VALUE:
        return NO_VALUE
    attr = getattr(v, name, NO_VALUE)
    if attr is NO_VALUE:
        go_type = getattr(v, "go_type", "") or type(v).__name__
        raise TemplateError(f"can't evaluate field {name} in type {go_type}")
    return attr() if callable(attr) else attr


def chain(v: Any, fields: str) -> Any:
    for name in fields.strip(".").split("."):
        if name:
            v = field_of(v, name)
    return v


def idents(p: Pipeline) -> list[str]:
    """The function names a pipeline calls (parenthesised ones too)."""
    out = []
    for cmd in p.cmds:
        for op in cmd:
            if op[0] == "ident":
                out.append(op[1])
            elif op[0] == "pipe":
                out.extend(idents(op[1]))
            elif op[0] == "chain" and op[1][0] == "pipe":
                out.extend(idents(op[1][1]))
    return out


class ExecError(TemplateError):
    """An error while executing, placed as Go's: `template: :1:2: executing "" at <.X>: ...`."""


class Template:
    def __init__(self, src: str, funcs: dict[str, Callable[..., Any]] | None = None) -> None:
        self.src = src
        self.nodes = parse(src)
        self.funcs = {**FUNCS, **(funcs or {})}
        self.check(self.nodes)

    def check(self, nodes: list[Node]) -> None:
        """Go's parser knows the functions: an unknown one fails the parse, not the run."""
        for n in nodes:
            if n.pipe is not None:
                for name in idents(n.pipe):
                    if name not in self.funcs:
                        line = self.src.count("\n", 0, n.offset) + 1
                        raise TemplateError(f'template: :{line}: function "{name}" not defined')
            self.check(n.body)
            self.check(n.else_body)

    def render(self, data: Any) -> str:
        out: list[str] = []
        self.walk(self.nodes, data, {"$": data}, out)
        return "".join(out)

    def walk(self, nodes: list[Node], dot: Any, vars: dict[str, Any], out: list[str]) -> None:
        for n in nodes:
            try:
                self.step(n, dot, vars, out)
            except ExecError:
                raise
            except TemplateError as e:
                raise self.placed(n, e) from None

    def placed(self, n: Node, e: TemplateError) -> ExecError:
        # the failing node: a field chain where one failed, else the whole command
        what = getattr(e, "node", None) or n.source
        found = n.source.find(what) if what != n.source else 0
        at = n.offset + max(found, 0)
        # Go places a chain (.A.B, $x.A) where its second link starts
        link = what.find(".", 1) if what.startswith(".") else what.find(".")
        if what[:1] in (".", "$") and link > 0 and " " not in what:
            at += link
        line = self.src.count("\n", 0, at) + 1
        col = at - (self.src.rfind("\n", 0, at) + 1)
        return ExecError(f'template: :{line}:{col}: executing "" at <{what}>: {e}')

    def step(self, n: Node, dot: Any, vars: dict[str, Any], out: list[str]) -> None:
        if n.kind == "text":
            out.append(n.text)
        elif n.kind == "action":
            assert n.pipe is not None
            v = self.pipe(n.pipe, dot, vars)
            if not n.pipe.decl:
                out.append(go_str(v))
        elif n.kind == "if":
            assert n.pipe is not None
            if truthy(self.pipe(n.pipe, dot, vars)):
                self.walk(n.body, dot, vars, out)
            else:
                self.walk(n.else_body, dot, vars, out)
        elif n.kind == "with":
            assert n.pipe is not None
            v = self.pipe(n.pipe, dot, vars)
            if truthy(v):
                self.walk(n.body, v, vars, out)
            else:
                self.walk(n.else_body, dot, vars, out)
        elif n.kind == "range":
            assert n.pipe is not None
            decl = n.pipe.decl
            v = self.pipe(Pipeline([], n.pipe.cmds), dot, vars)
            items: list[tuple[Any, Any]]
            if isinstance(v, dict):
                items = [(k, v[k]) for k in sorted(v)]
            elif isinstance(v, list | tuple):
                items = list(enumerate(v))
            elif isinstance(v, int) and not isinstance(v, bool):
                items = [(i, i) for i in range(v)]
            elif v is None or v is NO_VALUE:
                items = []
            else:
                raise TemplateError(f"range can't iterate over {go_str(v)}")
            if not items:
                self.walk(n.else_body, dot, vars, out)
            for k, item in items:
                scope = dict(vars)
                if len(decl) == 1:
                    scope[decl[0]] = item
                elif len(decl) == 2:
                    scope[decl[0]], scope[decl[1]] = k, item
                self.walk(n.body, item, scope, out)

    def pipe(self, p: Pipeline, dot: Any, vars: dict[str, Any]) -> Any:
        value: Any = NO_VALUE
        for i, cmd in enumerate(p.cmds):
            value = self.command(cmd, dot, vars, value if i > 0 else NO_VALUE, i > 0)
        for name in p.decl:
            vars[name] = value
        return value

    def command(self, ops: list[Any], dot: Any, vars: dict[str, Any], piped: Any,
                has_piped: bool) -> Any:  # fmt: skip
        head = ops[0]
        if head[0] == "ident":
            fn = self.funcs.get(head[1])
            if fn is None:
                raise TemplateError(f'function "{head[1]}" not defined')
            args = [self.operand(o, dot, vars) for o in ops[1:]]
            if has_piped:
                args.append(piped)
            if head[1] == "and":
                return next((a for a in args if not truthy(a)), args[-1])
            if head[1] == "or":
                return next((a for a in args if truthy(a)), args[-1])
            try:
                return fn(*args)
            except TemplateError:
                raise
            except Exception as e:
                raise TemplateError(f"error calling {head[1]}: {e}") from e
        if len(ops) > 1 or has_piped:
            if head[0] in ("field", "chain"):
                args = [self.operand(o, dot, vars) for o in ops[1:]]
                if has_piped:
                    args.append(piped)
                return self.method(head, dot, vars, args)
            raise TemplateError(f"can't give argument to non-function {head[1]}")
        return self.operand(head, dot, vars)

    def method(self, head: Any, dot: Any, vars: dict[str, Any], args: list[Any]) -> Any:
        """`.Recv.Name arg...`: a method of the receiver (docker's `.Label "key"`)."""
        if head[0] == "field":
            path, _, name = head[1].rpartition(".")
            recv = chain(dot, path) if path else dot
        else:
            path, _, name = head[2].rpartition(".")
            recv = self.operand(head[1], dot, vars)
            recv = chain(recv, path) if path else recv
        fn = getattr(type(recv), name, None)
        if not callable(fn) or name.startswith("_"):
            if not isinstance(recv, dict) or name not in recv:
                # a Go context without the method: the field lookup fails first
                finder = getattr(recv, "missing_field", None)
                go_type = getattr(recv, "go_type", "")
                message = finder(name) if finder else ""
                if not message and go_type:
                    message = f"can't evaluate field {name} in type {go_type}"
                if message:
                    e = TemplateError(message)
                    e.node = head[-1]  # type: ignore[attr-defined]
                    raise e
            raise TemplateError(f"can't give argument to non-function {head[-1]}")
        try:
            return fn(recv, *args)
        except TypeError:
            raise TemplateError(
                f"wrong number of args for {name}: want 1 got {len(args)}"
            ) from None

    def operand(self, op: Any, dot: Any, vars: dict[str, Any]) -> Any:
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "field":
            if op[1] == ".":
                return dot
            try:
                return chain(dot, op[1])
            except TemplateError as e:
                if not hasattr(e, "node"):
                    e.node = op[1]  # type: ignore[attr-defined]
                raise
        if kind == "var":
            if op[1] not in vars:
                raise TemplateError(f"undefined variable: {op[1]}")
            return vars[op[1]]
        if kind == "pipe":
            return self.pipe(op[1], dot, vars)
        if kind == "chain":
            return chain(self.operand(op[1], dot, vars), op[2])
        if kind == "ident":
            fn = self.funcs.get(op[1])
            if fn is None:
                raise TemplateError(f'function "{op[1]}" not defined')
            return fn()
        raise TemplateError(f"unexpected {op[1]!r}")


FUNCS["and"] = lambda *a: a[-1]
FUNCS["or"] = lambda *a: a[-1]
