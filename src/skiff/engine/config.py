"""skiffd's configuration: flags over daemon.json over defaults, as dockerd merges them."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import Any

from skiff.errors import InvalidArgument

DEFAULT_SOCKET = "unix:///run/skiff/skiff.sock"
DEFAULT_SUPERVISOR_SOCKET = "/run/skiff/containerd/containerd.sock"


@dataclass
class DaemonConfig:
    hosts: list[str] = field(default_factory=list)
    data_root: str = "/var/lib/skiff"
    exec_root: str = "/run/skiff"
    pidfile: str = "/run/skiff/skiffd.pid"
    log_level: str = "info"
    registry_mirrors: list[str] = field(default_factory=list)
    insecure_registries: list[str] = field(default_factory=list)
    containerd: str = ""
    containerd_namespace: str = "moby"
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    insecure_tcp: bool = False
    group: str = "skiff"
    bip: str = "172.30.0.1/16"
    default_address_pools: list[dict[str, Any]] = field(default_factory=list)
    #: the default bridge's interface; "none" disables the default bridge network
    bridge: str = "skiff0"
    userland_proxy: bool = True
    #: false: skiffd writes no nftables rules (no NAT, no isolation, proxy only)
    iptables: bool = True
    config_file: str = "/etc/skiff/daemon.json"

    @property
    def listen(self) -> list[str]:
        return self.hosts or [DEFAULT_SOCKET]


# daemon.json key -> attribute
_FILE_KEYS = {
    "hosts": "hosts",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "pidfile": "pidfile",
    "log-level": "log_level",
    "registry-mirrors": "registry_mirrors",
    "insecure-registries": "insecure_registries",
    "containerd": "containerd",
    "containerd-namespace": "containerd_namespace",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "group": "group",
    "bip": "bip",
    "default-address-pools": "default_address_pools",
    "bridge": "bridge",
    "userland-proxy": "userland_proxy",
    "iptables": "iptables",
    "debug": None,
    "live-restore": None,
}


def _bool_flag(text: str) -> bool:
    """Go's flag.BoolVar values: `--iptables=false`."""
    low = text.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skiffd", description="the skiff engine daemon")
    p.add_argument(
        "-H",
        "--host",
        action="append",
        dest="hosts",
        help="daemon socket(s): unix:///path, tcp://host:port, fd://",
    )
    p.add_argument("--data-root")
    p.add_argument("--exec-root")
    p.add_argument("-p", "--pidfile")
    p.add_argument("--config-file")
    p.add_argument("-l", "--log-level", choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("--registry-mirror", action="append", dest="registry_mirrors")
    p.add_argument("--insecure-registry", action="append", dest="insecure_registries")
    p.add_argument("--containerd")
    p.add_argument("--containerd-namespace")
    p.add_argument("--tls", action="store_true", default=None)
    p.add_argument("--tlsverify", action="store_true", default=None)
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument(
        "--insecure-tcp",
        action="store_true",
        help="allow a tcp:// listener without mutual TLS (dangerous)",
    )
    p.add_argument("-G", "--group")
    p.add_argument("-b", "--bridge", help='default bridge interface, "none" for no default bridge')
    p.add_argument("--bip")
    p.add_argument("--default-address-pool", action="append", dest="default_address_pools")
    p.add_argument(
        "--userland-proxy", type=_bool_flag, nargs="?", const=True, metavar="BOOL", default=None
    )
    p.add_argument(
        "--iptables", type=_bool_flag, nargs="?", const=True, metavar="BOOL", default=None
    )
    p.add_argument("--live-restore", action="store_true", help="always on in skiffd")
    p.add_argument("-v", "--version", action="store_true")
    return p


def load(argv: list[str] | None = None) -> tuple[DaemonConfig, argparse.Namespace]:
    args = parser().parse_args(argv)
    config = DaemonConfig()
    path = args.config_file or config.config_file
    if args.config_file or os.path.exists(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise InvalidArgument(
                f"unable to configure the daemon: open {path}: no such file or directory"
            )
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"unable to configure the daemon: {path}: invalid JSON: {e}")
        if not isinstance(data, dict):
            raise InvalidArgument(f"unable to configure the daemon: {path}: not a JSON object")
        unknown = sorted(k for k in data if k not in _FILE_KEYS)
        if unknown:
            raise InvalidArgument(
                "the following directives don't match any configuration "
                f"option: {', '.join(unknown)}"
            )
        for key, attr in _FILE_KEYS.items():
            if key in data and attr:
                setattr(config, attr, data[key])
        if data.get("debug"):
            config.log_level = "debug"
        config.config_file = path
    for attr in (
        "hosts",
        "data_root",
        "exec_root",
        "pidfile",
        "log_level",
        "containerd",
        "containerd_namespace",
        "tlscacert",
        "tlscert",
        "tlskey",
        "group",
        "bip",
        "bridge",
    ):
        value = getattr(args, attr, None)
        if value:
            setattr(config, attr, value)
    for attr in ("registry_mirrors", "insecure_registries"):
        value = getattr(args, attr)
        if value:
            setattr(config, attr, list(value))
    if args.default_address_pools:
        pools = []
        for spec in args.default_address_pools:
            fields = dict(item.split("=", 1) for item in spec.split(",") if "=" in item)
            pools.append({"base": fields.get("base", ""), "size": int(fields.get("size", 24))})
        config.default_address_pools = pools
    for attr in ("userland_proxy", "iptables"):
        if getattr(args, attr) is not None:
            setattr(config, attr, getattr(args, attr))
    if args.tls:
        config.tls = True
    if args.tlsverify:
        config.tlsverify = True
    if args.debug:
        config.log_level = "debug"
    config.insecure_tcp = bool(args.insecure_tcp)
    return config, args
