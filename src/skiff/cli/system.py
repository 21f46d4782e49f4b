"""`skiff system ...` and its shortcuts (version, info, events, inspect), plus
`system df`, `system prune` and `system dial-stdio`.

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client -> Engine API).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skiff.cli.common import Cli, StatusError, parse_kv_filters, parser
from skiff.client import APIError, DaemonUnreachable, NotFound

if TYPE_CHECKING:
    from skiff.cli import formatting as fmt
else:
    from skiff.cli import lazy

    fmt = lazy.module("skiff.cli.formatting")

Command = Callable[[Cli, list[str]], int]


def ansic(rfc3339: str) -> str:
    """A build time as Go's time.ANSIC ("Mon Jan  2 15:04:05 2006"), local time."""
    from datetime import datetime

    # seconds are enough here, and parsing them inline spares the formatting module
    try:
        main, _, rest = rfc3339.partition(".")
        tz = rest.lstrip("0123456789") if rest else rfc3339[19:]
        tz = "+00:00" if tz in ("Z", "") else tz
        t = datetime.fromisoformat(main[:19] + tz).astimezone()
    except ValueError:
        return rfc3339
    return t.strftime("%a %b ") + f"{t.day:>2}" + t.strftime(" %H:%M:%S %Y")


def cmd_version(cli: Cli, argv: list[str]) -> int:
    from skiff import __version__
    from skiff.client.api import MAX_API_VERSION

    fmt_str = ""
    if argv:  # argparse only when there is something to parse: start-up counts here
        p = parser("version", usage="skiff version [OPTIONS]")
        p.add_argument("-f", "--format", default="")
        fmt_str = p.parse_args(argv).format
    import os

    machine = os.uname().machine
    client_info: dict[str, Any] = {
        "Platform": {"Name": ""},
        "Version": __version__,
        "ApiVersion": MAX_API_VERSION,
        "DefaultAPIVersion": MAX_API_VERSION,
        "PythonVersion": "{}.{}.{}".format(*sys.version_info[:3]),
        "Os": sys.platform,
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
        "Context": cli.endpoint.context,
    }
    server: dict[str, Any] | None = None
    error: Exception | None = None
    try:
        server = cli.client.version()
        client_info["ApiVersion"] = cli.client.api_version
    except (DaemonUnreachable, APIError) as e:
        error = e
    if fmt_str:
        data = {"Client": client_info, "Server": server}
        cli.print(fmt.render_template(fmt_str, data) if fmt_str != "json" else json.dumps(data))
    else:
        api = client_info["ApiVersion"]
        if api != MAX_API_VERSION:
            api += f" (downgraded from {MAX_API_VERSION})"
        cli.print("Client:")
        cli.print(f" Version:           {client_info['Version']}")
        cli.print(f" API version:       {api}")
        cli.print(f" Python version:    {client_info['PythonVersion']}")
        cli.print(f" OS/Arch:           {client_info['Os']}/{client_info['Arch']}")
        cli.print(f" Context:           {client_info['Context']}")
        if server is not None:
            cli.print()
            name = (server.get("Platform") or {}).get("Name", "")
            cli.print("Server:" + (f" {name}" if name else ""))
            for comp in server.get("Components") or []:
                d = comp.get("Details") or {}
                cli.print(f" {comp.get('Name')}:")
                if comp.get("Name") == "Engine":
                    cli.print(f"  Version:          {comp.get('Version')}")
                    cli.print(
                        f"  API version:      {d.get('ApiVersion')} (minimum version {d.get('MinAPIVersion')})"
                    )
                    cli.print(f"  Go version:       {d.get('GoVersion')}")
                    cli.print(f"  Git commit:       {d.get('GitCommit')}")
                    cli.print(f"  Built:            {ansic(str(d.get('BuildTime', '')))}")
                    cli.print(f"  OS/Arch:          {d.get('Os')}/{d.get('Arch')}")
                    cli.print(f"  Experimental:     {d.get('Experimental')}")
                else:
                    cli.print(f"  Version:          {comp.get('Version')}")
                    for k in sorted(d):
                        cli.print(f"  {(k + ':'):<18}{d[k]}")
    if error is not None:
        raise error
    return 0


