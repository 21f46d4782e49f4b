"""skiffd's packet filtering and NAT: one nftables table of its own, `ip skiff`.

The table is rendered whole from the network layer's state and replaced in a
single `nft -f` transaction, so applying it is also the way to remove stale
rules and to rebuild them after a daemon restart. No other table is touched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from skiff.errors import Internal

TABLE = "skiff"


@dataclass(frozen=True, slots=True)
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool
    masquerade: bool = True


@dataclass(frozen=True, slots=True)
class PortRule:
    proto: str
    host_ip: str  # "" for every local address
    host_port: int
    container_ip: str
    container_port: int
    bridge: str


def _q(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def render(
    bridges: Sequence[BridgeRules], ports: Sequence[PortRule], *, hairpin_proxy: bool
) -> str:
    """The `table ip skiff` ruleset for these bridges and published ports."""
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{"]
    lines += [
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    fib daddr type local jump published",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        # loopback is the userland proxy's, as in Docker; without a proxy the rules take it
        # too (with route_localnet on the bridges and the masquerade below, as dockerd)
        "    ip daddr != 127.0.0.0/8 fib daddr type local jump published"
        if hairpin_proxy
        else "    fib daddr type local jump published",
        "  }",
        "  chain published {",
    ]
    for p in ports:
        match = f"ip daddr {p.host_ip} " if p.host_ip and p.host_ip != "0.0.0.0" else ""
        # a container reaching its own bridge's published port goes through the
        # proxy (Docker's "! -i docker0"), so replies come back the same way
        not_own = f"iifname != {_q(p.bridge)} " if hairpin_proxy else ""
        lines.append(
            f"    {not_own}{match}{p.proto} dport {p.host_port} "
            f"dnat to {p.container_ip}:{p.container_port}"
        )
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for b in bridges:
        if b.masquerade and not b.internal:
            lines.append(f"    ip saddr {b.subnet} oifname != {_q(b.bridge)} masquerade")
        if not hairpin_proxy and ports:
            # a loopback source cannot be answered from a container: give it the bridge's
            lines.append(f"    ip saddr 127.0.0.0/8 oifname {_q(b.bridge)} masquerade")
    lines += [
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    names = [b.bridge for b in bridges]
    for b in bridges:
        if b.internal:
            lines.append(f"    iifname {_q(b.bridge)} oifname != {_q(b.bridge)} drop")
            lines.append(f"    oifname {_q(b.bridge)} iifname != {_q(b.bridge)} drop")
        others = [n for n in names if n != b.bridge]
        if others:
            # Docker's isolation: no traffic from one network's bridge to another's
            lines.append(
                f"    iifname {_q(b.bridge)} oifname {{ {', '.join(_q(o) for o in others)} }} drop"
            )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def apply(ruleset: str, nft: str = "nft") -> None:
    proc = subprocess.run([nft, "-f", "-"], input=ruleset, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Internal(f"nft: {proc.stderr.strip()}")


def remove(nft: str = "nft") -> None:
    """Drop the whole table (nothing else): for a daemon that is told to clean up."""
    apply(f"table ip {TABLE}\ndelete table ip {TABLE}\n", nft)


def list_table(nft: str = "nft") -> str:
    proc = subprocess.run([nft, "list", "table", "ip", TABLE], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""
