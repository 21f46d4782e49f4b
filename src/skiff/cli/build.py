"""`skiff build` (and `skiff image build`): a context uploaded as a tar to
POST /build, the classic builder's JSON lines printed as the docker CLI
prints them (`DOCKER_BUILDKIT=0 docker build`), or drawn compactly on a
terminal (`--progress tty`).

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from skiff.cli import buildcontext as bc
from skiff.cli.common import Cli, StatusError, UsageError, parse_labels, parser

STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
RESULT = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


class BuildFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or 1


def build_parser() -> Any:
    p = parser("build", usage="skiff build [OPTIONS] PATH | URL | -")
    p.add_argument("-t", "--tag", action="append", default=[])
    p.add_argument("-f", "--file", default="")
    p.add_argument("--build-arg", action="append", default=[])
    p.add_argument("--target", default="")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--progress", default="auto", choices=["auto", "plain", "tty"])
    p.add_argument("--pull", action="store_true")
    p.add_argument("--platform", default=os.environ.get("DOCKER_DEFAULT_PLATFORM", ""))
    p.add_argument("--network", default="")
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--shm-size", default="")
    p.add_argument("--cache-from", action="append", default=[])
    p.add_argument("--iidfile", default="")
    p.add_argument("--rm", default="true", nargs="?", const="true")
    p.add_argument("--force-rm", action="store_true")
    p.add_argument("--isolation", default="")
    p.add_argument("context")
    return p


def parse_bytes(value: str) -> int:
    """docker's RAMInBytes: 64m, 1g, 512k, 100 (bytes)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)b?", value.strip().lower())
    if not m:
        raise UsageError(f'invalid argument "{value}" for "--shm-size" flag: invalid size: '
                         f"'{value}'")  # fmt: skip
    mult = 1024 ** "bkmgtp".index(m.group(2) or "b")
    return int(float(m.group(1)) * mult)


