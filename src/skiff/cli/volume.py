"""`skiff volume create|ls|inspect|rm|prune`.

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
"""

from __future__ import annotations

from collections.abc import Callable

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, parse_kv_filters, parse_labels, parser
from skiff.client import APIError

Command = Callable[[Cli, list[str]], int]


def cmd_create(cli: Cli, argv: list[str]) -> int:
    p = parser("volume create", usage="skiff volume create [OPTIONS] [VOLUME]")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--name")
    p.add_argument("volume", nargs="?")
    o = p.parse_args(argv)
    body = {
        "Name": o.volume or o.name or "",
        "Driver": o.driver,
        "DriverOpts": dict(x.split("=", 1) for x in o.opt),
        "Labels": parse_labels(o.label),
    }
    cli.print(cli.client.create_volume(body)["Name"])
    return 0


def cmd_ls(cli: Cli, argv: list[str]) -> int:
    p = parser("volume ls", usage="skiff volume ls [OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format", default="")
    o = p.parse_args(argv)
    vols = cli.client.volumes(parse_kv_filters(o.filter)).get("Volumes") or []
    vols.sort(key=lambda v: fmt.natural_key(v["Name"]))
    if o.quiet and not o.format:
        for v in vols:
            cli.print(v["Name"])
        return 0
    rows = [fmt.LabeledRow(v.get("Labels"), {
        "Name": v["Name"], "Driver": v.get("Driver", ""), "Scope": v.get("Scope", ""),
        "Mountpoint": v.get("Mountpoint", ""),
        "Labels": ",".join(f"{k}={x}" for k, x in sorted((v.get("Labels") or {}).items())),
        "Links": "N/A", "Size": "N/A", "Availability": "N/A", "Group": "N/A", "Status": "N/A",
    }) for v in vols]  # fmt: skip
    headers = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}  # fmt: skip
    fmt.Formatter(
        o.format, "table {{.Driver}}\t{{.Name}}", headers, go_type="*formatter.volumeContext"
    ).render(rows, cli.out)
    return 0


def cmd_rm(cli: Cli, argv: list[str]) -> int:
    p = parser("volume rm", usage="skiff volume rm [OPTIONS] VOLUME [VOLUME...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("volumes", nargs="+")
    o = p.parse_args(argv)
    status = 0
    for v in o.volumes:
        try:
            cli.client.remove_volume(v, o.force)
            cli.print(v)
        except APIError as e:
            cli.eprint(f"Error response from daemon: {e.message}")
            status = 1
    return status


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.container import confirm

    p = parser("volume prune", usage="skiff volume prune [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append")
    o = p.parse_args(argv)
    if not o.force and not confirm(
        cli, "WARNING! This will remove anonymous local volumes not used by at least one container."
    ):
        return 0
    filters = parse_kv_filters(o.filter)
    if o.all:
        filters["all"] = ["true"]
    r = cli.client.prune_volumes(filters)
    if r.get("VolumesDeleted"):
        cli.print("Deleted Volumes:\n" + "\n".join(r["VolumesDeleted"]) + "\n")
    cli.print(f"Total reclaimed space: {fmt.human_size(r.get('SpaceReclaimed') or 0)}")
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.system import inspect_objects

    return inspect_objects(cli, argv, "volume", raw=False)


VERBS: dict[str, Command] = {"create": cmd_create, "ls": cmd_ls, "list": cmd_ls, "rm": cmd_rm,
                             "remove": cmd_rm, "prune": cmd_prune, "inspect": cmd_inspect}  # fmt: skip


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print(
            "Usage:  skiff volume COMMAND\n\nCommands:\n  create\n  inspect\n  ls\n  prune\n  rm"
        )
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
