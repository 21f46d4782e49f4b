"""The container service: Docker containers over containerd containers and tasks.

skiffd -> containers -> (containerd API) -> the supervisor -> a shim per
container. Each operation refreshes, checks the state transition, acts on the
supervisor, saves the record atomically and publishes the event. Exits come
from the supervisor's event stream (one subscription); restart policies,
auto-remove, waiters and healthchecks hang off the exit and start paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any

from skiff.engine.containers import rootfs as rootfs_mod
from skiff.engine.containers.image_ref import ContainerImage, resolve
from skiff.engine.containers.logs import JsonLog, rfc3339
from skiff.engine.containers.model import (
    Container,
    Status,
    check_name,
    new_state,
    random_name,
)
from skiff.engine.containers.spec import (
    DEFAULT_PATH,
    RLIMITS,
    build_spec,
    capabilities,
    parse_signal,
    resources,
    seccomp_from_profile,
)
from skiff.engine.containers.stdio import ProcessStdio
from skiff.engine.containers.supervisor_api import Exit, SupervisorAPI
from skiff.engine.network.errors import AddressOutsideSubnet, Forbidden
from skiff.engine.network.model import PortBinding
from skiff.engine.network.service import NetworkService
from skiff.errors import Conflict, InvalidArgument, NotFound, SkiffError, Unavailable

log = logging.getLogger("skiffd.containers")

RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")
INIT_CANDIDATES = ("/usr/bin/docker-init", "/usr/libexec/docker/docker-init", "/usr/bin/tini")


def no_such_container(ref: str) -> NotFound:
    return NotFound(f"No such container: {ref}")


class ContainerService:
    def __init__(self, daemon: Any):
        self.daemon = daemon
        self.events = daemon.events
        self.root = os.path.join(daemon.config.data_root, "containers")
        self.fifo_root = os.path.join(daemon.config.exec_root, "containerd")
        self.namespace = daemon.config.containerd_namespace
        self.api: SupervisorAPI | None = None
        self.containers: dict[str, Container] = {}
        self.names: dict[str, str] = {}  # "/name" -> id
        self.stdio: dict[str, ProcessStdio] = {}
        self.logs: dict[str, JsonLog] = {}
        self.exit_waiters: dict[str, list[asyncio.Future[int]]] = {}
        self.remove_waiters: dict[str, list[asyncio.Future[int]]] = {}
        self.exec_exit_hooks: dict[tuple[str, str], Callable[[Exit], None]] = {}
        # attached clients, kept across a start so `docker run` can attach before it
        self.attachers: dict[str, list[Callable[[str, bytes], None]]] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.restart_tasks: dict[str, asyncio.Task[None]] = {}
        self.health_tasks: dict[str, asyncio.Task[None]] = {}
        self.restart_delay: dict[str, float] = {}
        self._events_task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._handling_exit: set[str] = set()
        # containers known to have no task in the supervisor (deleted by us, or never made),
        # which saves a start or a remove the round trip that would only confirm it
        self._no_task: set[str] = set()
        # set once every container has been found again: the API answers after that
        self.restored = asyncio.Event()
        os.makedirs(self.root, 0o700, exist_ok=True)

    # -- wiring -------------------------------------------------------------

    @property
    def volumes(self) -> Any:
        return self.daemon.services.get("volumes")

    def sup(self) -> SupervisorAPI:
        if self.api is None:
            raise SkiffError("the supervisor is not connected yet")
        return self.api

    async def start(self) -> None:
        self.api = SupervisorAPI(self.daemon.supervisor.address, self.namespace)
        self._events_task = asyncio.get_running_loop().create_task(self._watch_exits())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)
        log.debug("subscribed to exits; restoring containers")
        try:
            await self.restore()
        finally:
            self.restored.set()
        log.debug("restored %d containers", len(self.containers))

    async def stop(self) -> None:
        for task in [*self.restart_tasks.values(), *self.health_tasks.values()]:
            task.cancel()
        if self._events_task is not None:
            self._events_task.cancel()
        for _cid, io in list(self.stdio.items()):
            io.close()
        for lg in self.logs.values():
            lg.close()
        if self.api is not None:
            await self.api.close()

    def lock(self, cid: str) -> asyncio.Lock:
        return self.locks.setdefault(cid, asyncio.Lock())

    # -- lookup -------------------------------------------------------------

    def get(self, ref: str) -> Container:
        if not ref:
            raise no_such_container(ref)
        c = self.containers.get(ref)
        if c is not None:
            return c
        cid = self.names.get("/" + ref.lstrip("/"))
        if cid is not None:
            return self.containers[cid]
        found = [c for i, c in self.containers.items() if i.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise no_such_container(ref)

    def counts(self) -> dict[str, int]:
        running = sum(1 for c in self.containers.values() if c.status == Status.RUNNING)
        paused = sum(1 for c in self.containers.values() if c.status == Status.PAUSED)
        return {
            "Containers": len(self.containers),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": len(self.containers) - running - paused,
        }

    async def disk_usage(self) -> dict[str, Any]:
        from skiff.engine.containers.views import list_entry

        out = []
        for c in self.containers.values():
            entry = list_entry(c)
            entry["SizeRw"] = rootfs_mod.upper_size(self.rootfs_upper(c))
            entry["SizeRootFs"] = entry["SizeRw"]
            out.append(entry)
        return {"Containers": out}

    def image_users(self, image_id: str) -> list[tuple[str, bool]]:
        """(container id, running) of every container made from the image."""
        return [
            (c.id, c.running) for c in self.containers.values() if c.data.get("Image") == image_id
        ]

    def rootfs_upper(self, c: Container) -> str:
        return str(c.data.get("SkiffUpperDir", ""))

    # -- create -------------------------------------------------------------

    async def create(
        self, name: str | None, config: dict[str, Any], host: dict[str, Any], networking: Any
    ) -> tuple[Container, list[str]]:
        warnings: list[str] = []
        if not isinstance(config, dict) or not isinstance(host, dict):
            raise InvalidArgument("config and HostConfig must be JSON objects")
        image_ref = config.get("Image") or ""
        if not isinstance(image_ref, str) or not image_ref:
            raise InvalidArgument("no image specified")
        if name:
            full = check_name(name)
            if full in self.names:
                raise Conflict(
                    f'Conflict. The container name "{full}" is already in use by container '
                    f'"{self.names[full]}". You have to remove (or rename) that container to '
                    "be able to reuse that name."
                )
        else:
            full = random_name(set(self.names))
        validate_types(config, host)
        warnings += validate_host_config(host)
        host = dict(host)
        if config.get("NetworkDisabled"):
            host["NetworkMode"] = "none"
        endpoints = await self._plan_networks(host, networking)
        if host["NetworkMode"] == "host" and host.get("PortBindings"):
            warnings.append("Published ports are discarded when using host network mode")
        image = await resolve(self.sup(), self.daemon.services, image_ref)
        cid = secrets.token_hex(32)
        while cid in self.containers or cid[:12].isdigit():
            cid = secrets.token_hex(32)
        directory = os.path.join(self.root, cid)
        os.makedirs(directory, 0o700)
        self.names[full] = cid  # claimed now: a concurrent create must see the conflict
        try:
            c = self._new_record(cid, full, image, config, host, directory)
            c.data["NetworkSettings"]["Networks"] = endpoints
            mounts = await self._prepare_volumes(c, image)
            c.data["Mounts"] = mounts
            # the container record first: it is what keeps the snapshot from the
            # supervisor's garbage collector
            await self.sup().create_container(
                cid, image.name, {"ociVersion": "1.0.2"}, {"com.docker/engine.bundle.path": ""}
            )
            upper = rootfs_mod.upper_dir(await self.sup().prepare_snapshot(cid, image.chain_id))
            c.data["SkiffUpperDir"] = upper
            c.data["GraphDriver"]["Data"] = {"UpperDir": upper}
            await self._fill_volumes(c)
            self._write_etc(c)
            c.save()
        except BaseException:
            self.names.pop(full, None)
            with contextlib.suppress(Exception):
                await self.sup().remove_snapshot(cid)
            with contextlib.suppress(Exception):
                await self.sup().delete_container(cid)
            self._release_volumes(cid)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self.containers[cid] = c
        self._no_task.add(cid)
        self.events.emit("container", "create", cid, self.attrs(c))
        return c, warnings

    def _new_record(
        self,
        cid: str,
        name: str,
        image: ContainerImage,
        config: dict[str, Any],
        host: dict[str, Any],
        directory: str,
    ) -> Container:
        img = image.config
        cfg = dict(config)
        cfg["Image"] = config.get("Image")
        env = list(img.get("Env") or [])
        keys = {e.split("=", 1)[0] for e in (cfg.get("Env") or [])}
        env = [e for e in env if e.split("=", 1)[0] not in keys] + list(cfg.get("Env") or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        cfg["Env"] = env
        if cfg.get("Entrypoint") is None:
            cfg["Entrypoint"] = img.get("Entrypoint")
            if not cfg.get("Cmd"):
                cfg["Cmd"] = img.get("Cmd")
        elif cfg.get("Entrypoint") == [""] or cfg.get("Entrypoint") == "":
            cfg["Entrypoint"] = None
        if isinstance(cfg.get("Entrypoint"), str):
            cfg["Entrypoint"] = [cfg["Entrypoint"]]
        if isinstance(cfg.get("Cmd"), str):
            cfg["Cmd"] = [cfg["Cmd"]]
        cfg["WorkingDir"] = cfg.get("WorkingDir") or img.get("WorkingDir") or ""
        cfg["User"] = cfg.get("User") or img.get("User") or ""
        labels = dict(img.get("Labels") or {})
        labels.update(cfg.get("Labels") or {})
        cfg["Labels"] = labels
        if not cfg.get("StopSignal") and img.get("StopSignal"):
            cfg["StopSignal"] = img["StopSignal"]
        if cfg.get("StopSignal"):
            parse_signal(cfg["StopSignal"])
        if not cfg.get("Healthcheck") and img.get("Healthcheck"):
            cfg["Healthcheck"] = img["Healthcheck"]
        if img.get("ExposedPorts") or cfg.get("ExposedPorts"):
            ports = dict(img.get("ExposedPorts") or {})
            ports.update(cfg.get("ExposedPorts") or {})
            cfg["ExposedPorts"] = ports
        if not cfg.get("Hostname"):
            cfg["Hostname"] = cid[:12]
        for key, default in (
            ("Domainname", ""),
            ("AttachStdin", False),
            ("AttachStdout", False),
            ("AttachStderr", False),
            ("Tty", False),
            ("OpenStdin", False),
            ("StdinOnce", False),
            ("Volumes", None),
            ("OnBuild", None),
        ):
            cfg.setdefault(key, default)
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        if not args:
            raise InvalidArgument("no command specified")
        hostcfg = dict(host)
        hostcfg.setdefault(
            "NetworkMode", "default" if not host.get("NetworkMode") else host["NetworkMode"]
        )
        hostcfg.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        hostcfg.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        if not hostcfg["LogConfig"].get("Type"):
            hostcfg["LogConfig"]["Type"] = "json-file"
        if hostcfg["LogConfig"]["Type"] not in ("json-file", "none"):
            raise InvalidArgument(
                f"logger: no log driver named '{hostcfg['LogConfig']['Type']}' is registered"
            )
        hostcfg["LogConfig"].setdefault("Config", {})
        if hostcfg["LogConfig"]["Config"] is None:
            hostcfg["LogConfig"]["Config"] = {}
        hostcfg.setdefault("ShmSize", 64 << 20)
        if not hostcfg.get("ShmSize"):
            hostcfg["ShmSize"] = 64 << 20
        data: dict[str, Any] = {
            "ID": cid,
            "Created": rfc3339(time.time()),
            "Path": args[0],
            "Args": args[1:],
            "State": new_state(),
            "Image": image.id,
            "ImageName": image.name,
            "ResolvConfPath": os.path.join(directory, "resolv.conf"),
            "HostnamePath": os.path.join(directory, "hostname"),
            "HostsPath": os.path.join(directory, "hosts"),
            "LogPath": os.path.join(directory, f"{cid}-json.log"),
            "Name": name,
            "RestartCount": 0,
            "Driver": "overlayfs",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": None,
            "GraphDriver": {"Name": "overlayfs", "Data": {}},
            "Mounts": [],
            "Config": cfg,
            "NetworkSettings": network_settings(hostcfg),
        }
        return Container(data, hostcfg, directory)

    # -- volumes and mounts -------------------------------------------------

    async def _prepare_volumes(self, c: Container, image: ContainerImage) -> list[dict[str, Any]]:
        """Docker's MountPoints from Binds, Mounts, Tmpfs and the image's VOLUMEs."""
        host = c.host
        points: list[dict[str, Any]] = []
        seen: set[str] = set()

        def add(point: dict[str, Any]) -> None:
            dest = point["Destination"]
            if not dest.startswith("/"):
                raise InvalidArgument(f"invalid mount config: mount path must be absolute: {dest}")
            dest = os.path.normpath(dest)
            point["Destination"] = dest
            if dest in seen:
                raise InvalidArgument(f"Duplicate mount point: {dest}")
            seen.add(dest)
            points.append(point)

        for bind in host.get("Binds") or []:
            parts = bind.split(":")
            if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
                raise InvalidArgument(f"invalid volume specification: '{bind}'")
            src, dst = parts[0], parts[1]
            opts = parts[2].split(",") if len(parts) == 3 else []
            rw = "ro" not in opts
            if src.startswith("/"):
                if not os.path.exists(src):
                    os.makedirs(src, 0o755, exist_ok=True)  # Docker creates missing bind sources
                add(
                    {
                        "Type": "bind",
                        "Source": src,
                        "Destination": dst,
                        "Mode": ",".join(opts),
                        "RW": rw,
                        "Propagation": "rprivate",
                    }
                )
            else:
                vol = self.volumes.create(src)
                add(
                    {
                        "Type": "volume",
                        "Name": vol.name,
                        "Source": vol.mountpoint,
                        "Destination": dst,
                        "Driver": "local",
                        "Mode": ",".join(opts) or "z",
                        "RW": rw,
                        "Propagation": "",
                    }
                )
        for m in host.get("Mounts") or []:
            if not isinstance(m, dict):
                raise InvalidArgument("invalid mount config")
            kind = m.get("Type", "")
            target = m.get("Target") or ""
            if not target:
                raise InvalidArgument("invalid mount config: Target must not be empty")
            ro = bool(m.get("ReadOnly"))
            if kind == "bind":
                src = m.get("Source") or ""
                if not src.startswith("/"):
                    raise InvalidArgument(
                        f"invalid mount config for type \"bind\": invalid mount path: '{src}' mount path must be absolute"
                    )
                if not os.path.exists(src):
                    raise InvalidArgument(
                        f'invalid mount config for type "bind": bind source path does not exist: {src}'
                    )
                add(
                    {
                        "Type": "bind",
                        "Source": src,
                        "Destination": target,
                        "Mode": "",
                        "RW": not ro,
                        "Propagation": (m.get("BindOptions") or {}).get("Propagation")
                        or "rprivate",
                    }
                )
            elif kind == "volume":
                vopts = m.get("VolumeOptions") or {}
                vol = self.volumes.create(m.get("Source") or "", labels=vopts.get("Labels"))
                add(
                    {
                        "Type": "volume",
                        "Name": vol.name,
                        "Source": vol.mountpoint,
                        "Destination": target,
                        "Driver": "local",
                        "Mode": "z",
                        "RW": not ro,
                        "Propagation": "",
                        "NoCopy": bool(vopts.get("NoCopy")),
                    }
                )
            elif kind == "tmpfs":
                topts = m.get("TmpfsOptions") or {}
                opts = []
                if topts.get("SizeBytes"):
                    opts.append(f"size={int(topts['SizeBytes'])}")
                if topts.get("Mode"):
                    opts.append(f"mode={int(topts['Mode']):o}")
                add(
                    {
                        "Type": "tmpfs",
                        "Source": "",
                        "Destination": target,
                        "Mode": ",".join(opts),
                        "RW": not ro,
                        "Propagation": "",
                    }
                )
            else:
                raise InvalidArgument(f"invalid mount config: mount type unknown: {kind!r}")
        for dest, opts in (host.get("Tmpfs") or {}).items():
            add(
                {
                    "Type": "tmpfs",
                    "Source": "",
                    "Destination": dest,
                    "Mode": opts or "",
                    "RW": "ro" not in (opts or "").split(","),
                    "Propagation": "",
                }
            )
        image_vols = dict(image.config.get("Volumes") or {})
        image_vols.update(c.config.get("Volumes") or {})
        for dest in image_vols:
            if os.path.normpath(dest) in seen:
                continue
            vol = self.volumes.create("", anonymous=True)
            add(
                {
                    "Type": "volume",
                    "Name": vol.name,
                    "Source": vol.mountpoint,
                    "Destination": dest,
                    "Driver": "local",
                    "Mode": "",
                    "RW": True,
                    "Propagation": "",
                    "Anonymous": True,
                }
            )
        for p in points:
            if p["Type"] == "volume":
                self.volumes.users.setdefault(p["Name"], set()).add(c.id)
        return points

    async def _fill_volumes(self, c: Container) -> None:
        """Copy the image's content at each volume's path into a fresh volume."""
        todo = []
        for p in c.data["Mounts"]:
            if p["Type"] != "volume" or p.get("NoCopy"):
                continue
            vol = self.volumes.get(p["Name"])
            if self.volumes.take_fresh(vol):
                todo.append((p["Destination"], vol.mountpoint))
        if not todo:
            return
        mounts = await self.sup().snapshot_mounts(c.id)
        await asyncio.to_thread(rootfs_mod.copy_up, mounts, c.dir, todo)

    def _release_volumes(self, cid: str) -> None:
        if self.volumes is None:
            return
        for users in self.volumes.users.values():
            users.discard(cid)

    def _write_etc(self, c: Container) -> None:
        cfg, host = c.config, c.host
        hostname = cfg.get("Hostname") or c.id[:12]
        with open(os.path.join(c.dir, "hostname"), "w") as f:
            f.write(hostname + "\n")
        net_host = host.get("NetworkMode") == "host"
        if net_host:
            try:
                with open("/etc/hosts") as f:
                    hosts = f.read()
            except OSError:
                hosts = "127.0.0.1\tlocalhost\n"
        else:
            hosts = (
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
                "ff02::2\tip6-allrouters\n"
            )
        for entry in host.get("ExtraHosts") or []:
            name, sep, addr = entry.partition(":")
            if not sep:
                name, sep, addr = entry.partition("=")
            if sep:
                if addr == "host-gateway":
                    addr = "127.0.0.1"
                hosts += f"{addr}\t{name}\n"
        with open(os.path.join(c.dir, "hosts"), "w") as f:
            f.write(hosts)
        dns = host.get("Dns") or []
        if dns or host.get("DnsSearch") or host.get("DnsOptions"):
            lines = [f"nameserver {d}" for d in dns]
            if host.get("DnsSearch"):
                lines.append("search " + " ".join(host["DnsSearch"]))
            if host.get("DnsOptions"):
                lines.append("options " + " ".join(host["DnsOptions"]))
            resolv = "\n".join(lines) + "\n"
        else:
            try:
                with open("/etc/resolv.conf") as f:
                    resolv = f.read()
            except OSError:
                resolv = ""
            if not net_host:
                # a loopback resolver on the host is unreachable from a private netns
                kept = [ln for ln in resolv.splitlines() if not ln.startswith("nameserver 127.")]
                resolv = "\n".join(kept) + "\n"
        with open(os.path.join(c.dir, "resolv.conf"), "w") as f:
            f.write(resolv)

    def _oci_mounts(self, c: Container) -> list[dict[str, Any]]:
        out = []
        for p in c.data.get("Mounts") or []:
            if p["Type"] == "tmpfs":
                opts = ["nosuid", "nodev", "noexec"] + [
                    o for o in (p.get("Mode") or "").split(",") if o
                ]
                if not p.get("RW", True) and "ro" not in opts:
                    opts.append("ro")
                out.append(
                    {
                        "destination": p["Destination"],
                        "type": "tmpfs",
                        "source": "tmpfs",
                        "options": opts,
                    }
                )
            else:
                opts = ["rbind", p.get("Propagation") or "rprivate"]
                if not p.get("RW", True):
                    opts.append("ro")
                out.append(
                    {
                        "destination": p["Destination"],
                        "type": "bind",
                        "source": p["Source"],
                        "options": opts,
                    }
                )
        return out

    # -- networks -----------------------------------------------------------

    @property
    def networks(self) -> NetworkService | None:
        svc = self.daemon.services.get("networks")
        return svc if isinstance(svc, NetworkService) else None

    def _net(self) -> NetworkService:
        svc = self.networks
        if svc is None:
            raise NotFound("networking is not available")
        if svc.error is not None:
            raise SkiffError(f"networking failed to start: {svc.error}")
        return svc

    async def _usable_networks(self) -> tuple[NetworkService | None, str]:
        """The network service once started, or None and why (none/host work without it)."""
        svc = self.networks
        if svc is None:
            return None, "networking is not available"
        if not svc.started.is_set():
            await asyncio.wait_for(svc.started.wait(), 120)
        if svc.error is not None:
            return None, f"networking failed to start: {svc.error}"
        return svc, ""

    async def _plan_networks(self, host: dict[str, Any], networking: Any) -> dict[str, Any]:
        """Check NetworkMode and NetworkingConfig at create; the networks to attach at start.

        host["NetworkMode"] is resolved as Docker does ("default" is the default
        bridge, or none when the daemon runs with --bridge=none); the result is
        NetworkSettings.Networks, the primary network first.
        """
        mode = str(host.get("NetworkMode") or "default")
        given = mode
        svc, why = await self._usable_networks()
        if mode == "default":
            mode = "bridge" if svc is not None and svc.has_default_bridge else "none"
        host["NetworkMode"] = mode
        wanted: dict[str, Any] = {}
        if networking is not None:
            if not isinstance(networking, dict):
                raise InvalidArgument("invalid NetworkingConfig")
            wanted = networking.get("EndpointsConfig") or {}
            if not isinstance(wanted, dict):
                raise InvalidArgument("invalid NetworkingConfig.EndpointsConfig")
        if mode.startswith("container:"):
            self.get(mode.split(":", 1)[1])
            if wanted:
                raise InvalidArgument(
                    "conflicting options: container type network can't be used with other networks"
                )
            if host.get("PortBindings") or host.get("PublishAllPorts"):
                raise InvalidArgument(
                    "conflicting options: port publishing and the container type network mode"
                )
            return {}
        if svc is None:
            # networking failed to start: only the modes that need none of it
            if mode not in ("none", "host"):
                raise SkiffError(why)
            return {mode: endpoint_entry(mode, {})}
        m = svc.manager

        async def find(ref: str) -> Any:
            # a network that does not exist (yet) fails the start, not the create, as in
            # dockerd: the docker CLI takes a 404 on create for a missing image and pulls
            try:
                return await svc.call(m.get_network, ref)
            except NotFound:
                return None

        primary = await find(mode)
        out: dict[str, Any] = {}
        # the primary network first, with its EndpointsConfig entry if any
        first_cfg: dict[str, Any] = {}
        rest = []
        for name, cfg in wanted.items():
            if name in (given, "default", mode):
                # the CLI keys the primary network's settings by the mode it sent
                first_cfg = cfg or {}
                continue
            net = await find(name)
            if net is not None and primary is not None and net.id == primary.id:
                first_cfg = cfg or {}
            else:
                rest.append((name, net, cfg or {}))
        if primary is not None and primary.driver != "bridge" and rest:
            raise InvalidArgument(
                f"container cannot be connected to multiple networks with one of the "
                f"networks in {'private (none)' if primary.driver == 'null' else 'host'} mode"
            )
        for name, net, cfg in [(mode, primary, first_cfg), *rest]:
            if net is None:
                out[name] = endpoint_entry("", cfg)
                continue
            self._check_endpoint_config(net, cfg)
            out[net.name] = endpoint_entry(net.id, cfg)
        return out

    async def _wait_networks(self, svc: NetworkService) -> None:
        if not svc.started.is_set():
            await asyncio.wait_for(svc.started.wait(), 120)
        if svc.error is not None:
            raise SkiffError(f"networking failed to start: {svc.error}")

    @staticmethod
    def _check_endpoint_config(net: Any, cfg: dict[str, Any]) -> None:
        if not isinstance(cfg, dict):
            raise InvalidArgument("invalid EndpointSettings")
        user_net = net.driver == "bridge" and not net.default_bridge
        aliases = cfg.get("Aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InvalidArgument("invalid Aliases: must be a list of strings")
        if aliases and not user_net:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        ipv4 = ((cfg.get("IPAMConfig") or {}).get("IPv4Address")) or ""
        if not ipv4:
            return
        if not user_net:
            raise InvalidArgument(
                "user specified IP address is supported on user defined networks only"
            )
        if not net.user_subnet:
            raise InvalidArgument(
                "user specified IP address is supported only when connecting to networks "
                "with user configured subnets"
            )
        try:
            addr = ipaddress.IPv4Address(ipv4)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {ipv4}")
        if not any(addr in c.network() for c in net.ipam):
            raise AddressOutsideSubnet(ipv4)

    def _port_bindings(self, c: Container) -> list[PortBinding]:
        """HostConfig.PortBindings (and, with -P, every exposed port) as the library's."""
        out: list[PortBinding] = []
        bound = c.host.get("PortBindings") or {}
        for key, bindings in bound.items():
            number, _, proto = str(key).partition("/")
            lo, _, hi = number.partition("-")
            for cport in range(int(lo), int(hi or lo) + 1):
                for b in bindings or [{}]:
                    # "" is both families; an explicit 0.0.0.0 or :: only its own (as dockerd)
                    host_ip = str((b or {}).get("HostIp") or "").strip("[]")
                    text = str((b or {}).get("HostPort") or "")
                    hp_lo, _, hp_hi = text.partition("-")
                    out.append(
                        PortBinding(
                            container_port=cport,
                            proto=proto or "tcp",
                            host_ip=host_ip,
                            host_port=int(hp_lo) if hp_lo else 0,
                            host_port_end=int(hp_hi) if hp_hi else 0,
                        )
                    )
        if c.host.get("PublishAllPorts"):
            for key in c.config.get("ExposedPorts") or {}:
                if key in bound:
                    continue
                number, _, proto = str(key).partition("/")
                out.append(PortBinding(container_port=int(number), proto=proto or "tcp"))
        return out

    def _extra_hosts(self, c: Container, gateway: str) -> list[tuple[str, str]]:
        out = []
        for entry in c.host.get("ExtraHosts") or []:
            name, sep, addr = entry.partition(":")
            if not sep:
                name, sep, addr = entry.partition("=")
            if sep:
                out.append((name, (gateway or "127.0.0.1") if addr == "host-gateway" else addr))
        return out

    async def _attach_networks(self, c: Container, pid: int) -> None:
        """Connect the started-but-not-running task's namespace to its networks, publish
        its ports, write its /etc files; all of it undone if any of it fails."""
        mode = str(c.host.get("NetworkMode") or "")
        if mode.startswith("container:"):
            # the namespace's owner's view of names (its hosts, its resolver: 127.0.0.11
            # on a user network is served in that very namespace), as dockerd shares them
            with contextlib.suppress(SkiffError, OSError):
                other = self.get(mode.split(":", 1)[1])
                for name in ("hosts", "resolv.conf"):
                    with open(os.path.join(other.dir, name)) as f:
                        _rewrite(os.path.join(c.dir, name), f.read())
            return
        wanted = list(((c.data.get("NetworkSettings") or {}).get("Networks") or {}).items())
        if not wanted:
            return
        svc, why = await self._usable_networks()
        if svc is None:
            if mode in ("none", "host"):
                return  # the runtime's namespace (or the host's) as it is
            raise SkiffError(why)
        m = svc.manager
        path = "" if mode == "host" else f"/proc/{pid}/ns/net"
        bridged = mode not in ("host", "none")
        ports = self._port_bindings(c) if bridged else []
        cfg = c.config

        def work() -> tuple[dict[str, Any], str, str]:
            try:
                for i, (name, entry) in enumerate(wanted):
                    ref = entry.get("NetworkID") or name
                    try:
                        m.get_network(ref)
                    except NotFound:
                        ref = name
                    m.attach(
                        c.id,
                        ref,
                        path,
                        name=c.name,
                        ip=((entry.get("IPAMConfig") or {}).get("IPv4Address")) or "",
                        aliases=list(entry.get("Aliases") or []),
                        ports=ports if i == 0 else (),
                        dns_servers=c.host.get("Dns") or [],
                    )
                settings = m.network_settings(c.id)
                hosts = resolv = ""
                if bridged:
                    gateway = str(settings.get("Gateway") or "")
                    if not gateway:
                        gateway = next(
                            (n["Gateway"] for n in settings["Networks"].values() if n["Gateway"]),
                            "",
                        )
                    hosts = m.hosts_file(
                        c.id,
                        cfg.get("Hostname") or c.id[:12],
                        domainname=cfg.get("Domainname") or "",
                        extra_hosts=self._extra_hosts(c, gateway),
                    )
                    resolv = m.resolv_conf(
                        c.id,
                        dns_servers=c.host.get("Dns") or [],
                        dns_search=c.host.get("DnsSearch") or [],
                        dns_options=c.host.get("DnsOptions") or [],
                    )
                return settings, hosts, resolv
            except BaseException:
                m.release_container(c.id)
                raise

        settings, hosts, resolv = await svc.call(work)
        self._network_events(c, "connect", settings)
        if hosts:
            # in place: the files are bind-mounted into the container already
            _rewrite(os.path.join(c.dir, "hosts"), hosts)
            _rewrite(os.path.join(c.dir, "resolv.conf"), resolv)
        self._set_network_settings(c, settings, f"/proc/{pid}/ns/net" if path else "")

    def _set_network_settings(
        self, c: Container, settings: dict[str, Any] | None, sandbox: str = ""
    ) -> None:
        """NetworkSettings from the library's view (None: the container is stopped)."""
        ns = c.data.setdefault("NetworkSettings", network_settings(c.host))
        nets = ns.get("Networks") or {}
        live = (settings or {}).get("Networks") or {}
        for name, entry in list(nets.items()):
            if name in live:
                fresh = dict(live[name])
                fresh["IPAMConfig"] = entry.get("IPAMConfig") or fresh.get("IPAMConfig")
                fresh["Aliases"] = (
                    entry.get("Aliases") if entry.get("Aliases") else fresh.get("Aliases")
                )
                nets[name] = fresh
            else:
                nets[name] = {**entry, **_ENDPOINT_RUNTIME}
        for name, entry in live.items():
            nets.setdefault(name, entry)
        ns["Networks"] = nets
        for key in ("EndpointID", "Gateway", "IPAddress", "MacAddress"):
            ns[key] = (settings or {}).get(key, "")
        ns["IPPrefixLen"] = (settings or {}).get("IPPrefixLen", 0)
        ns["SandboxKey"] = sandbox
        ns["SandboxID"] = hashlib.sha256(sandbox.encode()).hexdigest() if sandbox else ""
        ns["Bridge"] = ""
        ports: dict[str, Any] = {}
        if settings is not None:
            for key in c.config.get("ExposedPorts") or {}:
                ports[key if "/" in key else f"{key}/tcp"] = None
            ports.update(settings.get("Ports") or {})
        ns["Ports"] = dict(sorted(ports.items()))  # a Go map: keys in sorted order

    async def _restore_networks(self, c: Container, pid: int) -> None:
        """A container still running after a restart: its endpoints as the library kept them."""
        svc = self.networks
        if svc is None or svc.error is not None:
            return
        mode = str(c.host.get("NetworkMode") or "")
        if mode.startswith("container:"):
            return
        await self._wait_networks(svc)
        settings = await svc.call(svc.manager.network_settings, c.id)
        if settings.get("Networks"):
            sandbox = "" if mode == "host" else f"/proc/{pid}/ns/net"
            self._set_network_settings(c, settings, sandbox)

    async def _release_networks(self, c: Container) -> None:
        svc = self.networks
        if svc is None or svc.error is not None:
            return
        await self._wait_networks(svc)
        try:
            settings = await svc.call(svc.manager.network_settings, c.id)
            await svc.call(svc.manager.release_container, c.id)
        except SkiffError as e:
            log.warning("releasing the networks of %s: %s", c.id[:12], e)
        else:
            self._network_events(c, "disconnect", settings)
        self._set_network_settings(c, None)

    def _network_events(self, c: Container, action: str, settings: dict[str, Any]) -> None:
        """dockerd's `network connect`/`disconnect` events, one per network, at start and exit."""
        for name, entry in (settings.get("Networks") or {}).items():
            self.events.emit(
                "network",
                action,
                entry.get("NetworkID") or "",
                {
                    "container": c.id,
                    "name": name,
                    "type": {"none": "null", "host": "host"}.get(name, "bridge"),
                },
            )

    async def connect_network(self, network: str, ref: str, config: dict[str, Any]) -> None:
        """docker network connect: live when the container runs, else at its next start."""
        svc = self._net()
        m = svc.manager
        net = await svc.call(m.get_network, network)
        c = self.get(ref)
        mode = str(c.host.get("NetworkMode") or "")
        if mode == "host" or mode.startswith("container:") or net.driver == "host":
            raise Forbidden(
                "container sharing network namespace with another container or host cannot "
                "be connected to any other network"
            )
        if mode == "none" or net.driver == "null":
            raise Forbidden(
                "container cannot be connected to multiple networks with one of the networks "
                "in private (none) mode"
            )
        self._check_endpoint_config(net, config)
        async with self.lock(c.id):
            nets = c.data["NetworkSettings"].setdefault("Networks", {})
            if net.name in nets:
                raise Forbidden(
                    f"endpoint with name {c.name.lstrip('/')} already exists in network {net.name}"
                )
            entry = endpoint_entry(net.id, config)
            if c.running:
                pid = int(c.state.get("Pid") or 0)

                def work() -> tuple[dict[str, Any], str]:
                    m.attach(
                        c.id,
                        net.id,
                        f"/proc/{pid}/ns/net",
                        name=c.name,
                        ip=((config.get("IPAMConfig") or {}).get("IPv4Address")) or "",
                        aliases=list(config.get("Aliases") or []),
                        dns_servers=c.host.get("Dns") or [],
                    )
                    hosts = m.hosts_file(
                        c.id,
                        c.config.get("Hostname") or c.id[:12],
                        domainname=c.config.get("Domainname") or "",
                        extra_hosts=self._extra_hosts(c, ""),
                    )
                    return m.network_settings(c.id), hosts

                settings, hosts = await svc.call(work)
                nets[net.name] = entry
                _rewrite(os.path.join(c.dir, "hosts"), hosts)
                self._set_network_settings(
                    c, settings, c.data["NetworkSettings"].get("SandboxKey", "")
                )
            else:
                nets[net.name] = entry
            c.save()
        self.events.emit(
            "network", "connect", net.id, {"container": c.id, "name": net.name, "type": net.driver}
        )

    async def disconnect_network(self, network: str, ref: str, force: bool) -> None:
        svc = self._net()
        m = svc.manager
        net = await svc.call(m.get_network, network)
        try:
            c = self.get(ref)
        except NotFound:
            if not force:
                raise
            # an endpoint left by a container skiffd no longer knows
            gone = [
                e
                for e in await svc.call(m.endpoints_of, net.id)
                if ref in (e.container_id, e.container_name) or e.container_id.startswith(ref)
            ]
            for e in gone:
                await svc.call(m.detach, e.container_id, net.id)
            if not gone:
                raise
            return
        async with self.lock(c.id):
            nets = c.data["NetworkSettings"].get("Networks") or {}
            if net.name not in nets:
                raise Forbidden(f"container {c.id} is not connected to network {net.name}")
            if net.driver == "host" or str(c.host.get("NetworkMode")) == "host":
                raise Forbidden(
                    "container cannot be disconnected from host network or connected to host network"
                )
            if c.running:
                try:
                    await svc.call(m.detach, c.id, net.id)
                except NotFound:
                    if not force:
                        raise
                settings = await svc.call(m.network_settings, c.id)
                del nets[net.name]
                self._set_network_settings(
                    c, settings, c.data["NetworkSettings"].get("SandboxKey", "")
                )
            else:
                del nets[net.name]
            c.save()
        self.events.emit(
            "network",
            "disconnect",
            net.id,
            {"container": c.id, "name": net.name, "type": net.driver},
        )

    # -- start --------------------------------------------------------------

    async def start_container(self, ref: str) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.status == Status.PAUSED:
                raise Conflict("cannot start a paused container, try unpause instead")
            if c.status == Status.RUNNING:
                return  # Docker answers 304 Not Modified; the handler checks first
            if c.status in (Status.REMOVING, Status.DEAD):
                raise Conflict(f"container {c.id} is marked for removal and cannot be started")
            task = self.restart_tasks.pop(c.id, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            try:
                await self._start_locked(c)
            except BaseException:
                if c.host.get("AutoRemove"):
                    # as dockerd: `run --rm` waits for the removal even when the start fails
                    asyncio.get_running_loop().create_task(self._remove_quietly(c.id))
                raise

    async def _start_locked(self, c: Container) -> None:
        sup = self.sup()
        cid = c.id
        # a stopped task left over (exit handled while we were down, or a failed start)
        if cid not in self._no_task:
            state = await sup.task_state(cid)
            if state is not None:
                with contextlib.suppress(SkiffError):
                    await sup.delete_task(cid)
        try:
            spec = await self._spec(c)
            await sup.update_spec(cid, spec)
            mounts = await sup.snapshot_mounts(cid)
            tty = bool(c.config.get("Tty"))
            io = ProcessStdio(
                os.path.join(self.fifo_root, cid), "init", bool(c.config.get("OpenStdin")), tty
            )
            io.open()
            self._attach_log(c, io)
            io.sinks.extend(self.attachers.get(cid, []))
            try:
                for attempt in range(10):
                    try:
                        self._no_task.discard(cid)
                        pid = await sup.create_task(
                            cid, mounts, io.stdin_path, io.stdout_path, io.stderr_path, tty
                        )
                        break
                    except Unavailable as e:
                        # the shim of the previous run may still be shutting down: a new
                        # shim's start then hands out that shim's address, gone a moment
                        # later ("ttrpc: connect ...")
                        if attempt == 9 or "ttrpc: connect" not in str(e):
                            raise
                        await asyncio.sleep(0.1)
            except BaseException:
                io.close()
                raise
            old = self.stdio.pop(cid, None)
            if old is not None:
                old.close()
            self.stdio[cid] = io
            io.start_copying()
            try:
                await self._attach_networks(c, pid)
            except SkiffError as e:
                raise _NetworkError(e) from e
            await sup.start(cid)
        except SkiffError as e:
            cause = e.cause if isinstance(e, _NetworkError) else e
            c.state["Error"] = str(cause)
            c.state["ExitCode"] = 128 if "not found" not in str(cause) else 127
            if c.status == Status.RESTARTING:
                c.transition(Status.EXITED)
            c.save()
            with contextlib.suppress(SkiffError):
                await sup.delete_task(cid)
            await self._release_networks(c)
            c.save()
            # networking errors go out as they are, as dockerd's (port already allocated...)
            raise cause if cause is not e else _start_error(e)
        c.set_running(pid)
        c.data["SkiffStartedMono"] = time.time()
        c.save()
        self.events.emit("container", "start", cid, self.attrs(c))
        self._start_health(c)

    def _attach_log(self, c: Container, io: ProcessStdio) -> None:
        if (c.host.get("LogConfig") or {}).get("Type") == "none":
            return
        lg = self.logs.get(c.id)
        if lg is None:
            lg = JsonLog(c.log_path, (c.host.get("LogConfig") or {}).get("Config") or {})
            self.logs[c.id] = lg

        def sink(stream: str, data: bytes) -> None:
            if stream:
                lg.write(stream, data)
            else:
                lg.flush()

        io.sinks.append(sink)

    async def _spec(self, c: Container) -> dict[str, Any]:
        cfg, host = c.config, c.host
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        uid, gid, extra = await self._user(c)
        env = list(cfg.get("Env") or [])
        if not any(e.startswith("HOSTNAME=") for e in env):
            env.append(f"HOSTNAME={cfg.get('Hostname') or c.id[:12]}")
        if cfg.get("Tty") and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        init_path = None
        if host.get("Init"):
            init_path = next((p for p in INIT_CANDIDATES if os.path.exists(p)), None)
            if init_path is None:
                log.warning(
                    "--init asked for but no docker-init or tini on this host; running without"
                )
        spec = build_spec(
            cid=c.id,
            args=args,
            env=env,
            cwd=cfg.get("WorkingDir") or "/",
            uid=uid,
            gid=gid,
            additional_gids=extra,
            config=cfg,
            host=host,
            container_dir=c.dir,
            mounts=self._oci_mounts(c),
            init_path=init_path,
        )
        mode = str(host.get("NetworkMode") or "")
        if mode.startswith("container:"):
            # join the other container's network namespace, as --network container:<x>
            other = self.get(mode.split(":", 1)[1])
            if not other.running:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            spec["linux"]["namespaces"] = [
                n for n in spec["linux"]["namespaces"] if n["type"] != "network"
            ] + [{"type": "network", "path": f"/proc/{other.state['Pid']}/ns/net"}]
        return spec

    async def _user(self, c: Container) -> tuple[int, int, list[int]]:
        user = str(c.config.get("User") or "")
        name, _, group = user.partition(":")
        if (not name or name.isdigit()) and (not group or group.isdigit()):
            uid = int(name) if name else 0
            gid = int(group) if group else (uid if not name else 0)
            if name and not group:
                found = await self._lookup_user(c, name)
                gid = found[1] if found else 0
            return uid, gid, []
        found = await self._lookup_user(c, name or "root", group)
        if found is None:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
        return found[0], found[1], []

    async def _lookup_user(
        self, c: Container, name: str, group: str = ""
    ) -> tuple[int, int] | None:
        mounts = await self.sup().snapshot_mounts(c.id)
        passwd = rootfs_mod.read_layered(mounts, "etc/passwd")
        groups = rootfs_mod.read_layered(mounts, "etc/group")
        uid = gid = None
        for line in (passwd or b"").decode(errors="replace").splitlines():
            parts = line.split(":")
            if len(parts) >= 4 and (parts[0] == name or parts[2] == name):
                uid, gid = int(parts[2]), int(parts[3])
                break
        if uid is None:
            if name.isdigit():
                uid, gid = int(name), 0
            else:
                return None
        if group:
            if group.isdigit():
                gid = int(group)
            else:
                for line in (groups or b"").decode(errors="replace").splitlines():
                    parts = line.split(":")
                    if len(parts) >= 3 and parts[0] == group:
                        gid = int(parts[2])
                        break
                else:
                    raise InvalidArgument(
                        f"unable to find group {group}: no matching entries in group file"
                    )
        return uid, gid or 0

    # -- exits --------------------------------------------------------------

    async def _watch_exits(self) -> None:
        delay = 0.1
        while True:
            try:
                stream = self.sup().exits()
                self._subscribed.set()
                async for ex in stream:
                    delay = 0.1
                    self._dispatch_exit(ex)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("event subscription lost (%s); resubscribing", e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            await self.daemon.supervisor.wait_ready()
            # exits we may have missed while the stream was down
            with contextlib.suppress(Exception):
                await self._resync()

    def _dispatch_exit(self, ex: Exit) -> None:
        if ex.id and ex.id != ex.container_id:
            hook = self.exec_exit_hooks.pop((ex.container_id, ex.id), None)
            if hook is not None:
                hook(ex)
            return
        if ex.container_id in self.containers:
            asyncio.get_running_loop().create_task(
                self.handle_exit(ex.container_id, ex.exit_status, ex.exited_at)
            )

    async def _resync(self) -> None:
        for c in list(self.containers.values()):
            if c.running:
                st = await self.sup().task_state(c.id)
                if st is None or st.status == 3:
                    await self.handle_exit(
                        c.id, st.exit_status if st else 255, st.exited_at if st else time.time()
                    )

    async def handle_exit(self, cid: str, code: int, at: float) -> None:
        if cid in self._handling_exit:
            return
        c = self.containers.get(cid)
        if c is None:
            return
        self._handling_exit.add(cid)
        try:
            # a quick process can exit before its start has returned: let the start finish
            async with self.lock(cid):
                pass
            if not c.running:
                return
            io = self.stdio.get(cid)
            if io is not None:
                # the log and attached clients get all the output before anyone hears of the exit
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(io.done.wait(), 2.0)
                io.close()
                self.stdio.pop(cid, None)
                io.remove_files()
            lg = self.logs.pop(cid, None)
            if lg is not None:
                lg.close()
            with contextlib.suppress(SkiffError):
                code2, at2 = await self.sup().delete_task(cid)
                self._no_task.add(cid)
                if not code and code2:
                    code = code2
                at = at or at2
            await self._release_networks(c)
            h = self.health_tasks.pop(cid, None)
            if h is not None:
                h.cancel()
            async with self.lock(cid):
                if not c.running:
                    return
                started = float(c.data.get("SkiffStartedMono") or 0)
                c.set_exited(code, at)
                restart = self._should_restart(c, code)
                if restart:
                    c.transition(Status.RESTARTING)
                c.save()
            self.events.emit("container", "die", cid, {**self.attrs(c), "exitCode": str(code)})
            for fut in self.exit_waiters.pop(cid, []):
                if not fut.done():
                    fut.set_result(code)
            if restart:
                ran = time.time() - started if started else 0
                delay = self.restart_delay.get(cid, 0.0)
                delay = 0.1 if ran >= 10 or delay == 0 else min(delay * 2, 60.0)
                self.restart_delay[cid] = delay
                self.restart_tasks[cid] = asyncio.get_running_loop().create_task(
                    self._restart_later(c, delay)
                )
            elif c.host.get("AutoRemove"):
                with contextlib.suppress(Exception):
                    await self.remove(cid, force=True, volumes=True)
        finally:
            self._handling_exit.discard(cid)

    def _should_restart(self, c: Container, code: int) -> bool:
        policy = c.host.get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.manually_stopped or name == "no" or c.host.get("AutoRemove"):
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return code != 0 and (limit == 0 or int(c.data.get("RestartCount", 0)) < limit)
        return False

    async def _restart_later(self, c: Container, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            async with self.lock(c.id):
                if c.status != Status.RESTARTING or c.manually_stopped:
                    return
                c.data["RestartCount"] = int(c.data.get("RestartCount", 0)) + 1
                try:
                    await self._start_locked(c)
                except SkiffError as e:
                    log.warning("restarting %s failed: %s", c.id[:12], e)
                    if c.status == Status.RESTARTING:
                        c.transition(Status.EXITED)
                        c.save()
        finally:
            if self.restart_tasks.get(c.id) is asyncio.current_task():
                self.restart_tasks.pop(c.id, None)

    # -- stop, kill, restart, pause -----------------------------------------

    async def kill(self, ref: str, sig: str | None) -> None:
        c = self.get(ref)
        signum = parse_signal(sig or "SIGKILL", signal.SIGKILL)
        if not c.running:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            # a container the user killed is not brought back by its restart policy
            c.manually_stopped = True
            c.save()
        waiter = self._exit_future(c.id) if signum == signal.SIGKILL else None
        try:
            await self.sup().kill(c.id, signum, all=signum == signal.SIGKILL)
        except NotFound:
            raise Conflict(f"Cannot kill container: {ref}: Container {c.id} is not running")
        self.events.emit("container", "kill", c.id, {**self.attrs(c), "signal": str(signum)})
        if waiter is not None:
            # as dockerd: a SIGKILLed container is seen dead before the call returns
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, 2.0)

    async def stop_container(
        self, ref: str, sig: str | None = None, timeout: int | None = None
    ) -> bool:
        """False when the container was not running (the handler answers 304)."""
        c = self.get(ref)
        task = self.restart_tasks.pop(c.id, None)
        if task is not None:
            task.cancel()
        if c.status == Status.RESTARTING:
            c.manually_stopped = True
            c.transition(Status.EXITED)
            c.save()
            return True
        if not c.running:
            return False
        c.manually_stopped = True
        c.save()
        if c.status == Status.PAUSED:
            with contextlib.suppress(SkiffError):
                await self.sup().resume(c.id)
        signum = parse_signal(sig or c.config.get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = c.config.get("StopTimeout")
            if timeout is None:
                timeout = 10
        waiter = self._exit_future(c.id)
        with contextlib.suppress(NotFound):
            await self.sup().kill(c.id, signum)
            self.events.emit("container", "kill", c.id, {**self.attrs(c), "signal": str(signum)})
        try:
            if timeout < 0:
                await waiter
            else:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            with contextlib.suppress(NotFound):
                await self.sup().kill(c.id, signal.SIGKILL, all=True)
                self.events.emit("container", "kill", c.id, {**self.attrs(c), "signal": "9"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, 30)
        self.events.emit("container", "stop", c.id, self.attrs(c))
        return True

    async def restart(self, ref: str, sig: str | None, timeout: int | None) -> None:
        c = self.get(ref)
        await self.stop_container(c.id, sig, timeout)
        await self.start_container(c.id)
        self.events.emit("container", "restart", c.id, self.attrs(c))

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.status != Status.RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            await self.sup().pause(c.id)
            c.transition(Status.PAUSED)
            c.save()
        self.events.emit("container", "pause", c.id, self.attrs(c))

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.status != Status.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await self.sup().resume(c.id)
            c.transition(Status.RUNNING)
            c.save()
        self.events.emit("container", "unpause", c.id, self.attrs(c))

    # -- wait ---------------------------------------------------------------

    def _exit_future(self, cid: str) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.exit_waiters.setdefault(cid, []).append(fut)
        return fut

    def wait_future(self, ref: str, condition: str) -> asyncio.Future[int]:
        """A future of the exit code, registered now (so `run` can wait before start)."""
        c = self.get(ref)
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        if condition == "removed":
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.remove_waiters.setdefault(c.id, []).append(fut)
            return fut
        if condition in ("", "not-running") and not c.running and c.status != Status.RESTARTING:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(int(c.state.get("ExitCode", 0)))
            return fut
        return self._exit_future(c.id)

    # -- remove, rename, update ---------------------------------------------

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(ref)
        if c.status == Status.REMOVING:
            return
        if c.status == Status.RESTARTING and not force:
            raise Conflict(
                f'cannot remove container "{c.name}": container is restarting: stop the '
                "container before removing or force remove"
            )
        if c.running and not force:
            # dockerd's texts (API 1.45; 20.10 said "You cannot remove a running container")
            if c.status == Status.PAUSED:
                raise Conflict(
                    f'cannot remove container "{c.name}": container is paused and must be '
                    "unpaused first"
                )
            raise Conflict(
                f'cannot remove container "{c.name}": container is running: stop the '
                "container before removing or force remove"
            )
        task = self.restart_tasks.pop(c.id, None)
        if task is not None:
            task.cancel()
        c.manually_stopped = True
        if c.running:
            waiter = self._exit_future(c.id)
            if c.status == Status.PAUSED:
                with contextlib.suppress(SkiffError):
                    await self.sup().resume(c.id)
            with contextlib.suppress(NotFound):
                await self.sup().kill(c.id, signal.SIGKILL, all=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, 15)
        if c.status == Status.RESTARTING:
            c.transition(Status.EXITED)
        c.transition(Status.REMOVING)
        sup = self.sup()
        if c.id not in self._no_task:
            with contextlib.suppress(SkiffError):
                await sup.delete_task(c.id)
        self._no_task.discard(c.id)
        await self._release_networks(c)
        with contextlib.suppress(NotFound):
            await sup.delete_container(c.id)
        with contextlib.suppress(NotFound):
            await sup.remove_snapshot(c.id)
        io = self.stdio.pop(c.id, None)
        if io is not None:
            io.close()
        lg = self.logs.pop(c.id, None)
        if lg is not None:
            lg.close()
        h = self.health_tasks.pop(c.id, None)
        if h is not None:
            h.cancel()
        self._release_volumes(c.id)
        if volumes and self.volumes is not None:
            for p in c.data.get("Mounts") or []:
                if p["Type"] == "volume" and p.get("Anonymous"):
                    with contextlib.suppress(SkiffError):
                        self.volumes.remove(p["Name"])
        shutil.rmtree(c.dir, ignore_errors=True)
        shutil.rmtree(os.path.join(self.fifo_root, c.id), ignore_errors=True)
        self.containers.pop(c.id, None)
        if self.names.get(c.name) == c.id:
            del self.names[c.name]
        self.locks.pop(c.id, None)
        self.events.emit("container", "destroy", c.id, self.attrs(c))
        code = int(c.state.get("ExitCode", 0))
        for fut in self.remove_waiters.pop(c.id, []) + self.exit_waiters.pop(c.id, []):
            if not fut.done():
                fut.set_result(code)

    async def _remove_quietly(self, cid: str) -> None:
        with contextlib.suppress(Exception):
            await self.remove(cid, force=True, volumes=True)

    async def rename(self, ref: str, new: str) -> None:
        c = self.get(ref)
        if not new:
            raise InvalidArgument("Neither old nor new names may be empty")
        # dockerd checks the new name with its slash, and says where it failed
        try:
            full = check_name("/" + new.lstrip("/"))
        except InvalidArgument as e:
            raise InvalidArgument(f"Error when allocating new name: {e}")
        if full == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        if full in self.names:
            raise Conflict(
                f'Error when allocating new name: Conflict. The container name "{full}" is '
                f'already in use by container "{self.names[full]}". You have to remove (or '
                "rename) that container to be able to reuse that name."
            )
        old = c.name
        self.names.pop(old, None)
        self.names[full] = c.id
        c.data["Name"] = full
        c.save()
        svc = self.networks
        if svc is not None and svc.error is None and svc.started.is_set():
            await svc.call(svc.manager.rename_container, c.id, full)
        self.events.emit("container", "rename", c.id, {**self.attrs(c), "oldName": old})

    async def update(self, ref: str, body: dict[str, Any]) -> list[str]:
        c = self.get(ref)
        if not isinstance(body, dict):
            raise InvalidArgument("update config must be a JSON object")
        keys = (
            "Memory",
            "MemorySwap",
            "MemoryReservation",
            "NanoCpus",
            "CpuShares",
            "CpuQuota",
            "CpuPeriod",
            "CpusetCpus",
            "CpusetMems",
            "PidsLimit",
            "BlkioWeight",
        )
        # the docker CLI sends every field, unset ones as 0: as dockerd, 0 leaves a value
        # alone (PidsLimit excepted, whose 0 or -1 means unlimited, and which the CLI
        # only sends when given)
        changed = {
            k: body[k]
            for k in keys
            if body.get(k) not in (None, "") and (k == "PidsLimit" or body[k] != 0)
        }
        check_update(c, changed, body)
        if body.get("RestartPolicy"):
            rp = body["RestartPolicy"]
            if (rp.get("Name") or "no") not in RESTART_POLICIES:
                raise InvalidArgument(f"invalid restart policy {rp.get('Name')!r}")
            if c.host.get("AutoRemove") and (rp.get("Name") or "no") != "no":
                raise InvalidArgument(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                )
            c.host["RestartPolicy"] = {
                "Name": rp.get("Name") or "no",
                "MaximumRetryCount": int(rp.get("MaximumRetryCount") or 0),
            }
        before = dict(c.host)
        c.host.update(changed)
        if changed and c.running:
            try:
                await self.sup().update_resources(c.id, resources(c.host))
            except SkiffError as e:
                # what the runtime refused is not kept, or every later update would fail
                # on it; the runtime may have applied part of it, so the old values go back
                c.host.clear()
                c.host.update(before)
                with contextlib.suppress(SkiffError):
                    await self.sup().update_resources(c.id, resources(c.host))
                raise type(e)(f"Cannot update container {c.id}: {e}") from e
        c.save()
        self.events.emit("container", "update", c.id, self.attrs(c))
        return []

    # -- restore ------------------------------------------------------------

    async def restore(self) -> None:
        """Find every container again: its record, its task, exits we missed."""
        self.sup()
        for cid in sorted(os.listdir(self.root)):
            directory = os.path.join(self.root, cid)
            try:
                c = Container.load(directory)
            except (OSError, ValueError, KeyError) as e:
                log.warning("skipping container %s: %s", cid[:12], e)
                continue
            self.containers[c.id] = c
            self.names[c.name] = c.id
            for p in c.data.get("Mounts") or []:
                if p["Type"] == "volume" and self.volumes is not None:
                    self.volumes.users.setdefault(p["Name"], set()).add(c.id)
        await asyncio.gather(*(self._restore_one(c) for c in list(self.containers.values())))

    async def _restore_one(self, c: Container) -> None:
        sup = self.sup()
        try:
            st = await sup.task_state(c.id)
        except SkiffError as e:
            log.warning("state of %s: %s", c.id[:12], e)
            return
        if st is not None and st.status in (1, 2, 4):
            # still running in its shim: reopen the FIFOs and copy on
            if c.status in (Status.EXITED, Status.CREATED, Status.RESTARTING):
                c.state["Status"] = "exited"
                c.set_running(st.pid)
            if st.status == 4 and c.status == Status.RUNNING:
                c.transition(Status.PAUSED)
            elif st.status == 2 and c.status == Status.PAUSED:
                c.transition(Status.RUNNING)
            c.state["Pid"] = st.pid
            await self._restore_networks(c, st.pid)
            io = ProcessStdio(
                os.path.join(self.fifo_root, c.id),
                "init",
                bool(c.config.get("OpenStdin")),
                bool(c.config.get("Tty")),
            )
            io.open()
            self._attach_log(c, io)
            io.sinks.extend(self.attachers.get(c.id, []))
            self.stdio[c.id] = io
            io.start_copying()
            c.save()
            self._start_health(c)
            # the exit may have come between the state query and now
            st2 = await sup.task_state(c.id)
            if st2 is not None and st2.status == 3:
                await self.handle_exit(c.id, st2.exit_status, st2.exited_at)
        elif st is not None and st.status == 3:
            if not c.running:
                c.state["Status"] = "running"
                c.state["Running"] = True
            io = ProcessStdio(
                os.path.join(self.fifo_root, c.id),
                "init",
                bool(c.config.get("OpenStdin")),
                bool(c.config.get("Tty")),
            )
            with contextlib.suppress(OSError):
                io.open()
                self._attach_log(c, io)
                self.stdio[c.id] = io
                io.start_copying()
            await self.handle_exit(c.id, st.exit_status, st.exited_at)
        elif c.running or c.status == Status.RESTARTING:
            # the task is gone and with it the exit status
            await self._release_networks(c)
            c.state.update(
                Status="exited",
                Running=False,
                Paused=False,
                Restarting=False,
                Pid=0,
                ExitCode=c.state.get("ExitCode") or 255,
                FinishedAt=rfc3339(time.time()),
            )
            c.save()
            if self._should_restart(c, 255):
                with contextlib.suppress(SkiffError):
                    await self.start_container(c.id)

    # -- healthchecks -------------------------------------------------------

    def _start_health(self, c: Container) -> None:
        hc = c.config.get("Healthcheck") or {}
        test = hc.get("Test") or []
        if not test or test[0] == "NONE":
            return
        c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
        old = self.health_tasks.pop(c.id, None)
        if old is not None:
            old.cancel()
        self.health_tasks[c.id] = asyncio.get_running_loop().create_task(self._health_loop(c))

    async def _health_loop(self, c: Container) -> None:
        hc = c.config.get("Healthcheck") or {}
        test = list(hc.get("Test") or [])
        interval = (hc.get("Interval") or 30_000_000_000) / 1e9
        timeout = (hc.get("Timeout") or 30_000_000_000) / 1e9
        retries = int(hc.get("Retries") or 3)
        start_period = (hc.get("StartPeriod") or 0) / 1e9
        start_interval = (hc.get("StartInterval") or 5_000_000_000) / 1e9
        if test[0] == "CMD-SHELL":
            cmd = ["/bin/sh", "-c", " ".join(test[1:])]
        elif test[0] == "CMD":
            cmd = test[1:]
        else:
            cmd = test
        began = time.time()
        execs = self.daemon.services.get("exec")
        while c.running:
            in_start = time.time() - began < start_period
            await asyncio.sleep(start_interval if in_start and start_period else interval)
            if not c.running or execs is None:
                return
            t0 = time.time()
            try:
                code, output = await asyncio.wait_for(execs.run_capture(c, cmd), timeout)
            except TimeoutError:
                code, output = -1, f"Health check exceeded timeout ({timeout}s)"
            except SkiffError as e:
                code, output = -1, str(e)
            health = c.state.setdefault(
                "Health", {"Status": "starting", "FailingStreak": 0, "Log": []}
            )
            entry = {
                "Start": rfc3339(t0),
                "End": rfc3339(time.time()),
                "ExitCode": code,
                "Output": output[:4096],
            }
            health["Log"] = [*(health.get("Log") or [])[-4:], entry]
            old = health["Status"]
            if code == 0:
                health["Status"] = "healthy"
                health["FailingStreak"] = 0
            elif not (in_start and old == "starting"):
                health["FailingStreak"] = int(health.get("FailingStreak", 0)) + 1
                if health["FailingStreak"] >= retries:
                    health["Status"] = "unhealthy"
            c.save()
            if health["Status"] != old:
                self.events.emit(
                    "container", f"health_status: {health['Status']}", c.id, self.attrs(c)
                )

    # -- helpers ------------------------------------------------------------

    def attrs(self, c: Container) -> dict[str, str]:
        attrs = {"image": str(c.config.get("Image") or ""), "name": c.name.lstrip("/")}
        attrs.update(c.config.get("Labels") or {})
        return attrs

    def cgroup_path(self, c: Container) -> str:
        return f"/skiff/{c.id}"

    def process_root(self, c: Container) -> str | None:
        pid = int(c.state.get("Pid") or 0)
        if c.running and pid:
            return f"/proc/{pid}/root"
        return None


_STR_LISTS = ("Env", "Shell", "OnBuild")
_STR_OR_LISTS = ("Cmd", "Entrypoint")
_BOOLS = ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr",
          "NetworkDisabled", "ArgsEscaped")  # fmt: skip
_STR_MAPS = ("Labels",)
_HOST_STR_LISTS = ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch",
                   "ExtraHosts", "SecurityOpt", "GroupAdd")  # fmt: skip
_HOST_INTS = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota",
              "CpuPeriod", "PidsLimit", "ShmSize")  # fmt: skip


def _type_error(where: str, field: str, want: str, value: Any) -> InvalidArgument:
    got = type(value).__name__.replace("str", "string").replace("dict", "object")
    return InvalidArgument(
        f"json: cannot unmarshal {got} into Go struct field {where}.{field} of type {want}"
    )


def validate_types(config: dict[str, Any], host: dict[str, Any]) -> None:
    """The JSON types Go's decoder would insist on, with its message."""

    def str_list(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    for f in _STR_LISTS:
        if config.get(f) is not None and not str_list(config[f]):
            raise _type_error("ContainerConfigWrapper.Config", f, "[]string", config[f])
    for f in _STR_OR_LISTS:
        v = config.get(f)
        if v is not None and not isinstance(v, str) and not str_list(v):
            raise _type_error("ContainerConfigWrapper.Config", f, "strslice.StrSlice", v)
    for f in _BOOLS:
        if config.get(f) is not None and not isinstance(config[f], bool):
            raise _type_error("ContainerConfigWrapper.Config", f, "bool", config[f])
    for f in _STR_MAPS:
        v = config.get(f)
        if v is not None and not (
            isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
        ):
            raise _type_error("ContainerConfigWrapper.Config", f, "map[string]string", v)
    for f in ("User", "WorkingDir", "Hostname", "Domainname", "StopSignal", "Image"):
        if config.get(f) is not None and not isinstance(config[f], str):
            raise _type_error("ContainerConfigWrapper.Config", f, "string", config[f])
    for f in _HOST_STR_LISTS:
        if host.get(f) is not None and not str_list(host[f]):
            raise _type_error("ContainerConfigWrapper.HostConfig", f, "[]string", host[f])
    for f in _HOST_INTS:
        v = host.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise _type_error("ContainerConfigWrapper.HostConfig", f, "int64", v)
    for f in ("RestartPolicy", "LogConfig", "PortBindings", "Tmpfs", "Sysctls"):
        if host.get(f) is not None and not isinstance(host[f], dict):
            raise _type_error("ContainerConfigWrapper.HostConfig", f, "object", host[f])
    for f in ("Mounts", "Ulimits"):
        if host.get(f) is not None and not isinstance(host[f], list):
            raise _type_error("ContainerConfigWrapper.HostConfig", f, "array", host[f])


def check_update(c: Container, changed: dict[str, Any], body: dict[str, Any]) -> None:
    """Refuse an update as dockerd does before it reaches the runtime."""
    mib6 = 6 * 1024 * 1024
    mem = int(changed.get("Memory") or 0)
    if mem and mem < mib6:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if body.get("KernelMemory") and int(body["KernelMemory"]) < mib6:
        raise InvalidArgument("Minimum kernel memory limit allowed is 6MB")
    swap = int(changed.get("MemorySwap") or 0)
    if swap > 0 and swap < (mem or int(c.host.get("Memory") or 0)):
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    old_swap = int(c.host.get("MemorySwap") or 0)
    if mem and not swap and old_swap > 0 and mem > old_swap:
        raise InvalidArgument(
            f"Cannot update container {c.id}: Memory limit should be smaller than already "
            "set memoryswap limit, update the memoryswap at the same time"
        )
    if changed.get("NanoCpus"):
        ncpu = os.cpu_count() or 1
        nano = int(changed["NanoCpus"])
        if nano < 0 or nano > ncpu * 1_000_000_000:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )
        if c.host.get("CpuPeriod") or changed.get("CpuPeriod"):
            raise InvalidArgument(
                f"Cannot update container {c.id}: Conflicting options: Nano CPUs cannot be "
                "updated as CPU Period has already been set"
            )
        if c.host.get("CpuQuota") or changed.get("CpuQuota"):
            raise InvalidArgument(
                f"Cannot update container {c.id}: Conflicting options: Nano CPUs cannot be "
                "updated as CPU Quota has already been set"
            )
    if (changed.get("CpuPeriod") or changed.get("CpuQuota")) and c.host.get("NanoCpus"):
        what = "Period" if changed.get("CpuPeriod") else "Quota"
        raise InvalidArgument(
            f"Cannot update container {c.id}: Conflicting options: CPU {what} cannot be "
            "updated as NanoCPUs has already been set"
        )


def validate_host_config(host: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    rp = host.get("RestartPolicy") or {}
    if not isinstance(rp, dict):
        raise InvalidArgument("invalid RestartPolicy")
    name = rp.get("Name") or ""
    if name not in RESTART_POLICIES:
        raise InvalidArgument(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        )
    if rp.get("MaximumRetryCount") and name != "on-failure":
        raise InvalidArgument(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'"
        )
    if rp.get("MaximumRetryCount") and int(rp["MaximumRetryCount"]) < 0:
        raise InvalidArgument(
            "invalid restart policy: maximum retry count must be a positive integer"
        )
    if host.get("AutoRemove") and name not in ("", "no"):
        raise InvalidArgument("conflicting options: cannot specify both --restart and --rm")
    mem = int(host.get("Memory") or 0)
    if mem and mem < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = int(host.get("MemorySwap") or 0)
    if swap > 0 and mem and swap < mem:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if swap and not mem and swap != -1:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if host.get("NanoCpus") and (host.get("CpuQuota") or host.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if host.get("NanoCpus"):
        ncpu = os.cpu_count() or 1
        if int(host["NanoCpus"]) > ncpu * 1_000_000_000:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )
    for port, bindings in (host.get("PortBindings") or {}).items():
        number, _, proto = str(port).partition("/")
        if (
            not number
            or not all(p.isdigit() for p in number.split("-"))
            or proto not in ("", "tcp", "udp", "sctp")
        ):
            raise InvalidArgument(f'invalid port specification: "{port}"')
        for b in bindings or []:
            hp = str((b or {}).get("HostPort") or "")
            if hp and not all(p.isdigit() for p in hp.split("-")):
                raise InvalidArgument(f'invalid port specification: "{hp}"')
    # what the spec would refuse at start is refused now, as dockerd does at create
    capabilities(bool(host.get("Privileged")), host.get("CapAdd"), host.get("CapDrop"))
    for opt in host.get("SecurityOpt") or []:
        key = str(opt).split("=", 1)[0].split(":", 1)[0]
        if key not in ("no-new-privileges", "seccomp", "apparmor", "label"):
            raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
        if key == "seccomp" and "=" in opt and opt.split("=", 1)[1] != "unconfined":
            seccomp_from_profile(opt.split("=", 1)[1])
    for u in host.get("Ulimits") or []:
        if str((u or {}).get("Name", "")).lower() not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {(u or {}).get('Name')}")
    return warnings


_ENDPOINT_RUNTIME: dict[str, Any] = {
    "MacAddress": "",
    "EndpointID": "",
    "Gateway": "",
    "IPAddress": "",
    "IPPrefixLen": 0,
    "IPv6Gateway": "",
    "GlobalIPv6Address": "",
    "GlobalIPv6PrefixLen": 0,
    "DNSNames": None,
}


def endpoint_entry(network_id: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """One NetworkSettings.Networks entry of a container not (yet) attached."""
    ipv4 = ((cfg or {}).get("IPAMConfig") or {}).get("IPv4Address") or ""
    return {
        "IPAMConfig": {"IPv4Address": ipv4} if ipv4 else None,
        "Links": None,
        "Aliases": list((cfg or {}).get("Aliases") or []) or None,
        "NetworkID": network_id,
        "DriverOpts": None,
        **_ENDPOINT_RUNTIME,
    }


def network_settings(host: dict[str, Any]) -> dict[str, Any]:
    """A container's NetworkSettings before its first start (Networks filled at create)."""
    return {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "Ports": {},
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": {},
    }


def _rewrite(path: str, text: str) -> None:
    """Replace a file's content in place: a bind mount of it must see the new text."""
    with open(path, "r+") as f:
        f.seek(0)
        f.write(text)
        f.truncate()


class _NetworkError(SkiffError):
    """A networking failure while starting: answered with the library's own error."""

    def __init__(self, cause: SkiffError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _start_error(e: SkiffError) -> SkiffError:
    text = str(e)
    if (
        "no such file" in text.lower()
        or "not found" in text.lower()
        or "executable" in text.lower()
    ):
        err: SkiffError = InvalidArgument(f"failed to create task for container: {text}: unknown")
        err.http_status = 400
        return err
    return SkiffError(f"failed to create task for container: {text}: unknown")


def dumps(obj: Any) -> str:
    return json.dumps(obj)