def build_args(values: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        k, sep, val = v.partition("=")
        # `--build-arg NAME` takes NAME from the environment, or sends null (the daemon
        # then keeps the Dockerfile's default), as the docker CLI does
        out[k] = val if sep else os.environ.get(k)
    return out


def cmd_build(cli: Cli, argv: list[str]) -> int:
    o = build_parser().parse_args(argv)
    for h in o.add_host:
        if ":" not in h and "=" not in h:
            raise UsageError(f'invalid argument "{h}" for "--add-host" flag: bad format for '
                             f"add-host: \"{h}\"")  # fmt: skip
    body, dockerfile, remote = prepare_context(o.context, o.file)
    params: dict[str, Any] = {
        "t": o.tag,
        "extrahosts": [h.replace("=", ":", 1) if ":" not in h else h for h in o.add_host],
        "remote": remote or None,
        "dockerfile": dockerfile or None,
        "q": o.quiet or None,
        "nocache": o.no_cache or None,
        "rm": o.rm.lower() not in ("false", "0"),
        "forcerm": o.force_rm or None,
        "pull": o.pull or None,
        "target": o.target or None,
        "networkmode": o.network or None,
        "platform": o.platform or None,
        "shmsize": parse_bytes(o.shm_size) if o.shm_size else None,
        "isolation": o.isolation or None,
        "version": "1",
    }
    import json

    if o.build_arg:
        params["buildargs"] = json.dumps(build_args(o.build_arg))
    if o.label:
        params["labels"] = json.dumps(parse_labels(o.label))
    if o.cache_from:
        params["cachefrom"] = json.dumps(o.cache_from)

    tty = o.progress == "tty" or (o.progress == "auto" and cli.out_is_tty())
    out: TextIO = cli.out
    if o.quiet:
        import io

        out = io.StringIO()
    else:
        body = sending(body, cli.out, cli.out_is_tty())
    from skiff.cli.login import all_credentials

    messages = cli.client.build(body, params, all_credentials(cli))
    try:
        if tty and not o.quiet:
            image_id = TtyDisplay(out).run(messages)
        else:
            image_id = plain(messages, out, cli.out_is_tty() and not o.quiet)
    except BuildFailed as e:
        if o.quiet:
            cli.err.write(out.getvalue())  # type: ignore[attr-defined]
        raise StatusError(e.code, e.message) from None
    if o.quiet:
        text = out.getvalue()  # type: ignore[attr-defined]
        cli.out.write(text if text.strip() else f"{image_id}\n")
        # dockerd sends no aux message under q=1: the ID is the text
        image_id = image_id or text.strip()
    if o.iidfile and image_id:
        with open(o.iidfile, "w") as f:
            f.write(image_id)
    return 0


# -- the context ------------------------------------------------------------


def prepare_context(context: str, file: str) -> tuple[Iterable[bytes], str, str]:
    """The body to send, the `dockerfile` parameter, and a `remote` URL (or "")."""
    if context == "-":
        if file == "-":
            raise StatusError(1, "invalid argument: can't use stdin for both build context "
                                 "and dockerfile")  # fmt: skip
        return stdin_context(file)
    if re.match(r"^(https?://|git@|git://|github\.com/)", context):
        if context.startswith(("http://", "https://")) and not context.endswith(".git"):
            return [], file, context
        raise StatusError(1, f"unable to prepare context: git contexts are not supported "
                             f"by skiff: {context}")  # fmt: skip
    ctx = os.path.abspath(context)
    if not os.path.exists(ctx):
        raise StatusError(1, f'unable to prepare context: path "{context}" not found')
    if not os.path.isdir(ctx):
        raise StatusError(1, f"unable to prepare context: context must be a directory: {ctx}")
    stdin_dockerfile = file == "-"
    outside: bytes | None = None
    if stdin_dockerfile:
        rel = ""
        outside = sys.stdin.buffer.read()
    else:
        if file:
            dockerfile = os.path.abspath(file)  # -f is relative to the current directory
        else:
            dockerfile = os.path.join(ctx, "Dockerfile")
            if not os.path.exists(dockerfile) and os.path.exists(os.path.join(ctx, "dockerfile")):
                dockerfile = os.path.join(ctx, "dockerfile")
        real_ctx = os.path.realpath(ctx)
        missing = first_missing(dockerfile)
        if missing:
            raise StatusError(1, f"unable to prepare context: unable to evaluate symlinks in "
                                 f"Dockerfile path: lstat {missing}: no such file or directory")  # fmt: skip
        real_df = os.path.realpath(dockerfile)
        rel = os.path.relpath(real_df, real_ctx)
        if rel.startswith(".." + os.sep) or rel == "..":
            with open(real_df, "rb") as f:
                outside = f.read()
    ignore_path = os.path.join(ctx, ".dockerignore")
    ignore_text: bytes | None = None
    if os.path.exists(ignore_path):
        with open(ignore_path, "rb") as f:
            ignore_text = f.read()
    try:
        excludes = bc.parse_dockerignore((ignore_text or b"").decode("utf-8", "replace"))
        excludes = bc.keep_build_files(excludes, rel, outside is not None)
        extra: dict[str, bytes] = {}
        if outside is not None:
            rel, extra = bc.add_dockerfile(ignore_text, outside)
        bc.Matcher(excludes)  # a bad pattern fails here, before anything is sent
    except bc.IgnoreError as e:
        raise StatusError(1, f"Error checking context: {e}") from None
    return checked(bc.tar_directory(ctx, excludes, extra)), rel, ""


def first_missing(path: str) -> str:
    """The first component of path that does not exist, as Go's EvalSymlinks reports it."""
    parts = path.split("/")
    for i in range(2, len(parts) + 1):
        prefix = "/".join(parts[:i])
        if not os.path.lexists(prefix):
            return prefix
    return "" if os.path.exists(path) else path


def checked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except bc.IgnoreError as e:
        raise StatusError(1, f"Error checking context: {e}") from None


def stdin_context(file: str) -> tuple[Iterable[bytes], str, str]:
    stdin = sys.stdin.buffer
    head = b""
    while len(head) < 512:
        chunk = stdin.read(512 - len(head))
        if not chunk:
            break
        head += chunk
    if bc.is_archive(head):

        def rest() -> Iterator[bytes]:
            yield head
            while chunk := stdin.read(1 << 16):
                yield chunk

        return rest(), file, ""
    # not an archive: the Dockerfile itself, with an empty context
    return [bc.tar_single("Dockerfile", head + stdin.read())], "Dockerfile", ""


def sending(body: Iterable[bytes], out: TextIO, tty: bool) -> Iterator[bytes]:
    """The body, with docker's `Sending build context to Docker daemon` line as it goes."""
    from skiff.cli.formatting import human_size

    sent = 0
    last = 0.0
    label = "Sending build context to Docker daemon"
    for chunk in body:
        sent += len(chunk)
        now = time.monotonic()
        if tty and now - last > 0.1:
            last = now
            out.write(f"{label} {human_size(sent, 4):>8}\r")
            out.flush()
        yield chunk
    out.write(f"{label} {human_size(sent, 4):>8}\r\r\n")
    out.flush()


# -- the answer -------------------------------------------------------------


def checked_messages(messages: Iterable[dict[str, Any]], aux: dict[str, Any]
                     ) -> Iterator[dict[str, Any]]:  # fmt: skip
    for jm in messages:
        if jm.get("errorDetail") or jm.get("error"):
            detail = jm.get("errorDetail") or {}
            raise BuildFailed(str(detail.get("message") or jm.get("error")),
                              int(detail.get("code") or 1))  # fmt: skip
        if "aux" in jm:
            if isinstance(jm["aux"], dict):
                aux.update(jm["aux"])
            continue
        yield jm


def plain(messages: Iterable[dict[str, Any]], out: TextIO, tty: bool) -> str:
    """Print the stream as docker's jsonmessage does; return the image ID."""
    from skiff.cli.progress import display

    aux: dict[str, Any] = {}
    display(checked_messages(messages, aux), out, tty)
    return str(aux.get("ID", ""))


class TtyDisplay:
    """The build drawn compactly: one line per finished step, the running step's last
    lines of output under it, erased once the step is done (kept when it fails)."""

    TAIL = 6

    def __init__(self, out: TextIO) -> None:
        self.out = out
        try:
            self.width = os.get_terminal_size(out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            self.width = 0
        self.width = self.width or 80  # a pty nobody sized says 0
        self.step: tuple[str, str, str] | None = None  # (n, total, instruction)
        self.started = 0.0
        self.cached = False
        self.result = ""
        self.output: list[str] = []
        self.drawn = 0
        self.partial = ""

    def run(self, messages: Iterable[dict[str, Any]]) -> str:
        aux: dict[str, Any] = {}
        try:
            for jm in checked_messages(messages, aux):
                if "stream" in jm:
                    self.feed(str(jm["stream"]))
                elif jm.get("status"):
                    text = f"{jm['id']}: {jm['status']}" if jm.get("id") else str(jm["status"])
                    self.line(text + (f" {jm['progress']}" if jm.get("progress") else ""))
        except BuildFailed:
            if self.partial:
                self.line(self.partial)
            self.erase()
            self.finish_step(failed=True)
            raise
        if self.partial:
            self.line(self.partial)
        self.finish_step()
        return str(aux.get("ID", ""))

    def feed(self, text: str) -> None:
        text = self.partial + text
        *lines, self.partial = text.split("\n")
        for line in lines:
            self.line(line.rstrip("\r"))

    def line(self, line: str) -> None:
        m = STEP.match(line)
        if m:
            self.finish_step()
            self.step = (m.group(1), m.group(2), m.group(3))
            self.started = time.monotonic()
            self.cached, self.result, self.output = False, "", []
            self.draw()
            return
        r = RESULT.match(line)
        if self.step is not None and r:
            self.result = r.group(1)[:12]
            return
        if line.startswith((" ---> Running in ", "Removing intermediate container ")):
            return
        if line == " ---> Using cache":
            self.cached = True
            return
        if self.step is None or line.startswith(("Successfully built", "Successfully tagged")):
            self.finish_step()
            self.write(line + "\n")
            return
        self.output.append(line)
        self.draw()

    def step_line(self, done: bool) -> str:
        assert self.step is not None
        n, total, instr = self.step
        head = f"[{n}/{total}] {instr}"
        if done:
            tail = " CACHED" if self.cached else f" {time.monotonic() - self.started:.1f}s"
            if self.result:
                tail = f" -> {self.result}" + tail
        else:
            tail = " ..."
        room = max(self.width - len(tail) - 1, 10)
        if len(head) > room:
            head = head[: room - 1] + "…"
        return head + tail

    def draw(self) -> None:
        if self.step is None:
            return
        self.erase()
        lines = [self.step_line(False)]
        lines += ["  " + x[: self.width - 3] for x in self.output[-self.TAIL :]]
        self.out.write(lines[0] + "\n")
        for x in lines[1:]:
            self.out.write(f"\033[2m{x}\033[0m\n")
        self.drawn = len(lines)
        self.out.flush()

    def erase(self) -> None:
        if self.drawn:
            self.out.write(f"\033[{self.drawn}A\033[J")
            self.drawn = 0

    def finish_step(self, failed: bool = False) -> None:
        if self.step is None:
            return
        self.erase()
        self.out.write(self.step_line(True) + "\n")
        if failed:
            for x in self.output:
                self.out.write(f"  {x}\n")
        self.step = None
        self.out.flush()

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def prune_build_cache(cli: Cli, all_: bool, filters: dict[str, list[str]],
                      keep_storage: int = 0) -> tuple[int, str]:  # fmt: skip
    """Prune the build cache: (bytes reclaimed, the docker CLI's "Deleted build cache
    objects" paragraph or "")."""
    r = cli.client.prune_build_cache(all_, filters, keep_storage)
    deleted = r.get("CachesDeleted") or []
    text = "".join(f"{i}\n" for i in deleted)
    return int(r.get("SpaceReclaimed") or 0), (
        f"Deleted build cache objects:\n{text}" if deleted else ""
    )


def cmd_builder_prune(cli: Cli, argv: list[str]) -> int:
    from skiff.cli import formatting as fmt
    from skiff.cli.common import parse_kv_filters
    from skiff.cli.container import confirm

    p = parser("builder prune", usage="skiff builder prune")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append")
    p.add_argument("--keep-storage", default="")
    o = p.parse_args(argv)
    what = "all build cache" if o.all else "all dangling build cache"
    if not o.force and not confirm(cli, f"WARNING! This will remove {what}.", inline=True):
        return 0
    keep = parse_bytes(o.keep_storage) if o.keep_storage else 0
    reclaimed, text = prune_build_cache(cli, o.all, parse_kv_filters(o.filter), keep)
    if text:
        cli.print(text)
    cli.print(f"Total reclaimed space: {fmt.human_size(reclaimed)}")
    return 0


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    if verb == "build":
        return cmd_build(cli, argv)
    if verb == "prune":
        return cmd_builder_prune(cli, argv)
    cli.print("Usage:  skiff builder COMMAND\n\nCommands:\n  build\n  prune")
    return 0 if verb == "--help" else 1
