"""`skiff image ...` and its shortcuts (images, pull, push, tag, rmi, save, load,
import, history).

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, TextIO

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, StatusError, parse_kv_filters, parser
from skiff.client import APIError

Command = Callable[[Cli, list[str]], int]
DOCKER_HUB = "docker.io"
HUB_AUTH_KEY = "https://index.docker.io/v1/"


def split_ref(ref: str) -> tuple[str, str | None]:
    """repo and tag (or digest) of a reference; the tag is None when absent."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, None


def registry_of(repo: str) -> str:
    first, sep, _ = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def familiar(repo: str) -> str:
    """The fully qualified name docker prints after a pull."""
    if registry_of(repo) != DOCKER_HUB:
        return repo
    return f"docker.io/{repo}" if "/" in repo else f"docker.io/library/{repo}"


def auth_for(cli: Cli, repo: str) -> dict[str, Any] | None:
    from skiff.cli.login import credentials

    return credentials(cli, registry_of(repo))


def pull_image(cli: Cli, ref: str, quiet: bool = False, out: TextIO | None = None,
               platform: str | None = None, all_tags: bool = False,
               announce_tag: bool = True) -> None:  # fmt: skip
    from skiff.cli.progress import StreamError, display

    out = out or cli.out
    repo, tag = split_ref(ref)
    if tag is None and not all_tags:
        tag = "latest"
        if not quiet and announce_tag:
            out.write("Using default tag: latest\n")
    stream = cli.client.pull(repo, tag, auth=auth_for(cli, repo), platform=platform)
    try:
        if quiet:
            for jm in stream:
                if jm.get("error"):
                    raise StreamError(str(jm["error"]))
        else:
            display(stream, out, out.isatty())
    except StreamError as e:
        raise APIError(500, e.message) from None
    if out is cli.out:  # `pull` (also -q) ends with the reference; run's pull does not
        sep = "@" if tag and tag.startswith("sha256:") else ":"
        out.write(f"{familiar(repo)}{sep + tag if tag else ''}\n")
        out.flush()


def cmd_pull(cli: Cli, argv: list[str]) -> int:
    p = parser("pull", usage="skiff pull [OPTIONS] NAME[:TAG|@DIGEST]")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--platform")
    p.add_argument("name")
    o = p.parse_args(argv)
    pull_image(cli, o.name, quiet=o.quiet, platform=o.platform, all_tags=o.all_tags)
    return 0