def cmd_info(cli: Cli, argv: list[str]) -> int:
    from skiff import __version__

    p = parser("info", usage="skiff info [OPTIONS]")
    p.add_argument("-f", "--format", default="")
    o = p.parse_args(argv)
    if o.format:
        info = cli.client.info()
        cli.print(fmt.render_template(o.format, info) if o.format != "json" else json.dumps(info))
        return 0
    cli.print("Client:")
    cli.print(f" Version:    {__version__}")
    cli.print(f" Context:    {cli.endpoint.context}")
    cli.print(" Debug Mode: false")
    cli.print()
    cli.print("Server:")
    try:
        i = cli.client.info()
    except (DaemonUnreachable, APIError) as e:
        cli.print(f"ERROR: {e}")
        raise StatusError(1, "errors pretty printing info") from None
    lines = [
        ("Containers", i.get("Containers")),
        (" Running", i.get("ContainersRunning")),
        (" Paused", i.get("ContainersPaused")),
        (" Stopped", i.get("ContainersStopped")),
        ("Images", i.get("Images")),
        ("Server Version", i.get("ServerVersion")),
        ("Storage Driver", i.get("Driver")),
    ]
    for k, v in i.get("DriverStatus") or []:
        lines.append((f" {k}", v))
    lines += [
        ("Logging Driver", i.get("LoggingDriver")),
        ("Cgroup Driver", i.get("CgroupDriver")),
        ("Cgroup Version", i.get("CgroupVersion")),
    ]
    plugins = i.get("Plugins") or {}
    if plugins:
        lines.append(("Plugins", None))
        for kind in ("Volume", "Network", "Authorization", "Log"):
            if plugins.get(kind):
                lines.append((f" {kind}", " ".join(plugins[kind])))
    swarm = (i.get("Swarm") or {}).get("LocalNodeState")
    if swarm:
        lines.append(("Swarm", swarm))
    lines += [
        ("Runtimes", " ".join((i.get("Runtimes") or {}).keys())),
        ("Default Runtime", i.get("DefaultRuntime")),
        ("Init Binary", i.get("InitBinary")),
    ]
    for label, key in (("containerd", "ContainerdCommit"), ("runc", "RuncCommit"),
                       ("init", "InitCommit")):  # fmt: skip
        if key in i:
            lines.append((f"{label} version", (i.get(key) or {}).get("ID", "")))
    secopts = i.get("SecurityOptions") or []
    if secopts:
        lines.append(("Security Options", None))
        for opt in secopts:
            fields = dict(kv.split("=", 1) for kv in opt.split(",") if "=" in kv)
            lines.append((f" {fields.get('name', opt)}", None))
            for k, v in fields.items():
                if k != "name":
                    lines.append((f"  {k.title()}", v))
    lines += [
        ("Kernel Version", i.get("KernelVersion")),
        ("Operating System", i.get("OperatingSystem")),
        ("OSType", i.get("OSType")),
        ("Architecture", i.get("Architecture")),
        ("CPUs", i.get("NCPU")),
        ("Total Memory", fmt.bytes_size(i.get("MemTotal") or 0)),
        ("Name", i.get("Name")),
        ("ID", i.get("ID")),
        ("Docker Root Dir", i.get("DockerRootDir")),
        ("Debug Mode", str(bool(i.get("Debug"))).lower()),
        ("Experimental", str(bool(i.get("ExperimentalBuild"))).lower()),
    ]
    for k, v in lines:
        if v is None and not k.startswith(" "):
            cli.print(f" {k}:")
        elif v is None:
            cli.print(f" {k}")
        else:
            cli.print(f" {k}: {v}")
    regs = (i.get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    idx = (i.get("RegistryConfig") or {}).get("IndexConfigs") or {}
    insecure = [k for k, v in idx.items() if not v.get("Secure")] + regs
    if insecure:
        cli.print(" Insecure Registries:")
        for r in insecure:
            cli.print(f"  {r}")
    cli.print(f" Live Restore Enabled: {str(bool(i.get('LiveRestoreEnabled'))).lower()}")
    cli.print()
    for w in i.get("Warnings") or []:
        cli.eprint(w)
    return 0


def event_line(ev: dict[str, Any]) -> str:
    from datetime import datetime

    nano = ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000
    t = datetime.fromtimestamp(nano // 1_000_000_000).astimezone()
    stamp = (
        t.strftime("%Y-%m-%dT%H:%M:%S")
        + f".{nano % 1_000_000_000:09d}"
        + (t.strftime("%z")[:3] + ":" + t.strftime("%z")[3:])
    )
    stamp = stamp.replace("+00:00", "Z")
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {ev.get('Type')} {ev.get('Action')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return line


def cmd_events(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.container import to_unix_param

    p = parser("events", usage="skiff events [OPTIONS]")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format", default="")
    p.add_argument("--since")
    p.add_argument("--until")
    o = p.parse_args(argv)
    stream = cli.client.events(to_unix_param(o.since), to_unix_param(o.until),
                               parse_kv_filters(o.filter))  # fmt: skip
    try:
        for ev in stream:
            if o.format == "json" or o.format == "{{json .}}":
                cli.print(json.dumps(ev, separators=(",", ":")))
            elif o.format:
                cli.print(fmt.render_template(o.format, ev))
            else:
                cli.print(event_line(ev))
            cli.out.flush()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_df(cli: Cli, argv: list[str]) -> int:
    p = parser("system df", usage="skiff system df [OPTIONS]")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--format", default="")
    o = p.parse_args(argv)
    df = cli.client.df()
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    volumes = df.get("Volumes") or []
    cache = df.get("BuildCache") or []

    def hs(size: float) -> str:
        return fmt.human_size(size, 4)  # units.HumanSize, as docker's df

    def share(part: int, whole: int) -> str:
        # the docker CLI's "%s (%v%%)" with Go's integer division (towards zero)
        if whole <= 0:
            return hs(part)
        pct = abs(part * 100) // whole * (1 if part >= 0 else -1)
        return f"{hs(part)} ({pct}%)"

    def active(c: dict[str, Any]) -> bool:
        return c.get("State") in ("running", "paused", "restarting")

    layers = int(df.get("LayersSize") or 0)
    img_used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in images
                   if (i.get("Containers") or 0) != 0 and -1 not in (i.get("Size", 0),
                                                                     i.get("SharedSize", -1)))  # fmt: skip
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_recl = sum(c.get("SizeRw") or 0 for c in containers if not active(c))
    usage = [v.get("UsageData") or {"Size": -1, "RefCount": 0} for v in volumes]
    v_size = sum(u.get("Size", -1) for u in usage if u.get("Size", -1) != -1)
    v_recl = sum(u.get("Size", -1) for u in usage
                 if u.get("Size", -1) != -1 and u.get("RefCount", 0) == 0)  # fmt: skip
    b_size = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    b_busy = sum(b.get("Size", 0) for b in cache if b.get("InUse") and not b.get("Shared"))
    rows = [
        {"Type": "Images", "TotalCount": str(len(images)),
         "Active": str(sum(1 for i in images if (i.get("Containers") or 0) > 0)),
         "Size": hs(layers), "Reclaimable": share(layers - img_used, layers)},
        {"Type": "Containers", "TotalCount": str(len(containers)),
         "Active": str(sum(1 for c in containers if active(c))),
         "Size": hs(c_size), "Reclaimable": share(c_recl, c_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for u in usage if u.get("RefCount", 0) > 0)),
         "Size": hs(v_size), "Reclaimable": share(v_recl, v_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)),
         "Active": str(sum(1 for b in cache if b.get("InUse"))),
         "Size": hs(b_size), "Reclaimable": hs(b_size - b_busy)},
    ]  # fmt: skip
    if o.verbose and o.format in ("", "table"):
        df_verbose(cli, df)
        return 0
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}  # fmt: skip
    table = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    fmt.Formatter(o.format, table, headers, go_type="*formatter.diskUsageImagesContext").render(
        rows, cli.out
    )
    return 0


