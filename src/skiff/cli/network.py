"""`skiff network create|ls|inspect|rm|connect|disconnect|prune`.

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
"""

from __future__ import annotations

from collections.abc import Callable

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, StatusError, UsageError, parse_kv_filters, parse_labels, parser
from skiff.client import APIError, NotFound

Command = Callable[[Cli, list[str]], int]


def cmd_ls(cli: Cli, argv: list[str]) -> int:
    p = parser("network ls", usage="skiff network ls [OPTIONS]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format", default="")
    p.add_argument("--no-trunc", action="store_true")
    o = p.parse_args(argv)
    nets = sorted(
        cli.client.networks(parse_kv_filters(o.filter)), key=lambda n: fmt.natural_key(n["Name"])
    )
    trunc = not o.no_trunc
    if o.quiet and not o.format:
        for n in nets:
            cli.print(fmt.short_id(n["Id"]) if trunc else n["Id"])
        return 0
    from skiff.cli.goshape import go_time

    rows = [fmt.LabeledRow(n.get("Labels"), {
        "ID": fmt.short_id(n["Id"]) if trunc else n["Id"], "Name": n["Name"],
        "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
        "IPv6": str(bool(n.get("EnableIPv6"))).lower(),
        "Internal": str(bool(n.get("Internal"))).lower(),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items())),
        "IPv4": str(bool(n.get("EnableIPv4"))).lower(),
        # time.Time's String(), as the docker CLI prints the decoded Created
        "CreatedAt": go_time(n.get("Created")).go_string(),
    }) for n in nets]  # fmt: skip
    headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
               "IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
               "CreatedAt": "CREATED AT"}  # fmt: skip
    table = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
    fmt.Formatter(o.format, table, headers, go_type="*network.networkContext").render(rows, cli.out)
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
        cli.print("Deleted Networks:\n" + "\n".join(r["NetworksDeleted"]) + "\n")
    return 0