def cmd_push(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.progress import StreamError, display

    p = parser("push", usage="skiff push [OPTIONS] NAME[:TAG]")
    p.add_argument("-a", "--all-tags", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("name")
    o = p.parse_args(argv)
    repo, tag = split_ref(o.name)
    if tag is None and not o.all_tags:
        tag = "latest"
        if not o.quiet:
            cli.print("Using default tag: latest")
    stream = cli.client.push(repo, tag, auth=auth_for(cli, repo))
    try:
        if o.quiet:
            for jm in stream:
                if jm.get("error"):
                    raise StreamError(str(jm["error"]))
            cli.print(o.name)
        else:
            display(stream, cli.out, cli.out_is_tty())
    except StreamError as e:
        raise StatusError(1, e.message) from None
    return 0


IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "Digest": "DIGEST", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "Size": "SIZE", "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
                 "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}  # fmt: skip
IMAGE_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def image_rows(images: list[dict[str, Any]], trunc: bool, digests: bool) -> list[dict[str, Any]]:
    rows = []
    for img in images:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        repo_digests = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        iid = img["Id"]
        base = {
            "ID": fmt.short_id(iid) if trunc else iid,
            "CreatedSince": fmt.ago(img.get("Created", 0)),
            "CreatedAt": fmt.go_time(img.get("Created", 0)),
            "Size": fmt.human_size(img.get("Size", 0)),
            "VirtualSize": fmt.human_size(img.get("VirtualSize", img.get("Size", 0)), 4),
            "SharedSize": "N/A" if img.get("SharedSize", -1) < 0 else fmt.human_size(img["SharedSize"]),
            "UniqueSize": "N/A",
            "Containers": "N/A" if img.get("Containers", -1) < 0 else str(img["Containers"]),
        }  # fmt: skip
        if not tags and not repo_digests:
            rows.append({**base, "Repository": "<none>", "Tag": "<none>", "Digest": "<none>"})
            continue
        # as the docker CLI's formatter: a row per tag, with the repository's digests only
        # when they are shown (--digests or a {{.Digest}} column); digest-only references
        # get rows of their own
        by_repo: dict[str, list[str]] = {}
        for d in repo_digests:
            repo, _, dg = d.partition("@")
            by_repo.setdefault(repo, []).append(dg)
        tagged: dict[str, list[str]] = {}
        for t in tags:
            repo, tag = split_ref(t)
            if tag:
                tagged.setdefault(repo, []).append(tag)
        for repo, repo_tags in tagged.items():
            dgs = by_repo.pop(repo, [])
            if not digests:
                dgs = []
            for tag in repo_tags:
                for dg in dgs or ["<none>"]:
                    rows.append({**base, "Repository": repo, "Tag": tag, "Digest": dg})
        for repo, dgs in by_repo.items():
            for dg in dgs if digests else [""]:
                rows.append({**base, "Repository": repo, "Tag": "<none>", "Digest": dg})
    return rows


def cmd_images(cli: Cli, argv: list[str]) -> int:
    p = parser("images", usage="skiff images [OPTIONS] [REPOSITORY[:TAG]]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format", default="")
    p.add_argument("--digests", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("repository", nargs="?")
    o = p.parse_args(argv)
    filters = parse_kv_filters(o.filter)
    if o.repository:
        filters.setdefault("reference", []).append(o.repository)
    images = cli.client.images(all=o.all, filters=filters)
    images.sort(key=lambda i: i.get("Created", 0), reverse=True)
    default = IMAGE_TABLE
    if o.digests:
        default = (
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        )
    shown = o.digests or "{{.Digest}}" in (o.format or default)
    rows = image_rows(images, not o.no_trunc, shown)
    if o.quiet and not o.format:
        # one line per row, as docker's "{{.ID}}" format: an image with two tags twice
        for r in rows:
            cli.print(r["ID"])
        return 0
    fmt.Formatter(o.format, default, IMAGE_HEADERS, go_type="*formatter.imageContext").render(
        rows, cli.out
    )
    return 0


def cmd_tag(cli: Cli, argv: list[str]) -> int:
    p = parser("tag", usage="skiff tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")
    p.add_argument("source")
    p.add_argument("target")
    o = p.parse_args(argv)
    repo, tag = split_ref(o.target)
    cli.client.tag(o.source, repo, tag or "latest")
    return 0


def cmd_rmi(cli: Cli, argv: list[str]) -> int:
    p = parser("rmi", usage="skiff rmi [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("images", nargs="+")
    o = p.parse_args(argv)
    status = 0
    for name in o.images:
        try:
            for item in cli.client.remove_image(name, o.force, o.no_prune):
                for k, v in item.items():
                    cli.print(f"{k}: {v}")
        except APIError as e:
            cli.eprint(f"Error response from daemon: {e.message}")
            status = 1
    return status


def cmd_history(cli: Cli, argv: list[str]) -> int:
    p = parser("history", usage="skiff history [OPTIONS] IMAGE")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default="")
    p.add_argument("image")
    o = p.parse_args(argv)
    history = cli.client.history(o.image)
    trunc = not o.no_trunc
    if o.quiet:
        for h in history:
            cli.print(fmt.short_id(h["Id"]) if trunc and h["Id"] != "<missing>" else h["Id"])
        return 0
    from datetime import UTC, datetime

    human = o.human.lower() not in ("false", "0", "f")
    rows = []
    for h in history:
        created = int(h.get("Created", 0))
        # time.Unix(created, 0).Format(time.RFC3339), in local time as the docker CLI
        at = datetime.fromtimestamp(created, UTC).astimezone().isoformat()
        at = at[:-6] + "Z" if at.endswith("+00:00") else at
        created_by = h.get("CreatedBy", "").replace("\t", " ")
        since = ("N/A" if created <= 946684800 else fmt.ago(created)) if human else at
        rows.append({
            "ID": fmt.short_id(h["Id"]) if trunc and h["Id"] != "<missing>" else h["Id"],
            "CreatedSince": since,
            "CreatedAt": at,
            "CreatedBy": fmt.ellipsis(created_by, 45) if trunc else created_by,
            "Size": fmt.human_size(h.get("Size", 0)) if human else str(h.get("Size", 0)),
            "Comment": h.get("Comment", ""),
        })  # fmt: skip
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED" if human else "CREATED AT",
               "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY", "Size": "SIZE",
               "Comment": "COMMENT"}  # fmt: skip
    table = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    fmt.Formatter(o.format, table, headers, go_type="*image.historyContext").render(rows, cli.out)
    return 0


def cmd_save(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.container import write_stream

    p = parser("save", usage="skiff save [OPTIONS] IMAGE [IMAGE...]")
    p.add_argument("-o", "--output")
    p.add_argument("images", nargs="+")
    o = p.parse_args(argv)
    write_stream(cli, cli.client.save(o.images), o.output)
    return 0


def cmd_load(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.progress import StreamError, display

    p = parser("load", usage="skiff load [OPTIONS]")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    o = p.parse_args(argv)
    f: IO[bytes]
    if o.input:
        try:
            f = open(o.input, "rb")  # noqa: SIM115
        except OSError as e:
            raise StatusError(1, f"open {o.input}: {(e.strerror or str(e)).lower()}") from None
    else:
        if sys.stdin.isatty():
            raise StatusError(1, "requested load from stdin, but stdin is empty")
        f = sys.stdin.buffer
    with f:
        try:
            display(cli.client.load(f, quiet=o.quiet), cli.out, cli.out_is_tty() and not o.quiet)
        except StreamError as e:
            raise StatusError(1, e.message) from None
    return 0


def cmd_import(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.progress import StreamError

    p = parser("import", usage="skiff import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("--platform")
    p.add_argument("source")
    p.add_argument("ref", nargs="?")
    o = p.parse_args(argv)
    repo, tag = split_ref(o.ref) if o.ref else (None, None)
    if o.source == "-":
        f = sys.stdin.buffer
        src = "-"
    elif "://" in o.source:
        f, src = None, o.source
    else:
        try:
            f = open(o.source, "rb")  # noqa: SIM115
        except OSError as e:
            raise StatusError(1, f"open {o.source}: {(e.strerror or str(e)).lower()}") from None
        src = "-"
    try:
        for jm in cli.client.import_image(f, repo, tag, o.message, o.change, src):
            if jm.get("error"):
                raise StreamError(str(jm["error"]))
            if jm.get("status"):
                cli.print(jm["status"])
    except StreamError as e:
        raise StatusError(1, e.message) from None
    finally:
        if f is not None and f is not sys.stdin.buffer:
            f.close()
    return 0


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.container import confirm

    p = parser("image prune", usage="skiff image prune [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append")
    o = p.parse_args(argv)
    filters = parse_kv_filters(o.filter)
    filters["dangling"] = ["false" if o.all else "true"]
    warning = ("WARNING! This will remove all images without at least one container associated to them."
               if o.all else "WARNING! This will remove all dangling images.")  # fmt: skip
    if not o.force and not confirm(cli, warning):
        return 0
    r = cli.client.prune_images(filters)
    deleted = r.get("ImagesDeleted") or []
    if deleted:
        cli.print("Deleted Images:")
        for item in deleted:
            for k, v in item.items():
                cli.print(f"{k.lower()}: {v}")
        cli.print()
    cli.print(f"Total reclaimed space: {fmt.human_size(r.get('SpaceReclaimed') or 0)}")
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.system import inspect_objects

    return inspect_objects(cli, argv, "image")


def cmd_build(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.build import cmd_build as build

    return build(cli, argv)


VERBS: dict[str, Command] = {
    "build": cmd_build,
    "ls": cmd_images,
    "list": cmd_images,
    "images": cmd_images,
    "pull": cmd_pull,
    "push": cmd_push,
    "tag": cmd_tag,
    "rm": cmd_rmi,
    "remove": cmd_rmi,
    "rmi": cmd_rmi,
    "history": cmd_history,
    "save": cmd_save,
    "load": cmd_load,
    "import": cmd_import,
    "prune": cmd_prune,
    "inspect": cmd_inspect,
}


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print("Usage:  skiff image COMMAND\n\nCommands:\n  " + "\n  ".join(sorted(VERBS)))
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