def df_verbose(cli: Cli, df: dict[str, Any]) -> None:
    """`system df -v`: the docker CLI's four tables (images, containers, volumes, cache)."""
    from skiff.cli.container import ps_row
    from skiff.cli.image import IMAGE_HEADERS, split_ref

    out = cli.out
    rows: list[dict[str, Any]] = []
    for i in df.get("Images") or []:
        repo = tag = "<none>"
        tags = [t for t in i.get("RepoTags") or [] if t != "<none>:<none>"]
        if tags:  # the first tag only
            r, t = split_ref(tags[0])
            if t:
                repo, tag = r, t
        size, shared, used = i.get("Size", 0), i.get("SharedSize", -1), i.get("Containers", -1)
        rows.append({
            "Repository": repo, "Tag": tag, "ID": fmt.short_id(i.get("Id", "")),
            "CreatedSince": fmt.ago(i.get("Created", 0)), "Size": fmt.human_size(size),
            "SharedSize": "N/A" if shared == -1 else fmt.human_size(shared, 4),
            "UniqueSize": "N/A" if -1 in (size, shared) else fmt.human_size(size - shared, 4),
            "Containers": "N/A" if used == -1 else str(used),
        })  # fmt: skip
    out.write("Images space usage:\n\n")
    fmt.Formatter("", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
                  "\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
                  IMAGE_HEADERS).render(rows, out)  # fmt: skip
    out.write("\nContainers space usage:\n\n")
    containers = [ps_row({**c, "SizeRootFs": 0}, True) for c in df.get("Containers") or []]
    fmt.Formatter("", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}"
                  "\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
                  {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
                   "LocalVolumes": "LOCAL VOLUMES", "Size": "SIZE", "RunningFor": "CREATED",
                   "Status": "STATUS", "Names": "NAMES"}).render(containers, out)  # fmt: skip
    out.write("\nLocal Volumes space usage:\n\n")
    volumes = []
    for v in df.get("Volumes") or []:
        usage = v.get("UsageData")
        links = str(usage.get("RefCount", 0)) if usage else "N/A"
        size = usage.get("Size", -1) if usage else -1
        volumes.append({"Name": v.get("Name", ""), "Links": links,
                        "Size": "N/A" if size == -1 else fmt.human_size(size, 4)})  # fmt: skip
    fmt.Formatter("", "table {{.Name}}\t{{.Links}}\t{{.Size}}",
                  {"Name": "VOLUME NAME", "Links": "LINKS", "Size": "SIZE"}).render(volumes, out)  # fmt: skip
    cache = df.get("BuildCache") or []
    total = sum(b.get("Size", 0) for b in cache)
    out.write(f"\nBuild cache usage: {fmt.human_size(total, 4)}\n\n")
    # least recently used first, never-used ones before them, ties by ID
    cache = sorted(cache, key=lambda b: (b.get("LastUsedAt") is not None,
                                         fmt.parse_time(b.get("LastUsedAt")), b.get("ID", "")))  # fmt: skip
    records = [{
        "ID": b.get("ID", "")[:12] + ("*" if b.get("InUse") else ""),
        "CacheType": b.get("Type", ""), "Size": fmt.human_size(b.get("Size", 0)),
        "CreatedSince": fmt.ago(fmt.parse_time(b.get("CreatedAt"))),
        "LastUsedSince": fmt.ago(fmt.parse_time(b["LastUsedAt"])) if b.get("LastUsedAt") else "",
        "UsageCount": str(b.get("UsageCount", 0)), "Shared": "true" if b.get("Shared") else "false",
    } for b in cache]  # fmt: skip
    fmt.Formatter("", "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}"
                  "\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
                  {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE",
                   "CreatedSince": "CREATED", "LastUsedSince": "LAST USED",
                   "UsageCount": "USAGE", "Shared": "SHARED"}).render(records, out)  # fmt: skip


