"""skiffd's networking (engine -> network): drivers none, host and bridge, IPAM,
veths through netlink, nftables NAT in `table ip skiff`, the userland proxy and
the embedded DNS server. The engine uses `NetworkManager`; see docs/networking.md.
"""

from skiff.engine.network.errors import (
    AddressInUse,
    AddressOutsideSubnet,
    Forbidden,
    NetworkExists,
    NetworkInUse,
    NetworkNotFound,
    PoolOverlap,
    PortAllocated,
)
from skiff.engine.network.etcfiles import hostname_file
from skiff.engine.network.ipam import AddressPool, parse_pool
from skiff.engine.network.manager import NetworkManager, ReconcileReport
from skiff.engine.network.model import Endpoint, Network, PortBinding, mac_for_ip, parse_publish
from skiff.engine.network.netns import create_netns, remove_netns

__all__ = [
    "AddressInUse",
    "AddressOutsideSubnet",
    "AddressPool",
    "Endpoint",
    "Forbidden",
    "Network",
    "NetworkExists",
    "NetworkInUse",
    "NetworkManager",
    "NetworkNotFound",
    "PoolOverlap",
    "PortAllocated",
    "PortBinding",
    "ReconcileReport",
    "create_netns",
    "hostname_file",
    "mac_for_ip",
    "parse_pool",
    "parse_publish",
    "remove_netns",
]
