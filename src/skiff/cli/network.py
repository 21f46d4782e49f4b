"""`skiff network ls|inspect|prune`.

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
"""

from __future__ import annotations

from collections.abc import Callable

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, parse_kv_filters, parser

Command = Callable[[Cli, list[str]], int]


def cmd_ls(cli: Cli, argv: list[str]) -> int:
    p = parser("network ls", usage="skiff network ls [OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format", default="")
    p.add_argument("--no-trunc", action="store_true")
    o = p.parse_args(argv)
    nets = sorted(cli.client.networks(parse_kv_filters(o.filter)), key=lambda n: n["Name"])
    trunc = not o.no_trunc
    if o.quiet and not o.format:
        for n in nets:
            cli.print(fmt.short_id(n["Id"]) if trunc else n["Id"])
        return 0
    rows = [{
        "ID": fmt.short_id(n["Id"]) if trunc else n["Id"], "Name": n["Name"],
        "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
        "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
        "Internal": str(bool(n.get("Internal"))).lower(),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items())),
        "CreatedAt": n.get("Created", ""),
    } for n in nets]  # fmt: skip
    headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
               "CreatedAt": "CREATED AT"}  # fmt: skip
    table = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    fmt.Formatter(o.format, table, headers).render(rows, cli.out)
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.system import inspect_objects

    return inspect_objects(cli, argv, "network")


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.container import confirm

    p = parser("network prune", usage="skiff network prune [OPTIONS]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append")
    o = p.parse_args(argv)
    if not o.force and not confirm(
        cli, "WARNING! This will remove all custom networks not used by at least one container."
    ):
        return 0
    r = cli.client.prune_networks(parse_kv_filters(o.filter))
    if r.get("NetworksDeleted"):
        cli.print("Deleted Networks:\n" + "\n".join(r["NetworksDeleted"]))
    return 0


VERBS: dict[str, Command] = {"ls": cmd_ls, "list": cmd_ls, "inspect": cmd_inspect,
                             "prune": cmd_prune}  # fmt: skip


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print("Usage:  skiff network COMMAND\n\nCommands:\n  inspect\n  ls\n  prune")
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