def cmd_prune(cli: Cli, argv: list[str]) -> int:
    from skiff.cli.container import confirm

    p = parser("system prune", usage="skiff system prune [OPTIONS]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")
    p.add_argument("--filter", action="append")
    o = p.parse_args(argv)
    items = ["all stopped containers", "all networks not used by at least one container"]
    if o.volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them"
                 if o.all else "all dangling images")  # fmt: skip
    items.append("all build cache" if o.all else "unused build cache")
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not o.force and not confirm(cli, warning):
        return 0
    filters = parse_kv_filters(o.filter)
    client = cli.client
    total = 0
    r = client.prune_containers(filters)
    total += r.get("SpaceReclaimed") or 0
    if r.get("ContainersDeleted"):
        cli.print("Deleted Containers:\n" + "\n".join(r["ContainersDeleted"]) + "\n")
    r = client.prune_networks(filters)
    if r.get("NetworksDeleted"):
        cli.print("Deleted Networks:\n" + "\n".join(r["NetworksDeleted"]) + "\n")
    if o.volumes:
        r = client.prune_volumes(filters)
        total += r.get("SpaceReclaimed") or 0
        if r.get("VolumesDeleted"):
            cli.print("Deleted Volumes:\n" + "\n".join(r["VolumesDeleted"]) + "\n")
    r = client.prune_images({**filters, "dangling": ["false" if o.all else "true"]})
    total += r.get("SpaceReclaimed") or 0
    if r.get("ImagesDeleted"):
        cli.print("Deleted Images:")
        for item in r["ImagesDeleted"]:
            for k, v in item.items():
                cli.print(f"{k.lower()}: {v}")
        cli.print()
    from skiff.cli.build import prune_build_cache

    reclaimed, text = prune_build_cache(cli, o.all, filters)
    total += reclaimed
    if text:
        cli.print(text)
    cli.print(f"Total reclaimed space: {fmt.human_size(total)}")
    return 0


