"""System endpoints: /_ping, /version, /info, /events, /system/df, /auth."""

from __future__ import annotations

import base64
import json
import os
import platform
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from skiff import __version__
from skiff.engine.daemon import Daemon
from skiff.engine.events import parse_filters
from skiff.engine.http.server import (
    API_VERSION,
    MIN_API_VERSION,
    HTTPError,
    Request,
    Response,
    Router,
    StreamResponse,
    json_response,
)
from skiff.errors import InvalidArgument

PING_HEADERS = {
    "Builder-Version": "1",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


def register(router: Router, daemon: Daemon) -> None:
    async def ping(request: Request) -> Response:
        return Response(200, b"OK", dict(PING_HEADERS), "text/plain; charset=utf-8")

    async def version(request: Request) -> Response:
        return json_response(version_info())

    async def info(request: Request) -> Response:
        return json_response(system_info(daemon))

    async def events(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        since = _timestamp(request.q("since"))
        until = _timestamp(request.q("until"))
        if since is not None and until is not None and until < since:
            raise InvalidArgument("`since` time cannot be after `until`")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in daemon.events.stream(since, until, filters):
                yield (json.dumps(message) + "\n").encode()

        return StreamResponse(chunks())

    async def df(request: Request) -> Response:
        usage: dict[str, Any] = {
            "LayersSize": 0,
            "Images": [],
            "Containers": [],
            "Volumes": [],
            "BuildCache": [],
        }
        for service in daemon.services.values():
            contribute = getattr(service, "disk_usage", None)
            if contribute is not None:
                usage.update(await contribute())
        return json_response(usage)

    async def auth(request: Request) -> Response:
        body = await request.json(required=True)
        if not isinstance(body, dict):
            raise InvalidArgument("auth config must be a JSON object")
        await check_login(body, daemon.config.insecure_registries)
        return json_response({"Status": "Login Succeeded", "IdentityToken": ""})

    router.add("GET", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/events", events)
    router.add("GET", "/system/df", df)
    router.add("POST", "/auth", auth)


def _timestamp(value: str | None) -> float | None:
    """Docker's since/until: unix seconds (with fraction) or RFC 3339."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid timestamp {value!r}")


def version_info() -> dict[str, Any]:
    uname = os.uname()
    details = {
        "ApiVersion": API_VERSION,
        "Arch": "amd64" if uname.machine == "x86_64" else uname.machine,
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": "skiff",
        "GoVersion": "python" + platform.python_version(),
        "KernelVersion": uname.release,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
    }
    return {
        "Platform": {"Name": "skiff"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "skiff",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": details["Arch"],
        "KernelVersion": uname.release,
        "BuildTime": "",
    }


def _meminfo() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _cgroup_version() -> str:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/sys/fs/cgroup":
                    return "2" if fields[fields.index("-") + 1] == "cgroup2" else "1"
    except (OSError, ValueError):
        pass
    return "1"


def system_info(daemon: Daemon) -> dict[str, Any]:
    config = daemon.config
    counts = daemon.counts()
    uname = os.uname()
    return {
        "ID": daemon.id,
        **counts,
        "Driver": "overlayfs",
        "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "none"],
            "Authorization": None,
            "Log": ["json-file"],
        },
        "MemoryLimit": True,
        "SwapLimit": os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": True,
        "Debug": config.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": True,
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "NEventsListener": len(daemon.events.subscribers),
        "KernelVersion": uname.release,
        "OperatingSystem": _os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": None,
            "AllowNondistributableArtifactsHostnames": None,
            "InsecureRegistryCIDRs": ["127.0.0.0/8"],
            "IndexConfigs": {
                "docker.io": {
                    "Name": "docker.io",
                    "Mirrors": config.registry_mirrors,
                    "Secure": True,
                    "Official": True,
                },
            },
            "Mirrors": config.registry_mirrors,
        },
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _meminfo(),
        "GenericResources": None,
        "DockerRootDir": config.data_root,
        "HttpProxy": os.environ.get("HTTP_PROXY", ""),
        "HttpsProxy": os.environ.get("HTTPS_PROXY", ""),
        "NoProxy": os.environ.get("NO_PROXY", ""),
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"runc": {"path": "skiff-runc"}},
        "DefaultRuntime": "runc",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "skiff-init",
        "ContainerdCommit": {"ID": "skiff", "Expected": "skiff"},
        "RuncCommit": {"ID": "skiff", "Expected": "skiff"},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
        "Warnings": [],
    }


async def check_login(body: dict[str, Any], insecure: list[str]) -> None:
    """Try the credentials against the registry's /v2/ endpoint, as dockerd does."""
    import asyncio
    import urllib.error
    import urllib.request

    server = str(body.get("serveraddress") or "https://index.docker.io/v1/")
    host = server.split("://", 1)[-1].split("/", 1)[0]
    local = host.startswith(("127.", "localhost")) or host in insecure
    user = str(body.get("username", ""))
    password = str(body.get("password", ""))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()

    def attempt(scheme: str) -> int:
        req = urllib.request.Request(
            f"{scheme}://{host}/v2/", headers={"Authorization": f"Basic {token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    schemes = ["https", "http"] if local else ["https"]
    last: Exception | None = None
    for scheme in schemes:
        try:
            status = await asyncio.to_thread(attempt, scheme)
        except OSError as e:
            last = e
            continue
        if status == 401:
            raise HTTPError(
                401, f"login attempt to {scheme}://{host}/v2/ failed with status: 401 Unauthorized"
            )
        if status >= 400:
            raise HTTPError(
                500, f"login attempt to {scheme}://{host}/v2/ failed with status: {status}"
            )
        return
    raise HTTPError(500, f'Get "https://{host}/v2/": {last}')