def kv_options(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep:
            raise UsageError(f'invalid argument "{v}" for "{flag}" flag: invalid key/value '
                             f"pair format in driver options")  # fmt: skip
        out[k] = val
    return out


def in_subnet(addr: str, subnet: str) -> bool:
    import ipaddress

    try:
        net = ipaddress.ip_network(subnet, strict=False)
        if "/" in addr:
            return ipaddress.ip_network(addr, strict=False).subnet_of(net)  # type: ignore[arg-type]
        return ipaddress.ip_address(addr) in net
    except ValueError:
        return False


def ipam_config(subnets: list[str], ranges: list[str], gateways: list[str],
                aux: dict[str, str]) -> list[dict[str, object]]:  # fmt: skip
    """The docker CLI's consolidation: each range, gateway and aux address goes with the
    subnet that holds it."""
    if len(subnets) < len(ranges) or len(subnets) < len(gateways):
        raise StatusError(1, "every ip-range or gateway must have a corresponding subnet")
    configs: list[dict[str, object]] = [{"Subnet": s} for s in subnets]
    for r in ranges:
        owner = [c for c in configs if in_subnet(r, str(c["Subnet"]))]
        if not owner:
            raise StatusError(1, f"no matching subnet for range {r}")
        if "IPRange" in owner[0]:
            raise StatusError(1, f"cannot configure multiple ranges ({r}, {owner[0]['IPRange']})"
                                 f" on the same subnet ({owner[0]['Subnet']})")  # fmt: skip
        owner[0]["IPRange"] = r
    for g in gateways:
        owner = [c for c in configs if in_subnet(g, str(c["Subnet"]))]
        if not owner:
            raise StatusError(1, f"no matching subnet for gateway {g}")
        if "Gateway" in owner[0]:
            raise StatusError(1, f"cannot configure multiple gateways ({g}, "
                                 f"{owner[0]['Gateway']}) for the same subnet "
                                 f"({owner[0]['Subnet']})")  # fmt: skip
        owner[0]["Gateway"] = g
    for name, a in aux.items():
        owner = [c for c in configs if in_subnet(a, str(c["Subnet"]))]
        if not owner:
            raise StatusError(1, f"no matching subnet for aux-address {a}")
        owner[0].setdefault("AuxiliaryAddresses", {})[name] = a  # type: ignore[index]
    return configs


def cmd_create(cli: Cli, argv: list[str]) -> int:
    p = parser("network create", usage="skiff network create [OPTIONS] NETWORK")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--aux-address", action="append", default=[])
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("--ipam-opt", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--scope", default="")
    p.add_argument("name")
    o = p.parse_args(argv)
    configs = ipam_config(o.subnet, o.ip_range, o.gateway,
                          kv_options(o.aux_address, "--aux-address"))  # fmt: skip
    body: dict[str, object] = {
        "Name": o.name,
        "CheckDuplicate": True,
        "Driver": o.driver,
        "Options": kv_options(o.opt, "--opt"),
        "IPAM": {
            "Driver": o.ipam_driver,
            "Config": configs,
            "Options": kv_options(o.ipam_opt, "--ipam-opt"),
        },
        "Internal": o.internal,
        "EnableIPv6": o.ipv6,
        "Attachable": o.attachable,
        "Labels": parse_labels(o.label),
    }
    if o.scope:
        body["Scope"] = o.scope
    cli.print(cli.client.create_network(body)["Id"])
    return 0


def cmd_rm(cli: Cli, argv: list[str]) -> int:
    p = parser("network rm", usage="skiff network rm NETWORK [NETWORK...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("networks", nargs="+")
    o = p.parse_args(argv)
    status = 0
    for n in o.networks:
        try:
            cli.client.remove_network(n)
        except NotFound:
            if o.force:
                continue
            cli.out.flush()
            cli.eprint(f"Error response from daemon: network {n} not found")
            status = 1
            continue
        except APIError as e:
            cli.out.flush()
            cli.eprint(f"Error response from daemon: {e.message}")
            status = 1
            continue
        cli.print(n, flush=True)
    if status:
        cli.eprint("exit status 1")  # the docker CLI's last line after failed removals
    return status


def cmd_connect(cli: Cli, argv: list[str]) -> int:
    p = parser("network connect", usage="skiff network connect [OPTIONS] NETWORK CONTAINER")
    p.add_argument("--ip", default="")
    p.add_argument("--ip6", default="")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--link-local-ip", action="append", default=[])
    p.add_argument("--driver-opt", action="append", default=[])
    p.add_argument("network")
    p.add_argument("container")
    o = p.parse_args(argv)
    endpoint: dict[str, object] = {}
    if o.ip or o.ip6 or o.link_local_ip:
        ipam: dict[str, object] = {}
        if o.ip:
            ipam["IPv4Address"] = o.ip
        if o.ip6:
            ipam["IPv6Address"] = o.ip6
        if o.link_local_ip:
            ipam["LinkLocalIPs"] = o.link_local_ip
        endpoint["IPAMConfig"] = ipam
    if o.alias:
        endpoint["Aliases"] = o.alias
    if o.link:
        endpoint["Links"] = o.link
    if o.driver_opt:
        endpoint["DriverOpts"] = kv_options(o.driver_opt, "--driver-opt")
    cli.client.connect_network(o.network, o.container, endpoint)
    return 0


def cmd_disconnect(cli: Cli, argv: list[str]) -> int:
    p = parser("network disconnect", usage="skiff network disconnect [OPTIONS] NETWORK CONTAINER")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    o = p.parse_args(argv)
    cli.client.disconnect_network(o.network, o.container, o.force)
    return 0


VERBS: dict[str, Command] = {"ls": cmd_ls, "list": cmd_ls, "inspect": cmd_inspect,
                             "prune": cmd_prune, "create": cmd_create, "rm": cmd_rm,
                             "remove": cmd_rm, "connect": cmd_connect,
                             "disconnect": cmd_disconnect}  # fmt: skip


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print("Usage:  skiff network COMMAND\n\nCommands:\n  "
                  + "\n  ".join(sorted(set(VERBS) - {"list", "remove"})))  # fmt: skip
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