INSPECTORS: dict[str, Callable[[Any, str], Any]] = {
    "container": lambda c, n: c.inspect_container(n),
    "image": lambda c, n: c.inspect_image(n),
    "volume": lambda c, n: c.inspect_volume(n),
    "network": lambda c, n: c.inspect_network(n),
}


def inspect_objects(cli: Cli, argv: list[str], kind: str | None, raw: bool = True) -> int:
    """inspect for one kind of object, or (kind None) the first kind that has the name.

    raw=False is `docker volume inspect`'s way: the answer is decoded into its Go
    struct and re-encoded, also for the plain and `json` forms, with no raw fallback."""
    prog = f"{kind} inspect" if kind else "inspect"
    p = parser(prog, usage=f"skiff {prog} [OPTIONS] NAME [NAME...]")
    p.add_argument("-f", "--format", default="")
    p.add_argument("-s", "--size", action="store_true")
    if kind is None:
        p.add_argument("--type", choices=list(INSPECTORS))
    p.add_argument("names", nargs="+")
    o = p.parse_args(argv)
    kinds = [kind] if kind else ([o.type] if o.type else list(INSPECTORS))
    template = o.format not in ("", "json")
    if template:
        from skiff.cli.gotemplate import Template

        try:
            Template(fmt.unescape(o.format))
        except fmt.TemplateError as e:
            raise StatusError(64, f"template parsing error: {e}") from None
    # as the docker CLI's inspector: every name in turn, errors collected in order
    found: list[tuple[str, Any]] = []
    lines: list[str] = []
    errors: list[str] = []
    for name in o.names:
        missing = ""
        for k in kinds:
            try:
                if k == "container" and o.size:
                    obj = cli.client.inspect_container(name, size=True)
                else:
                    obj = INSPECTORS[k](cli.client, name)
                break
            except NotFound as e:
                missing = e.message
                continue
        else:
            # `docker inspect` searches and names the object; `docker KIND inspect` passes
            # the daemon's own words on
            errors.append(f"Error: No such object: {name}" if len(kinds) > 1
                          else f"Error response from daemon: {missing}")  # fmt: skip
            continue
        found.append((k, obj))
        if template:
            try:
                lines.append(fmt.render_inspect(o.format, k, obj, fallback=raw))
            except fmt.TemplateError as e:
                errors.append(f"template parsing error: {e}")
    if template:
        # an inspector that printed nothing still ends its output with a newline
        cli.print("\n".join(lines))
    elif not raw:
        from skiff.cli.goshape import go_json, typed_root

        typed = [typed_root(k, obj) for k, obj in found]
        cli.print(go_json(typed, "    " if not o.format else "", escape_html=True))
    elif o.format == "json":
        # the docker CLI's JSON inspector: one compact array of the answers
        cli.print(json.dumps([obj for _, obj in found], separators=(",", ":"), ensure_ascii=False))
    else:
        cli.print(json.dumps([obj for _, obj in found], indent=4, ensure_ascii=False))
    if errors:
        raise StatusError(1, "\n".join(errors))
    return 0


def cmd_inspect(cli: Cli, argv: list[str]) -> int:
    return inspect_objects(cli, argv, None)


def cmd_dial_stdio(cli: Cli, argv: list[str]) -> int:
    """Proxy stdin/stdout to the daemon's socket (the far end of ssh:// hosts)."""
    import os
    import select

    from skiff.client.transport import connect

    stream = connect(cli.endpoint.host, cli.endpoint.tls)
    sock = stream.sock
    watch_in = True
    while True:
        rl = [sock] + ([0] if watch_in else [])
        ready, _, _ = select.select(rl, [], [])
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return 0
            os.write(1, data)
        if watch_in and 0 in ready:
            data = os.read(0, 65536)
            if not data:
                watch_in = False
                stream.close_write()
            else:
                sock.sendall(data)


VERBS: dict[str, Command] = {
    "version": cmd_version,
    "info": cmd_info,
    "events": cmd_events,
    "df": cmd_df,
    "prune": cmd_prune,
    "inspect": cmd_inspect,
    "dial-stdio": cmd_dial_stdio,
}


def run(cli: Cli, verb: str, argv: list[str]) -> int:
    cmd = VERBS.get(verb)
    if cmd is None:
        cli.print("Usage:  skiff system COMMAND\n\nCommands:\n  df\n  events\n  info\n  prune")
        return 0 if verb == "--help" else 1
    return cmd(cli, argv)
