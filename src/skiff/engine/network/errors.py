"""Docker's networking errors, as members of the `skiff.errors` hierarchy.

The engine's network layer (skiffd -> network) raises these; the Engine API
edge turns them into Docker's status codes and message text unchanged.
"""

from __future__ import annotations

from skiff import errors


class Forbidden(errors.SkiffError):
    """Docker's ForbiddenError: the request is understood and refused (403)."""

    grpc_code = 7  # PERMISSION_DENIED
    http_status = 403


class NetworkNotFound(errors.NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")


class NetworkExists(errors.Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"network with name {name} already exists")


class PoolOverlap(Forbidden):
    def __init__(self) -> None:
        super().__init__("Pool overlaps with other one on this address space")


class NoAvailablePool(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "could not find an available, non-overlapping IPv4 address pool "
            "among the defaults to assign to the network"
        )


class GatewayOutsideSubnet(errors.InvalidArgument):
    def __init__(self, gateway: str) -> None:
        super().__init__(f"no matching subnet for gateway {gateway}")


class RangeOutsideSubnet(errors.InvalidArgument):
    def __init__(self, ip_range: str) -> None:
        super().__init__(f"no matching subnet for range {ip_range}")


class AddressOutsideSubnet(errors.InvalidArgument):
    def __init__(self, address: str) -> None:
        super().__init__(
            f"invalid address {address}: It does not belong to any of this network's subnets"
        )


class AddressInUse(Forbidden):
    def __init__(self) -> None:
        super().__init__("Address already in use")


class NoAvailableAddress(errors.Internal):
    def __init__(self, name: str, network_id: str) -> None:
        super().__init__(
            f"no available IPv4 addresses on this network's address pools: {name} ({network_id})"
        )


class StaticIPNotSupported(errors.InvalidArgument):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class NetworkInUse(Forbidden):
    def __init__(self, name: str, network_id: str) -> None:
        super().__init__(
            f"error while removing network: network {name} id {network_id} has active endpoints"
        )


class PredefinedNetwork(Forbidden):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is a pre-defined network and cannot be removed")


class PortAllocated(errors.SkiffError):
    """Docker answers 500 here: the driver failed to program connectivity."""

    http_status = 500
    grpc_code = 6  # ALREADY_EXISTS

    def __init__(self, endpoint: str, endpoint_id: str, host_ip: str, port: int) -> None:
        super().__init__(
            f"driver failed programming external connectivity on endpoint {endpoint} "
            f"({endpoint_id}): Bind for {host_ip}:{port} failed: port is already allocated"
        )


class ProxyBindFailed(errors.SkiffError):
    http_status = 500
    grpc_code = 13

    def __init__(
        self, endpoint: str, endpoint_id: str, proto: str, host_ip: str, port: int
    ) -> None:
        # Go's words: "listen tcp6 [::]:8181" for an IPv6 listener
        family, host = ("6", f"[{host_ip}]") if ":" in host_ip else ("4", host_ip)
        super().__init__(
            f"driver failed programming external connectivity on endpoint {endpoint} "
            f"({endpoint_id}): Error starting userland proxy: listen {proto}{family} "
            f"{host}:{port}: bind: address already in use"
        )


class AlreadyAttached(Forbidden):
    def __init__(self, container: str, network: str) -> None:
        super().__init__(f"endpoint with name {container} already exists in network {network}")


class NotAttached(errors.NotFound):
    def __init__(self, container: str, network: str) -> None:
        super().__init__(f"container {container} is not connected to network {network}")


class InvalidPortSpec(errors.InvalidArgument):
    def __init__(self, spec: str, why: str = "") -> None:
        super().__init__(f"invalid port specification: {spec!r}" + (f": {why}" if why else ""))
