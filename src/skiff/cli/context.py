"""`skiff context create|ls|use|inspect|rm|show|update`: named endpoints kept
in the docker CLI's context store layout (see config.py).

Part of the CLI (DESIGN.md: skiff CLI; the context decides which daemon the
client talks to). The docker CLI reads contexts skiff writes, and back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, StatusError, UsageError, parser
from skiff.cli.config import DEFAULT_CONTEXT, ContextStore, default_host, resolve_context_name

Command = Callable[[Cli, list[str]], int]
DEFAULT_DESCRIPTION = "Current DOCKER_HOST based configuration"


def parse_docker_endpoint(spec: str) -> dict[str, str]:
    out = {}
    for item in spec.split(","):
        if not item:
            continue
        k, sep, v = item.partition("=")
        if not sep:
            raise UsageError(f"invalid docker endpoint option {item!r}: expected key=value")
        k = k.strip()
        if k not in ("host", "ca", "cert", "key", "skip-tls-verify", "from"):
            raise UsageError(f"unrecognized config key: {k}")
        out[k] = v
    return out


def valid_name(name: str) -> None:
    import re

    if name == DEFAULT_CONTEXT:
        raise UsageError('"default" is a reserved context name')
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]*", name):
        raise UsageError(f'context name "{name}" is invalid, names are validated against regexp '
                         '"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$"')  # fmt: skip


def current(cli: Cli) -> str:
    return resolve_context_name(cli.context_flag, cli.hosts, cli.config)


def cmd_create(cli: Cli, argv: list[str]) -> int:
    p = parser("context create", usage="skiff context create [OPTIONS] CONTEXT")
    p.add_argument("--description", default="")
    p.add_argument("--docker", default="")
    p.add_argument("--from", dest="from_")
    p.add_argument("name")
    o = p.parse_args(argv)
    valid_name(o.name)
    store = ContextStore(cli.config_dir)
    if store.exists(o.name):
        raise StatusError(1, f'context "{o.name}" already exists')
    ep = parse_docker_endpoint(o.docker)
    source = o.from_ or ep.get("from")
    tls: dict[str, bytes] = {}
    if source or not ep:
        base = source or current(cli)
        if base == DEFAULT_CONTEXT:
            host = cli.hosts[0] if cli.hosts else default_host()
            skip = False
        else:
            ctx = store.load(base)
            host, skip = ctx.host, ctx.skip_tls_verify
            tls = {k: p_.read_bytes() for k, p_ in ctx.tls_files.items()}
        host = ep.get("host", host)
    else:
        host = ep.get("host") or default_host()
        skip = False
    if "skip-tls-verify" in ep:
        skip = ep["skip-tls-verify"].lower() in ("1", "true")
    for key in ("ca", "cert", "key"):
        if ep.get(key):
            try:
                tls[key] = Path(ep[key]).expanduser().read_bytes()
            except OSError as e:
                raise StatusError(1, f"unable to read {key} file {ep[key]}: {e.strerror}") from None
    store.create(o.name, host, o.description, skip, tls)
    cli.print(o.name)
    cli.eprint(f'Successfully created context "{o.name}"')
    return 0


def cmd_update(cli: Cli, argv: list[str]) -> int:
    p = parser("context update", usage="skiff context update [OPTIONS] CONTEXT")
    p.add_argument("--description")
    p.add_argument("--docker", default="")
    p.add_argument("name")
    o = p.parse_args(argv)
    store = ContextStore(cli.config_dir)
    ep = parse_docker_endpoint(o.docker)
    store.update(o.name, ep.get("host"), o.description)
    tls = {}
    for key in ("ca", "cert", "key"):
        if ep.get(key):
            tls[key] = Path(ep[key]).read_bytes()
    if tls:
        from skiff.cli.config import write_atomic

        for key, data in tls.items():
            write_atomic(store.tls_dir(o.name) / "docker" / f"{key}.pem", data, 0o600)
    cli.print(o.name)
    cli.eprint(f'Successfully updated context "{o.name}"')
    return 0


def describe(cli: Cli, name: str) -> dict[str, Any]:
    """The context as `docker context inspect` shows it."""
    store = ContextStore(cli.config_dir)
    if name == DEFAULT_CONTEXT:
        host = cli.hosts[0] if cli.hosts else default_host()
        return {
            "Name": DEFAULT_CONTEXT,
            "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
            "TLSMaterial": {},
            "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"},
        }
    ctx = store.load(name)
    files = sorted(f"{k}.pem" for k in ctx.tls_files)
    return {
        "Name": ctx.name,
        "Metadata": ctx.meta.get("Metadata") or {},
        "Endpoints": ctx.meta.get("Endpoints") or {},
        "TLSMaterial": {"docker": files} if files else {},
        "Storage": {"MetadataPath": str(store.meta_dir(name)), "TLSPath": str(store.tls_dir(name))},
    }


def cmd_ls(cli: Cli, argv: list[str]) -> int:
    p = parser("context ls", usage="skiff context ls [OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", default="")
    o = p.parse_args(argv)
    store = ContextStore(cli.config_dir)
    cur = current(cli)
    names = [DEFAULT_CONTEXT, *store.names()]
    if o.quiet:
        for n in names:
            cli.print(n)
        return 0
    rows = []
    for n in names:
        try:
            d = describe(cli, n)
            error = ""
        except Exception as e:  # a broken context is listed with its error, as docker does
            d, error = {"Metadata": {}, "Endpoints": {}}, str(e)
        desc = (d["Metadata"] or {}).get("Description", "")
        if n == DEFAULT_CONTEXT:
            desc = DEFAULT_DESCRIPTION
        rows.append({
            "Name": n + (" *" if n == cur and not o.format else ""),
            "Current": n == cur,
            "Description": desc,
            "DockerEndpoint": ((d["Endpoints"] or {}).get("docker") or {}).get("Host", ""),
            "Error": error,
        })  # fmt: skip
    headers = {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT",
               "Error": "ERROR", "Current": "CURRENT"}  # fmt: skip
    table = "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}"
    if o.format == "json" or o.format == "{{json .}}":
        for r in rows:
            cli.print(json.dumps({k: r[k] for k in sorted(r)}, separators=(",", ":")))
        return 0
    fmt.Formatter(o.format, table, headers, go_type="*formatter.clientContextContext").render(
        rows, cli.out
    )
    return 0


def cmd_use(cli: Cli, argv: list[str]) -> int:
    p = parser("context use", usage="skiff context use CONTEXT")
    p.add_argument("name")
    o = p.parse_args(argv)
    if o.name != DEFAULT_CONTEXT:
        ContextStore(cli.config_dir).load(o.name)
    cli.config.current_context = o.name
    cli.config.save()
    cli.print(o.name)
    cli.eprint(f'Current context is now "{o.name}"')
    return 0


def cmd_show(cli: Cli, argv: list[str]) -> int:
    parser("context show", usage="skiff context show").parse_args(argv)
    cli.print(current(cli))
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    p = parser("context inspect", usage="skiff context inspect [OPTIONS] [CONTEXT...]")
    p.add_argument("-f", "--format", default="")
    p.add_argument("names", nargs="*")
    o = p.parse_args(argv)
    found = [describe(cli, n) for n in (o.names or [current(cli)])]
    if o.format:
        for d in found:
            cli.print(fmt.render_template(o.format, d))
    else:
        cli.print(json.dumps(found, indent=4).replace("<", "\\u003c").replace(">", "\\u003e"))
    return 0


def cmd_rm(cli: Cli, argv: list[str]) -> int:
    p = parser("context rm", usage="skiff context rm CONTEXT [CONTEXT...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    o = p.parse_args(argv)
    store = ContextStore(cli.config_dir)
    errors = []
    for n in o.names:
        if n == DEFAULT_CONTEXT:
            errors.append('default: context "default" cannot be removed')
            continue
        if n == cli.config.current_context:
            if not o.force:
                errors.append(f'context "{n}" is in use, set -f flag to force remove')
                continue
            cli.config.current_context = ""
            cli.config.save()
        if not store.exists(n):
            errors.append(f'context "{n}" does not exist')
            continue
        store.remove(n)
        cli.print(n)
    if errors:
        raise StatusError(1, "\n".join(errors))
    return 0


VERBS: dict[str, Command] = {"create": cmd_create, "update": cmd_update, "ls": cmd_ls,
                             "list": cmd_ls, "use": cmd_use, "show": cmd_show,
                             "inspect": cmd_inspect, "rm": cmd_rm, "remove": cmd_rm}  # fmt: skip


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print("Usage:  skiff context COMMAND\n\nCommands:\n  " + "\n  ".join(sorted(VERBS)))
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
