"""The executor of skiffd's classic builder: runs a planned Dockerfile over
the supervisor (skiff.containerd.client) and commits the image.

Each step turns an image state (config JSON + layer descriptors) into the
next: metadata instructions only change the config (an `empty_layer`
history entry); RUN runs a real container on a snapshot prepared on the
parent chain and diffs it (the supervisor's diff service) to a layer;
COPY/ADD write a layer tar here and apply it with the diff service. Every
step's result is a cache entry (cache.py), kept alive in the supervisor by
a gc.root manifest. Blocking code: the API runs it in a worker thread.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from skiff.containerd.client import images as cimages
from skiff.containerd.client.containers import DEFAULT_CAPS, DEFAULT_PATH, FifoIO
from skiff.containerd.client.content import RemoteContentStore
from skiff.containerd.client.core import Client
from skiff.containerd.client.types import Mount as ClientMount
from skiff.engine.build import stages as stages_mod
from skiff.engine.build.cache import BuildCache, Entry, step_key
from skiff.engine.build.context import Context
from skiff.engine.build.dockerfile import Instruction, parse
from skiff.engine.build.shell import ShellLex
from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, SkiffError
from skiff.image import mount as imount
from skiff.oci import mediatypes as mt
from skiff.oci import platform as plat
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor, chain_ids
from skiff.oci.reference import parse as parse_reference
from skiff.oci.runtime_spec import default_spec

GC_ROOT = "containerd.io/gc.root"
PROXY_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
PLATFORM_ARGS = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)
NOP = "/bin/sh -c #(nop) "
EMPTY_TAR_GZ_SIZE = 32


class BuildError(SkiffError):
    """A build step failed (reported in the stream, not as an HTTP status)."""

    http_status = 400


@dataclass(slots=True, kw_only=True)
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: Sequence[str] = ()
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    target: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    network_mode: str = ""
    platform: str = ""
    cache_from: Sequence[str] = ()
    extra_hosts: Sequence[str] = ()
    quiet: bool = False
    shm_size: int = 0


@dataclass(slots=True)
class ImageState:
    config: dict[str, Any]  # the whole image config JSON
    layers: list[dict[str, Any]]  # manifest layer descriptors
    image_id: str = ""  # config digest ("" for scratch)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])

    @property
    def chain_id(self) -> str:
        ids = chain_ids([Digest(d) for d in self.diff_ids])
        return str(ids[-1]) if ids else ""

    @property
    def cfg(self) -> dict[str, Any]:
        c = self.config.setdefault("config", {})
        assert isinstance(c, dict)
        return c


@dataclass(slots=True)
class BuildResult:
    image_id: str
    tags: list[str]


Output = Callable[[dict[str, Any]], None]


class _StreamWriter:
    """What a RUN step prints, forwarded as {"stream": ...} messages."""

    def __init__(self, out: Output) -> None:
        self.out = out

    def write(self, data: bytes) -> int:
        self.out({"stream": data.decode("utf-8", errors="replace")})
        return len(data)

    def flush(self) -> None:
        pass


def short(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


class Builder:
    def __init__(
        self,
        client: Client,
        cache: BuildCache,
        *,
        runtime: str,
        snapshotter: str = "overlayfs",
        workdir: str,
        pull_image: Callable[[str, plat.Platform, Output], None] | None = None,
        runtime_options: tuple[str, bytes] | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.runtime = runtime
        self.runtime_options = runtime_options
        self.snapshotter = snapshotter
        self.workdir = workdir
        self.pull_image = pull_image
        os.makedirs(workdir, exist_ok=True)

        # -- the build ---------------------------------------------------------------

        # content digest -> bytes of small immutable blobs (manifests, configs)
        self.blobs: dict[str, bytes] = {}
        self.resolved: dict[tuple[str, str], cimages.ResolvedImage] = {}

    def build(self, ctx: Context, opts: BuildOptions, out: Output) -> BuildResult:
        run = _Run(self, ctx, opts, out)
        try:
            return run.execute()
        finally:
            # the records that hold what the build made exist by now; the lease can go
            # after the answer (a GC may run on delete), and expires by itself anyway
            threading.Thread(
                target=_delete_lease, args=(self.client, run.lease_id, run.touched), daemon=True
            ).start()


class _Run:
    """One build: the plan, the per-stage states, the output."""

    def __init__(self, b: Builder, ctx: Context, opts: BuildOptions, out: Output) -> None:
        self.b = b
        self.ctx = ctx
        self.opts = opts
        self.out = out
        self.lease_id = ""
        self._leased: Client | None = None
        self._content: RemoteContentStore | None = None
        self.step = 0
        self.platform = plat.Platform.parse(opts.platform) if opts.platform else plat.host()
        epoch = opts.build_args.get("SOURCE_DATE_EPOCH")
        self.epoch: int | None = int(epoch) if epoch and epoch.isdigit() else None
        self.used_args: set[str] = set()
        self.touched: list[tuple[BuildCache, Entry]] = []
        self.manifests: dict[str, tuple[Digest, int]] = {}  # image id -> manifest
        self.cache_from = self._load_cache_from()

    # -- the supervisor ---------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The supervisor under this build's lease, made on first use: a build
        served from the cache writes nothing and needs none (reads use self.b.client)."""
        if self._leased is None:
            expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
            lease = self.b.client.create_lease(
                f"skiff-build-{secrets.token_hex(8)}", {"containerd.io/gc.expire": expire}
            )
            self.lease_id = lease.id
            self._leased = self.b.client.with_lease(lease.id)
        return self._leased

    @property
    def store(self) -> RemoteContentStore:
        if self._content is None:
            self._content = RemoteContentStore(self.client)
        return self._content

    # -- output ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self.out({"stream": text})

    def now(self) -> str:
        t = self.epoch if self.epoch is not None else time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + (
            "Z" if self.epoch is not None else f".{int(t % 1 * 1e9):09d}Z"
        )

    # -- driver ---------------------------------------------------------------------

    def execute(self) -> BuildResult:
        df = parse(self.ctx.read_dockerfile(self.opts.dockerfile))
        self.ctx.apply_dockerignore(self.opts.dockerfile)
        self.lex = ShellLex(df.escape)
        self.build_args = {k: v for k, v in self.opts.build_args.items() if v is not None}
        self.predefined = self._predefined()
        plan = stages_mod.plan(
            df,
            target=self.opts.target,
            build_args=self.build_args,
            predefined=self.predefined,
            dockerfile_name=self.opts.dockerfile or "Dockerfile",
        )
        self.plan = plan
        self.names = stages_mod.names_of(plan.stages)
        self.meta = dict(self.predefined)
        self.meta.update(stages_mod.meta_env(plan.meta_args, self.build_args, self.lex))
        self.total = plan.steps
        self.states: dict[int, ImageState] = {}
        for idx in plan.order:
            self.states[idx] = self._stage(plan.stages[idx])
        final = self.states[plan.target]
        if self.opts.labels:
            final.cfg.setdefault("Labels", {})
            final.cfg["Labels"] = {**(final.cfg.get("Labels") or {}), **self.opts.labels}
            final.image_id = ""
        unused = sorted(
            set(self.build_args) - self.used_args - set(PROXY_ARGS) - {"SOURCE_DATE_EPOCH"}
        )
        if unused:
            self.say(f"[Warning] One or more build-args {unused} were not consumed\n")
        if final.image_id in self.manifests:
            # the last step came from the cache: its manifest is the image's
            image_id = final.image_id
            self._last_manifest = self.manifests[image_id]
        else:
            image_id, _ = self._commit_image(final, root=False)
        tags = self._tag(image_id)
        if self.opts.quiet:
            self.out({"stream": image_id + "\n"})
        self.out({"aux": {"ID": image_id}})
        self.say(f"Successfully built {short(image_id)}\n")
        for tag in tags:
            self.say(f"Successfully tagged {tag}\n")
        return BuildResult(image_id, tags)

    def _predefined(self) -> dict[str, str]:
        host = plat.host()
        target = self.platform
        values = {
            "TARGETPLATFORM": str(target),
            "TARGETOS": target.os,
            "TARGETARCH": target.architecture,
            "TARGETVARIANT": target.variant or "",
            "BUILDPLATFORM": str(host),
            "BUILDOS": host.os,
            "BUILDARCH": host.architecture,
            "BUILDVARIANT": host.variant or "",
        }
        for name in PROXY_ARGS:
            if self.build_args.get(name):
                values[name] = self.build_args[name]
        return values

    # -- stages ---------------------------------------------------------------------

    def _stage(self, stage: stages_mod.Stage) -> ImageState:
        self.step += 1
        self.say(f"Step {self.step}/{self.total} : {stage.source.original}\n")
        if stage.base_stage is not None:
            state = copy.deepcopy(self.states[stage.base_stage])
        elif stage.base.lower() == "scratch":
            state = self._scratch()
        else:
            state = self._base_image(stage.base, stage.platform)
        self.say(
            f" ---> {short(state.image_id) if state.image_id else '<scratch>'}\n"
            if state.image_id
            else ""
        )
        self.args: dict[str, str] = {}
        self.cmd_set = False
        self.stage_index = stage.index
        triggers = list(state.cfg.get("OnBuild") or [])
        if triggers:
            state.cfg["OnBuild"] = None
            self.say(
                f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n"
            )
            for text in triggers:
                for inst in parse(text).instructions:
                    state = self._instruction(state, inst, trigger=True)
        for inst in stage.commands:
            self.step += 1
            self.say(f"Step {self.step}/{self.total} : {inst.original}\n")
            state = self._instruction(state, inst)
        return state

    def _scratch(self) -> ImageState:
        config: dict[str, Any] = {
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": {"Env": [DEFAULT_PATH]},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
        if self.platform.variant:
            config["variant"] = self.platform.variant
        return ImageState(config, [], "")

    def _resolve_image(self, name: str, platform: str) -> cimages.ResolvedImage:
        want = plat.Platform.parse(platform) if platform else self.platform
        ref = str(parse_reference(name))
        progress: Output = self.out if not self.opts.quiet else (lambda msg: None)
        if self.opts.pull and self.b.pull_image is not None:
            self.b.pull_image(ref, want, progress)
        try:
            image = self._get_image(ref, want)
        except NotFound:
            if self.b.pull_image is None:
                raise NotFound(f"No such image: {name}") from None
            self.b.pull_image(ref, want, progress)
            image = self._get_image(ref, want)
        if image.chain_id and not self._snapshot_exists(image.chain_id):
            cimages.unpack(self.client, image, self.b.snapshotter)
            self.b.cache.verified.add(image.chain_id)
        return image

    def _get_image(self, ref: str, want: plat.Platform) -> cimages.ResolvedImage:
        """The image record (one call), its manifest and config remembered by
        target digest: content under a digest never changes."""
        record = self.b.client.get_image(ref)
        key = (str(record.target.digest), str(want))
        image = self.b.resolved.get(key)
        if image is None or image.name != record.name:
            image = cimages.resolve(self.b.client, record.name, record.target, want)
            if len(self.b.resolved) > 64:
                self.b.resolved.clear()
            self.b.resolved[key] = image
        return image

    def _blob(self, digest: Digest | str) -> bytes:
        """A small immutable blob (config), remembered by digest."""
        key = str(digest)
        data = self.b.blobs.get(key)
        if data is None:
            data = RemoteContentStore(self.b.client).read_all(Digest(key))
            if len(self.b.blobs) > 256:
                self.b.blobs.clear()
            self.b.blobs[key] = data
        return data

    def _base_image(self, name: str, platform: str) -> ImageState:
        image = self._resolve_image(name, platform)
        config = json.loads(self._blob(image.config_descriptor.digest))
        layers = [_desc_json(d) for d in image.layers]
        return ImageState(config, layers, str(image.config_descriptor.digest))

    # -- instructions ---------------------------------------------------------------

    def env(self, state: ImageState) -> dict[str, str]:
        """What substitution sees: the ARGs in scope, then ENV (ENV wins)."""
        env = dict(self.args)
        for item in state.cfg.get("Env") or []:
            k, _, v = item.partition("=")
            env[k] = v
        return env

    def word(self, state: ImageState, text: str) -> str:
        return self.lex.process_word(text, self.env(state))

    def _instruction(
        self, state: ImageState, inst: Instruction, *, trigger: bool = False
    ) -> ImageState:
        cmd = inst.cmd
        if cmd == "arg":
            return self._arg(state, inst)
        handler = getattr(self, f"_i_{cmd}", None)
        if handler is None:
            raise InvalidArgument(f"{inst.keyword} is not supported in this position")
        result: ImageState = handler(state, inst)
        return result

    # metadata ------------------------------------------------------------------------

    def _meta(
        self, state: ImageState, created_by: str, change: Callable[[dict[str, Any]], None]
    ) -> ImageState:
        key = step_key(state.image_id, NOP + created_by, self._arg_env_list())
        hit = self._cached(key, state, empty=True, created_by=NOP + created_by)
        if hit is not None:
            return hit
        new = ImageState(copy.deepcopy(state.config), list(state.layers))
        change(new.cfg)
        now = self.now()  # one time for the config and its history entry, as dockerd
        new.config["created"] = now
        new.config.setdefault("history", []).append(
            {"created": now, "created_by": NOP + created_by, "empty_layer": True}
        )
        entry = self._cache_from_entry(state, empty=True, created_by=NOP + created_by)
        if entry is not None and not self.opts.no_cache:
            # as dockerd restores a cached image: the history entry (and its time) of the
            # --cache-from image, so an unchanged build gives that very image
            new.config["created"] = entry["created"]
            new.config["history"][-1] = dict(entry)
            self.say(" ---> Using cache\n")
        return self._store(key, state, new, NOP + created_by, size=0)

    def _arg(self, state: ImageState, inst: Instruction) -> ImageState:
        desc = []
        for word in inst.args:
            name, eq, default = word.partition("=")
            if name in self.build_args:
                value: str | None = self.build_args[name]
                self.used_args.add(name)
            elif name in self.meta and not eq:
                value = self.meta[name]
            elif eq:
                value = self.lex.process_word(default, self.env(state))
            else:
                value = None
            if value is not None:
                self.args[name] = value
            desc.append(word)
        # ARG changes no config; Docker still records a step
        return self._meta(state, lambda_desc("ARG", " ".join(desc)), lambda cfg: None)

    def _i_env(self, state: ImageState, inst: Instruction) -> ImageState:
        env = self.env(state)
        pairs = []
        for i in range(0, len(inst.args), 2):
            key = self.lex.process_word(inst.args[i], env)
            value = self.lex.process_word(inst.args[i + 1], env)
            pairs.append((key, value))
            env[key] = value

        def change(cfg: dict[str, Any]) -> None:
            items = list(cfg.get("Env") or [])
            for key, value in pairs:
                items = [e for e in items if e.partition("=")[0] != key]
                items.append(f"{key}={value}")
            cfg["Env"] = items

        return self._meta(state, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), change)

    def _i_label(self, state: ImageState, inst: Instruction) -> ImageState:
        env = self.env(state)
        pairs = [
            (self.lex.process_word(inst.args[i], env), self.lex.process_word(inst.args[i + 1], env))
            for i in range(0, len(inst.args), 2)
        ]

        def change(cfg: dict[str, Any]) -> None:
            labels = dict(cfg.get("Labels") or {})
            labels.update(pairs)
            cfg["Labels"] = labels

        return self._meta(state, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), change)

    def _i_maintainer(self, state: ImageState, inst: Instruction) -> ImageState:
        author = inst.args[0]

        def change(cfg: dict[str, Any]) -> None:
            pass

        new = self._meta(state, "MAINTAINER " + author, change)
        new.config["author"] = author
        return new

    def _command(self, state: ImageState, inst: Instruction) -> list[str]:
        if inst.json:
            return list(inst.args)
        if not inst.args:
            return []
        return [*self._shell(state), inst.args[0]]

    def _shell(self, state: ImageState) -> list[str]:
        return list(state.cfg.get("Shell") or ["/bin/sh", "-c"])

    def _i_cmd(self, state: ImageState, inst: Instruction) -> ImageState:
        command = self._command(state, inst)

        self.cmd_set = True

        def change(cfg: dict[str, Any]) -> None:
            cfg["Cmd"] = command

        return self._meta(state, " CMD " + json.dumps(command), change)

    def _i_entrypoint(self, state: ImageState, inst: Instruction) -> ImageState:
        command = self._command(state, inst)

        def change(cfg: dict[str, Any]) -> None:
            cfg["Entrypoint"] = command or None
            # Docker: setting ENTRYPOINT resets a CMD inherited from the base
            if not self.cmd_set:
                cfg["Cmd"] = None

        return self._meta(state, " ENTRYPOINT " + json.dumps(command), change)

    def _i_shell(self, state: ImageState, inst: Instruction) -> ImageState:
        shell = list(inst.args)

        def change(cfg: dict[str, Any]) -> None:
            cfg["Shell"] = shell

        return self._meta(state, "SHELL " + json.dumps(shell), change)

    def _i_expose(self, state: ImageState, inst: Instruction) -> ImageState:
        env = self.env(state)
        ports: list[str] = []
        for raw in inst.args:
            for word in self.lex.process_words(raw, env):
                port, _, proto = word.partition("/")
                proto = (proto or "tcp").lower()
                if proto not in ("tcp", "udp", "sctp"):
                    raise InvalidArgument(f"invalid proto: {proto}")
                if not port or not all(p.isdigit() for p in port.split("-")):
                    raise InvalidArgument(f"invalid containerPort: {port}")
                ports.append(f"{port}/{proto}")

        def change(cfg: dict[str, Any]) -> None:
            exposed = dict(cfg.get("ExposedPorts") or {})
            for p in ports:
                exposed[p] = {}
            cfg["ExposedPorts"] = exposed

        return self._meta(state, "EXPOSE " + " ".join(sorted(ports)), change)

    def _i_volume(self, state: ImageState, inst: Instruction) -> ImageState:
        env = self.env(state)
        vols = [self.lex.process_word(v, env) if not inst.json else v for v in inst.args]
        for v in vols:
            if not v.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")

        def change(cfg: dict[str, Any]) -> None:
            volumes = dict(cfg.get("Volumes") or {})
            for v in vols:
                volumes[v.strip()] = {}
            cfg["Volumes"] = volumes

        return self._meta(state, "VOLUME " + json.dumps(vols), change)

    def _i_workdir(self, state: ImageState, inst: Instruction) -> ImageState:
        path = self.word(state, inst.args[0])
        if not path.startswith("/"):
            path = posixpath.join(state.cfg.get("WorkingDir") or "/", path)
        path = posixpath.normpath(path)

        def change(cfg: dict[str, Any]) -> None:
            cfg["WorkingDir"] = path

        created_by = NOP + "WORKDIR " + path
        key = step_key(state.image_id, created_by, self._arg_env_list())
        if path == "/":
            return self._meta(state, "WORKDIR " + path, change)
        hit = self._cached(key, state, empty=True, created_by=created_by)
        if hit is not None:
            return hit
        missing = self._missing_dirs(state, path)
        if not missing:
            return self._meta(state, "WORKDIR " + path, change)
        # as dockerd: a directory that does not exist is made (root, 0755) in a layer
        mtime = self.epoch if self.epoch is not None else int(time.time())
        entries: list[tuple[tarfile.TarInfo, bytes | None, str | None]] = []
        for d in missing:
            ti = tarfile.TarInfo(d.lstrip("/"))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            entries.append((ti, None, None))
        layer = self._layer_from_entries(entries)
        self._apply(state, layer)
        new = self._with_layer(state, layer, created_by)
        change(new.cfg)
        return self._store(key, state, new, created_by, size=layer["size"])

    def _missing_dirs(self, state: ImageState, path: str) -> list[str]:
        """The directories on the way to `path` that the image lacks, parents first."""
        parts = [p for p in path.split("/") if p]
        prefixes = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
        if not state.chain_id:
            return prefixes
        with self._mounted(state.chain_id) as root:
            ctx = Context(root, owned=False)
            for i, prefix in enumerate(prefixes):
                host = ctx.resolve(prefix)
                if not os.path.lexists(host):
                    return prefixes[i:]
                if not os.path.isdir(host):
                    return []  # a file in the way: the run that needs it reports it
        return []

    def _i_user(self, state: ImageState, inst: Instruction) -> ImageState:
        user = self.word(state, inst.args[0])

        def change(cfg: dict[str, Any]) -> None:
            cfg["User"] = user

        return self._meta(state, "USER " + user, change)

    def _i_stopsignal(self, state: ImageState, inst: Instruction) -> ImageState:
        sig = self.word(state, inst.args[0])
        if not _valid_signal(sig):
            raise InvalidArgument(f"Invalid signal: {sig}")

        def change(cfg: dict[str, Any]) -> None:
            cfg["StopSignal"] = sig

        return self._meta(state, "STOPSIGNAL " + sig, change)

    def _i_healthcheck(self, state: ImageState, inst: Instruction) -> ImageState:
        if inst.args[0] == "NONE":
            check: dict[str, Any] = {"Test": ["NONE"]}
        else:
            test = ["CMD", *inst.args[1:]] if inst.json else ["CMD-SHELL", inst.args[1]]
            check = {"Test": test}
            for flag, key in (
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start-period", "StartPeriod"),
                ("start-interval", "StartInterval"),
            ):
                value = inst.flag(flag)
                if value:
                    ns = _duration_ns(value, flag)
                    check[key] = ns
            retries = inst.flag("retries")
            if retries:
                if not retries.isdigit() or int(retries) < 1:
                    raise InvalidArgument("--retries must be at least 1")
                check["Retries"] = int(retries)

        def change(cfg: dict[str, Any]) -> None:
            cfg["Healthcheck"] = check

        return self._meta(state, "HEALTHCHECK " + json.dumps(check, sort_keys=True), change)

    def _i_onbuild(self, state: ImageState, inst: Instruction) -> ImageState:
        text = inst.args[0]

        def change(cfg: dict[str, Any]) -> None:
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), text]

        return self._meta(state, "ONBUILD " + text, change)

    # RUN ------------------------------------------------------------------------------

    def _arg_env_list(self) -> list[str]:
        return [f"{k}={v}" for k, v in sorted(self.args.items())]

    def _i_run(self, state: ImageState, inst: Instruction) -> ImageState:
        if inst.heredocs and not inst.json:
            command = self._heredoc_command(state, inst)
        else:
            command = self._command(state, inst)
        # the build args a RUN sees are part of its identity (Docker's `|N A=b` prefix)
        arg_env = [
            f"{k}={v}"
            for k, v in sorted(self.args.items())
            if k not in {e.partition("=")[0] for e in state.cfg.get("Env") or []}
            and k not in PLATFORM_ARGS
        ]
        created_by = " ".join(command)
        if arg_env:
            created_by = f"|{len(arg_env)} {' '.join(arg_env)} {created_by}"
        key = step_key(
            state.image_id, created_by, [inst.flag("network") or "", self.opts.network_mode]
        )
        hit = self._cached(key, state, empty=False, created_by=created_by)
        if hit is not None:
            return hit
        env = list(state.cfg.get("Env") or [])
        names = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in names]
        layer = self._run_container(state, command, env, inst)
        new = self._with_layer(state, layer, created_by)
        return self._store(key, state, new, created_by, size=layer["size"])

    def _heredoc_command(self, state: ImageState, inst: Instruction) -> list[str]:
        rest = inst.args[0] if inst.args else ""
        shell = self._shell(state)
        if len(inst.heredocs) == 1 and rest.strip() in (
            f"<<{d}" for d in _marker_forms(inst.heredocs[0])
        ):
            body = inst.heredocs[0].content
            if body.startswith("#!"):
                # a script with its own interpreter: run it as a file, as BuildKit does
                return [
                    *shell,
                    f"cat > /tmp/.skiff-heredoc <<'SKIFFEOF'\n{body}SKIFFEOF\nchmod +x /tmp/.skiff-heredoc && /tmp/.skiff-heredoc; rc=$?; rm -f /tmp/.skiff-heredoc; exit $rc",
                ]
            return [*shell, body]
        # the shell itself reads heredocs: hand it the command with the bodies
        text = rest
        for doc in inst.heredocs:
            text += "\n" + doc.content + doc.name
        return [*shell, text]

    def _run_container(
        self, state: ImageState, command: list[str], env: list[str], inst: Instruction
    ) -> dict[str, Any]:
        if not command:
            raise InvalidArgument("no command specified")
        cid = "build-" + secrets.token_hex(16)
        key = cid
        parent = state.chain_id
        client = self.client
        sn = self.b.snapshotter
        mounts = self._prepare(key, parent)
        created = False
        io_: FifoIO | None = None
        try:
            user = self._user_ids(state, state.cfg.get("User") or "")
            spec = self._spec(cid, command, env, state.cfg.get("WorkingDir") or "/", user, inst)
            client.create_container(
                cid,
                spec=spec,
                runtime=self.b.runtime,
                runtime_options=self.b.runtime_options,
                snapshotter=sn,
                snapshot_key=key,
                labels={"skiff.build": "1"},
            )
            created = True
            self.say(f" ---> Running in {cid[6:18]}\n")
            writer = _StreamWriter(self.out) if not self.opts.quiet else _Discard()
            io_ = FifoIO(cid, stdin=None, stdout=writer, stderr=writer, base=self.b.workdir)  # type: ignore[arg-type]
            client.create_task(
                cid,
                rootfs=mounts,
                stdout=io_.stdout_path,
                stderr=io_.stderr_path,
                options=self.b.runtime_options,
            )
            client.start_task(cid)
            status = client.wait_task(cid)
            io_.wait_output()
            with contextlib.suppress(NotFound):
                client.delete_task(cid)
            code = status.code
            if code != 0:
                shown = " ".join(command) if not inst.json else json.dumps(command)
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}")
            layer = self._diff(key, parent)
            name = _chain_after(state.diff_ids, layer["diff_id"])
            try:
                client.commit_snapshot(sn, name, key)
            except AlreadyExists:
                pass
            return layer
        finally:
            if io_ is not None:
                io_.close()
            if created:
                with contextlib.suppress(NotFound, FailedPrecondition):
                    client.delete_task(cid)
                with contextlib.suppress(NotFound):
                    client.delete_container(cid)
                self.say(f"Removing intermediate container {cid[6:18]}\n")
            with contextlib.suppress(NotFound, FailedPrecondition):
                client.remove_snapshot(sn, key)

    def _spec(
        self,
        cid: str,
        command: list[str],
        env: list[str],
        cwd: str,
        user: tuple[int, int],
        inst: Instruction,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = copy.deepcopy(dict(default_spec()))
        process = spec["process"]
        process["terminal"] = False
        process["args"] = command
        process["env"] = env if any(e.startswith("PATH=") for e in env) else [DEFAULT_PATH, *env]
        process["cwd"] = cwd
        process["user"] = {"uid": user[0], "gid": user[1]}
        caps = list(DEFAULT_CAPS)
        process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        spec["hostname"] = cid[6:18]
        spec["root"] = {"path": "rootfs", "readonly": False}
        spec["linux"]["cgroupsPath"] = f"/skiff-build/{cid}"
        network = inst.flag("network") or self.opts.network_mode or "default"
        if network not in ("none",):
            # builds share the host's network (as `--network=host`): no bridge per step
            spec["linux"]["namespaces"] = [
                n for n in spec["linux"]["namespaces"] if n["type"] != "network"
            ]
            if os.path.exists("/etc/resolv.conf"):
                spec["mounts"].append(
                    {
                        "destination": "/etc/resolv.conf",
                        "type": "bind",
                        "source": "/etc/resolv.conf",
                        "options": ["rbind", "ro"],
                    }
                )
        if self.opts.extra_hosts:
            hosts = os.path.join(self.b.workdir, cid + ".hosts")
            with open(hosts, "w") as f:
                f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
                for entry in self.opts.extra_hosts:
                    name, _, ip = entry.partition(":")
                    f.write(f"{ip}\t{name}\n")
            spec["mounts"].append(
                {
                    "destination": "/etc/hosts",
                    "type": "bind",
                    "source": hosts,
                    "options": ["rbind", "ro"],
                }
            )
        if self.opts.shm_size:
            for m in spec["mounts"]:
                if m["destination"] == "/dev/shm":
                    m["options"] = [
                        o for o in m.get("options", []) if not o.startswith("size=")
                    ] + [f"size={self.opts.shm_size}"]
        return spec

    def _diff(self, key: str, parent: str) -> dict[str, Any]:
        client = self.client
        sn = self.b.snapshotter
        upper = client.snapshot_mounts(sn, key)
        view = ""
        lower: list[ClientMount] = []
        if parent:
            view = f"build-view-{secrets.token_hex(8)}"
            lower = client.view_snapshot(sn, view, parent)
        try:
            desc = client.compute_diff(lower, upper, media_type=mt.OCI_LAYER_GZIP)
        finally:
            if view:
                with contextlib.suppress(NotFound):
                    client.remove_snapshot(sn, view)
        diff_id = desc.annotations.get("containerd.io/uncompressed", "") if desc.annotations else ""
        if not diff_id:
            info = client.content_info(str(desc.digest))
            diff_id = info.labels.get("containerd.io/uncompressed", "")
        layer = {
            "mediaType": mt.DOCKER_LAYER_GZIP,
            "digest": str(desc.digest),
            "size": desc.size,
            "diff_id": diff_id,
        }
        if self.epoch is not None or not diff_id:
            layer = self._rewrite_layer(layer)
        return layer

    def _rewrite_layer(self, layer: dict[str, Any]) -> dict[str, Any]:
        """Re-tar a layer in name order with times clamped to SOURCE_DATE_EPOCH
        (and a fixed gzip header), so equal inputs give equal bytes."""
        with tempfile.TemporaryFile(dir=self.b.workdir) as raw:
            with (
                self.store.open(layer["digest"]) as src,
                gzip.GzipFile(fileobj=src, mode="rb") as gz,
            ):
                shutil.copyfileobj(gz, raw)
            raw.seek(0)
            with tarfile.open(fileobj=raw, mode="r:") as tin:
                members = sorted(tin.getmembers(), key=lambda m: m.name)
                entries = []
                for m in members:
                    data = tin.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
                    entries.append((m, data))
            return self._write_layer_entries(entries)

    def _write_layer_entries(
        self, entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]
    ) -> dict[str, Any]:
        with tempfile.TemporaryFile(dir=self.b.workdir) as f:
            diff = hashlib.sha256()
            hasher = _Tee(f, diff)
            with gzip.GzipFile(fileobj=_CountingSink(f), mode="wb", mtime=0, filename="") as gz:
                sink = _Tee(gz, diff)
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tout:  # type: ignore[call-overload]
                    for m, data in entries:
                        if self.epoch is not None:
                            m.mtime = min(int(m.mtime), self.epoch)
                            m.pax_headers = {
                                k: v
                                for k, v in m.pax_headers.items()
                                if k not in ("mtime", "atime", "ctime")
                            }
                        tout.addfile(m, io.BytesIO(data) if data is not None else None)
            del hasher
            f.seek(0)
            return self._ingest_layer(f, "sha256:" + diff.hexdigest())

    def _ingest_layer(self, f: BinaryIO, diff_id: str) -> dict[str, Any]:
        h = hashlib.sha256()
        size = 0
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        f.seek(0)
        if not self.store.exists(digest):
            try:
                w = self.store.writer(f"build-layer-{digest}", total=size, expected=digest)
            except AlreadyExists:
                w = None
            if w is not None:
                with w:
                    if w.offset:
                        w.truncate(0)
                    while chunk := f.read(1 << 20):
                        w.write(chunk)
                    with contextlib.suppress(AlreadyExists):
                        w.commit(size, Digest(digest), {"containerd.io/uncompressed": diff_id})
        return {
            "mediaType": mt.DOCKER_LAYER_GZIP,
            "digest": digest,
            "size": size,
            "diff_id": diff_id,
        }

    # COPY / ADD -------------------------------------------------------------------

    def _i_copy(self, state: ImageState, inst: Instruction) -> ImageState:
        return self._copy(state, inst, add=False)

    def _i_add(self, state: ImageState, inst: Instruction) -> ImageState:
        return self._copy(state, inst, add=True)

    def _copy(self, state: ImageState, inst: Instruction, *, add: bool) -> ImageState:
        what = inst.keyword
        env = self.env(state)
        raw = list(inst.args)
        heredoc_names = {d.name: d for d in inst.heredocs}
        dest_raw = raw[-1] if inst.json else self.lex.process_word(raw[-1], env)
        srcs_raw = raw[:-1]
        dest_dir = dest_raw.endswith("/") or dest_raw.endswith("/.") or dest_raw in (".", "..")
        workdir = state.cfg.get("WorkingDir") or "/"
        dest = posixpath.normpath(
            posixpath.join(workdir, dest_raw) if not dest_raw.startswith("/") else dest_raw
        )
        chown = inst.flag("chown")
        chown = self.lex.process_word(chown, env) if chown else None
        chmod = inst.flag("chmod")
        mode = None
        if chmod:
            try:
                mode = int(chmod, 8)
            except ValueError:
                raise InvalidArgument(f"invalid chmod parameter: {chmod}") from None
        from_ = inst.flag("from") if not add else None
        from_ = self.lex.process_word(from_, {**self.meta, **env}) if from_ else None

        with contextlib.ExitStack() as stack:
            rootfs_cache: dict[str, str] = {}

            def parent_root() -> str:
                if "parent" not in rootfs_cache:
                    rootfs_cache["parent"] = stack.enter_context(self._mounted(state.chain_id))
                return rootfs_cache["parent"]

            # sources: (display name, host path, is heredoc content)
            sources: list[tuple[str, str]] = []
            heredoc_data: list[tuple[str, bytes]] = []
            urls: list[str] = []
            source_root = self.ctx.root
            if from_:
                ref = stages_mod.stage_ref(from_, self.plan.stages, self.names, self.stage_index)
                if ref is not None:
                    other = self.states.get(ref)
                    if other is None:
                        raise InvalidArgument(f"stage {from_} was not built")
                    source_root = stack.enter_context(self._mounted(other.chain_id))
                else:
                    image = self._resolve_image(from_, "")
                    source_root = stack.enter_context(self._mounted(image.chain_id))
                src_ctx = Context(source_root, owned=False)
            else:
                src_ctx = self.ctx
            for s in srcs_raw:
                m = _heredoc_ref(s)
                if m is not None and m in heredoc_names:
                    doc = heredoc_names[m]
                    body = (
                        self.lex.process_word(doc.content, env)
                        if doc.expand and "$" in doc.content
                        else doc.content
                    )
                    heredoc_data.append((m, body.encode()))
                    continue
                word = s if inst.json else self.lex.process_word(s, env)
                if add and re.match(r"^https?://", word):
                    urls.append(word)
                    continue
                if add and re.match(r"^git@|^[a-z]+://", word):
                    raise InvalidArgument(f"{what} failed: unsupported source {word}")
                found = src_ctx.sources(word, what=what)
                if not found and any(c in word for c in "*?["):
                    continue
                sources.extend(found)
            count = len(sources) + len(heredoc_data) + len(urls)
            if count == 0:
                raise InvalidArgument(f"{what} failed: no source files were specified")
            if count > 1 and not dest_dir:
                raise InvalidArgument(
                    f"When using {what} with more than one source file, the destination must be a directory and end with a /"
                )
            # first what identifies the step (content digests), so that a cache hit
            # needs no mount of the parent (a cost of tens of ms per step)
            digests: list[str] = []
            fetched: list[tuple[bytes, str, int]] = []
            for _name, data in heredoc_data:
                digests.append("heredoc:" + hashlib.sha256(data).hexdigest())
            for url in urls:
                data, fname, mtime = _fetch(url, what)
                fetched.append((data, fname, mtime))
                digests.append("url:" + hashlib.sha256(data).hexdigest())
            for rel, host in sources:
                st = os.lstat(host) if os.path.lexists(host) else None
                if st is None:
                    raise NotFound(
                        f"{what} failed: file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist"
                    )
                digests.append(
                    ("dir:" if stat.S_ISDIR(st.st_mode) else "file:")
                    + src_ctx.digest(host).split(":", 1)[1]
                )
            kind = "multi" if len(digests) > 1 else digests[0].split(":", 1)[0]
            hexes = "".join(digests)
            sig = (
                hashlib.sha256(hexes.encode()).hexdigest()
                if len(digests) > 1
                else digests[0].split(":", 1)[1]
            )
            created_by = (
                f"{NOP}{what} {kind}:{sig} in {dest_raw if dest_raw.startswith('/') else dest} "
            )
            extra = [chown or "", chmod or "", from_ or ""]
            key = step_key(state.image_id, created_by, extra)
            hit = self._cached(key, state, empty=False, created_by=created_by)
            if hit is not None:
                return hit

            uid, gid = (0, 0)
            if chown:
                uid, gid = self._chown_ids(chown, parent_root)

            def into_dir() -> bool:
                """Whether a single file lands inside `dest` (Docker: when dest ends
                with / or is an existing directory)."""
                if dest_dir or count > 1:
                    return True
                if not state.chain_id:
                    return False
                host = Context(parent_root(), owned=False).resolve(dest)
                return os.path.isdir(host)

            entries: list[tuple[tarfile.TarInfo, bytes | None, str | None]] = []
            for name, data in heredoc_data:
                target = posixpath.join(dest, name) if into_dir() else dest
                ti = tarfile.TarInfo(target.lstrip("/"))
                ti.size, ti.mode, ti.uid, ti.gid = (
                    len(data),
                    mode if mode is not None else 0o644,
                    uid,
                    gid,
                )
                ti.mtime = self.epoch if self.epoch is not None else int(time.time())
                entries.append((ti, data, None))
            for data, fname, mtime in fetched:
                target = posixpath.join(dest, fname) if into_dir() else dest
                ti = tarfile.TarInfo(target.lstrip("/"))
                ti.size, ti.mode, ti.uid, ti.gid = (
                    len(data),
                    mode if mode is not None else 0o600,
                    uid,
                    gid,
                )
                ti.mtime = mtime
                entries.append((ti, data, None))
            for rel, host in sources:
                st = os.lstat(host)
                if stat.S_ISDIR(st.st_mode):
                    for ti, data_path in _tree_entries(
                        host, dest, uid, gid, mode, chown is not None
                    ):
                        entries.append((ti, None, data_path))
                elif add and _is_local_archive(host):
                    entries.extend(_archive_entries(host, dest))
                else:
                    target = posixpath.join(dest, posixpath.basename(rel)) if into_dir() else dest
                    ti = _tarinfo_for(host, target, uid, gid, mode, chown is not None)
                    entries.append((ti, None, host if ti.isreg() else None))
            layer = self._layer_from_entries(entries)
            self._apply(state, layer)
        new = self._with_layer(state, layer, created_by)
        return self._store(key, state, new, created_by, size=layer["size"])

    def _layer_from_entries(
        self, entries: list[tuple[tarfile.TarInfo, bytes | None, str | None]]
    ) -> dict[str, Any]:
        with tempfile.TemporaryFile(dir=self.b.workdir) as f:
            diff = hashlib.sha256()
            with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
                sink = _Tee(gz, diff)
                with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tout:  # type: ignore[call-overload]
                    for ti, data, path in sorted(entries, key=lambda e: e[0].name):
                        if self.epoch is not None:
                            ti.mtime = min(int(ti.mtime), self.epoch)
                        if data is not None:
                            tout.addfile(ti, io.BytesIO(data))
                        elif path is not None:
                            with open(path, "rb") as src:
                                tout.addfile(ti, src)
                        else:
                            tout.addfile(ti)
            f.seek(0)
            return self._ingest_layer(f, "sha256:" + diff.hexdigest())

    def _apply(self, state: ImageState, layer: dict[str, Any]) -> None:
        name = _chain_after(state.diff_ids, layer["diff_id"])
        sn = self.b.snapshotter
        try:
            self.client.stat_snapshot(sn, name)
            return
        except NotFound:
            pass
        key = f"build-apply-{secrets.token_hex(8)}"
        mounts = self._prepare(key, state.chain_id)
        try:
            applied = self.client.apply_diff(_descriptor(layer), mounts)
            if str(applied.digest) != layer["diff_id"]:
                raise FailedPrecondition(
                    f"layer applied as {applied.digest}, expected {layer['diff_id']}"
                )
            with contextlib.suppress(AlreadyExists):
                self.client.commit_snapshot(sn, name, key)
        finally:
            with contextlib.suppress(NotFound, FailedPrecondition):
                self.client.remove_snapshot(sn, key)

    def _prepare(self, key: str, parent: str, *, view: bool = False) -> list[ClientMount]:
        """Prepare (or view) a snapshot on `parent`; a parent that has gone (removed
        outside the builder) makes the remembered chains suspect."""
        sn = self.b.snapshotter
        try:
            if view:
                return self.client.view_snapshot(sn, key, parent)
            return self.client.prepare_snapshot(sn, key, parent)
        except NotFound:
            self.b.cache.verified.clear()
            raise

    @contextlib.contextmanager
    def _mounted(self, chain_id: str) -> Iterator[str]:
        """A read-only view of a snapshot chain mounted in a private directory."""
        target = tempfile.mkdtemp(prefix="view-", dir=self.b.workdir)
        if not chain_id:
            try:
                yield target
            finally:
                os.rmdir(target)
            return
        sn = self.b.snapshotter
        key = f"build-ro-{secrets.token_hex(8)}"
        mounts = self._prepare(key, chain_id, view=True)
        mounted = False
        try:
            imount.mount_all([_image_mount(m) for m in mounts], target)
            mounted = True
            yield target
        finally:
            if mounted:
                imount.unmount(target, detach=True)
            with contextlib.suppress(OSError):
                os.rmdir(target)
            with contextlib.suppress(NotFound):
                self.client.remove_snapshot(sn, key)

    def _chown_ids(self, chown: str, root: Callable[[], str]) -> tuple[int, int]:
        user, _, group = chown.partition(":")
        return _lookup_ids(user, group, root)

    def _user_ids(self, state: ImageState, user: str) -> tuple[int, int]:
        if not user:
            return (0, 0)
        name, _, group = user.partition(":")
        if name.isdigit() and (not group or group.isdigit()):
            return int(name), int(group) if group else _primary_gid_numeric(name)
        with self._mounted(state.chain_id) as root:
            return _lookup_ids(name, group, lambda: root, for_user=True)

    # -- results and the cache ---------------------------------------------------------

    def _with_layer(self, state: ImageState, layer: dict[str, Any], created_by: str) -> ImageState:
        new = ImageState(copy.deepcopy(state.config), list(state.layers))
        new.layers.append(
            {"mediaType": layer["mediaType"], "digest": layer["digest"], "size": layer["size"]}
        )
        rootfs = new.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), layer["diff_id"]]
        now = self.now()
        new.config["created"] = now
        new.config.setdefault("history", []).append({"created": now, "created_by": created_by})
        return new

    def _cached(
        self, key: str, state: ImageState, *, empty: bool, created_by: str
    ) -> ImageState | None:
        if self.opts.no_cache:
            return None
        entry = self.b.cache.get(key)
        if entry is not None and self._entry_usable(entry):
            self.touched.append((self.b.cache, entry))
            if entry.manifest_size:
                self.manifests[entry.image_id] = (Digest(entry.manifest), entry.manifest_size)
            self.say(" ---> Using cache\n")
            self.say(f" ---> {short(entry.image_id)}\n")
            return ImageState(entry.config, entry.layers, entry.image_id)
        return self._from_cache_images(state, empty=empty, created_by=created_by)

    def _entry_usable(self, entry: Entry) -> bool:
        if not entry.layers:
            return True
        return self._snapshot_exists(ImageState(entry.config, entry.layers).chain_id)

    def _snapshot_exists(self, chain_id: str) -> bool:
        verified = self.b.cache.verified
        if chain_id in verified:
            return True
        try:
            self.b.client.stat_snapshot(self.b.snapshotter, chain_id)
        except NotFound:
            return False
        verified.add(chain_id)
        return True

    def _store(
        self, key: str, parent: ImageState, new: ImageState, created_by: str, *, size: int
    ) -> ImageState:
        image_id, manifest = self._commit_image(new, root=True)
        new.image_id = image_id
        self.b.cache.put(
            Entry(
                key=key,
                parent=parent.image_id,
                description=created_by,
                image_id=image_id,
                manifest=manifest,
                config=new.config,
                layers=new.layers,
                size=size,
                manifest_size=self._last_manifest[1],
            )
        )
        if new.chain_id:
            self.b.cache.verified.add(new.chain_id)
        self.say(f" ---> {short(image_id)}\n")
        return new

    def _commit_image(self, state: ImageState, *, root: bool) -> tuple[str, str]:
        """Write config and manifest blobs with gc references; `root` keeps
        them (and the snapshot) alive without an image record."""
        config_bytes = json.dumps(state.config, separators=(",", ":"), sort_keys=True).encode()
        config_digest = self.store.write_blob(config_bytes)
        state.image_id = str(config_digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {
                "mediaType": mt.DOCKER_CONFIG,
                "digest": str(config_digest),
                "size": len(config_bytes),
            },
            "layers": state.layers,
        }
        manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
        manifest_digest = self.store.write_blob(manifest_bytes)
        labels = {"containerd.io/gc.ref.content.config": str(config_digest)}
        for i, layer in enumerate(state.layers):
            labels[f"containerd.io/gc.ref.content.l.{i}"] = layer["digest"]
        if state.chain_id:
            labels[f"containerd.io/gc.ref.snapshot.{self.b.snapshotter}"] = state.chain_id
        if root:
            labels[GC_ROOT] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.client.update_content_labels(str(manifest_digest), labels)
        if state.chain_id:
            self.client.update_content_labels(
                str(config_digest),
                {f"containerd.io/gc.ref.snapshot.{self.b.snapshotter}": state.chain_id},
            )
        self._last_manifest = (manifest_digest, len(manifest_bytes))
        return str(config_digest), str(manifest_digest)

    def _tag(self, image_id: str) -> list[str]:
        digest, size = self._last_manifest
        target = Descriptor(media_type=mt.DOCKER_MANIFEST, digest=digest, size=size)
        shown: list[str] = []
        names = []
        for tag in self.opts.tags:
            ref = parse_reference(tag)
            names.append((str(ref), ref.familiar()))
        if not names:
            names.append((f"moby-dangling@{digest}", ""))
        labels = {"skiff.build.image-id": image_id}
        for name, familiar in names:
            # a rebuild mostly moves an existing tag: try that first (one call)
            try:
                self.b.client.update_image(name, target, labels)
            except NotFound:
                try:
                    self.b.client.create_image(name, target, labels)
                except AlreadyExists:
                    self.b.client.update_image(name, target, labels)
            if familiar:
                shown.append(familiar)
        return shown

    def _load_cache_from(self) -> list[ImageState]:
        out = []
        for name in self.opts.cache_from:
            try:
                image = cimages.get_image(self.client, str(parse_reference(name)))
            except (NotFound, InvalidArgument):
                continue
            config = json.loads(self.store.read_all(image.config_descriptor.digest))
            out.append(
                ImageState(
                    config,
                    [_desc_json(d) for d in image.layers],
                    str(image.config_descriptor.digest),
                )
            )
        return out

    def _cache_from_entry(
        self, state: ImageState, *, empty: bool, created_by: str
    ) -> dict[str, Any] | None:
        """The next history entry of a --cache-from image whose history continues
        ours with this very step, if one does."""
        found = self._cache_from_candidate(state, empty=empty, created_by=created_by)
        return found[1] if found is not None else None

    def _cache_from_candidate(
        self, state: ImageState, *, empty: bool, created_by: str
    ) -> tuple[ImageState, dict[str, Any]] | None:
        history = state.config.get("history") or []
        diff_ids = state.diff_ids
        for cand in self.cache_from:
            ch = cand.config.get("history") or []
            cd = cand.diff_ids
            if len(ch) <= len(history) or cd[: len(diff_ids)] != diff_ids:
                continue
            if [h.get("created_by") for h in ch[: len(history)]] != [
                h.get("created_by") for h in history
            ]:
                continue
            nxt = ch[len(history)]
            if nxt.get("created_by") != created_by or bool(nxt.get("empty_layer")) != empty:
                continue
            if not empty and len(cd) <= len(diff_ids):
                continue
            return cand, nxt
        return None

    def _from_cache_images(
        self, state: ImageState, *, empty: bool, created_by: str
    ) -> ImageState | None:
        """--cache-from: an image whose history continues ours with this very
        step gives its layer (metadata steps are recomputed by _meta)."""
        if empty:
            return None
        found = self._cache_from_candidate(state, empty=empty, created_by=created_by)
        if found is None:
            return None
        cand, nxt = found
        n = len(state.diff_ids)
        layer = dict(cand.layers[n])
        layer["diff_id"] = cand.diff_ids[n]
        try:
            self._apply(state, layer)
        except (NotFound, FailedPrecondition):
            return None
        new = self._with_layer(state, layer, created_by)
        new.config["history"][-1] = dict(nxt)
        if nxt.get("created"):
            new.config["created"] = nxt["created"]
        image_id, _ = self._commit_image(new, root=True)
        self.say(" ---> Using cache\n")
        self.say(f" ---> {short(image_id)}\n")
        return new


# -- helpers --------------------------------------------------------------------------


def _delete_lease(client: Client, lease: str, touched: list[tuple[BuildCache, Entry]]) -> None:
    for cache, entry in touched:
        with contextlib.suppress(OSError):
            cache.touch(entry)
    if lease:
        with contextlib.suppress(Exception):  # the daemon may be closing its channel
            client.delete_lease(lease)


def lambda_desc(kw: str, text: str) -> str:
    return f"{kw} {text}"


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


class _Tee:
    def __init__(self, dst: Any, h: Any) -> None:
        self.dst = dst
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        self.dst.write(data)
        return len(data)


class _CountingSink:
    def __init__(self, dst: Any) -> None:
        self.dst = dst

    def write(self, data: bytes) -> int:
        self.dst.write(data)
        return len(data)

    def flush(self) -> None:
        pass


def _marker_forms(doc: Any) -> list[str]:
    dash = "-" if doc.chomp else ""
    if doc.expand:
        return [f"{dash}{doc.name}"]
    return [f"{dash}'{doc.name}'", f'{dash}"{doc.name}"']


def _heredoc_ref(word: str) -> str | None:
    m = re.match(r"^<<-?(['\"]?)([A-Za-z_][A-Za-z0-9_.-]*)\1$", word)
    return m.group(2) if m else None


def _chain_after(diff_ids: list[str], new: str) -> str:
    return str(chain_ids([Digest(d) for d in [*diff_ids, new]])[-1])


def _desc_json(d: Descriptor) -> dict[str, Any]:
    return {"mediaType": d.media_type, "digest": str(d.digest), "size": d.size}


def _descriptor(layer: Mapping[str, Any]) -> Descriptor:
    return Descriptor(
        media_type=layer["mediaType"], digest=Digest(layer["digest"]), size=int(layer["size"])
    )


def _image_mount(m: ClientMount) -> imount.Mount:
    return imount.Mount(type=m.type, source=m.source, options=list(m.options))


def _valid_signal(sig: str) -> bool:
    import signal as _signal

    if sig.isdigit():
        return 0 < int(sig) < 65
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
        return True
    return hasattr(_signal, name)


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _duration_ns(value: str, flag: str) -> int:
    total = 0.0
    rest = value
    if rest == "0":
        return 0
    while rest:
        m = re.match(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", rest)
        if not m:
            raise InvalidArgument(f'time: invalid duration "{value}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        rest = rest[m.end() :]
    ns = int(total)
    if 0 < ns < 1_000_000 and flag != "start-interval":
        raise InvalidArgument(f'Interval "{flag}" cannot be less than 1ms')
    return ns


def _tarinfo_for(
    host: str, target: str, uid: int, gid: int, mode: int | None, chowned: bool
) -> tarfile.TarInfo:
    st = os.lstat(host)
    ti = tarfile.TarInfo(target.lstrip("/") or ".")
    ti.mtime = int(st.st_mtime)
    ti.uid, ti.gid = uid, gid
    perm = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(host)
    elif stat.S_ISREG(st.st_mode):
        ti.size = st.st_size
    else:
        raise InvalidArgument(f"{target}: unsupported file type in build context")
    ti.mode = mode if mode is not None and not ti.issym() else perm
    return ti


def _tree_entries(
    root: str, dest: str, uid: int, gid: int, mode: int | None, chowned: bool
) -> Iterator[tuple[tarfile.TarInfo, str | None]]:
    """A directory source: its contents (not itself) land in `dest`; dest
    itself is made as Docker makes it."""
    if dest != "/":
        ti = _tarinfo_for(root, dest, uid, gid, mode, chowned)
        yield ti, None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            host = os.path.join(dirpath, name)
            target = posixpath.normpath(posixpath.join(dest, "" if rel == "." else rel, name))
            ti = _tarinfo_for(host, target, uid, gid, mode, chowned)
            yield ti, host if ti.isreg() else None


def _is_local_archive(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _archive_entries(
    path: str, dest: str
) -> list[tuple[tarfile.TarInfo, bytes | None, str | None]]:
    """ADD of a local archive: its entries, under dest; nothing may climb out of dest."""
    out: list[tuple[tarfile.TarInfo, bytes | None, str | None]] = []
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for m in tar:
                name = posixpath.normpath(posixpath.join(dest, m.name.lstrip("/")))
                if name != dest and not name.startswith(dest.rstrip("/") + "/"):
                    raise InvalidArgument(f"ADD failed: archive entry {m.name!r} escapes {dest}")
                if m.islnk():
                    link = posixpath.normpath(posixpath.join(dest, m.linkname.lstrip("/")))
                    m.linkname = link.lstrip("/")
                data = tar.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
                m.name = name.lstrip("/") or "."
                if m.name == ".":
                    continue
                out.append((m, data, None))
    except tarfile.TarError:
        # not really an archive after all: Docker copies it as a file
        return [
            (
                _tarinfo_for(path, posixpath.join(dest, os.path.basename(path)), 0, 0, None, False),
                None,
                path,
            )
        ]
    return out


def _fetch(url: str, what: str) -> tuple[bytes, str, int]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = r.read()
            modified = r.headers.get("Last-Modified")
    except urllib.error.HTTPError as e:
        raise BuildError(
            f"{what} failed: failed to GET {url} with status {e.code} {e.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(f"{what} failed: failed to GET {url}: {reason}") from None
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
    mtime = 0
    if modified:
        import email.utils

        with contextlib.suppress(TypeError, ValueError):
            mtime = int(email.utils.parsedate_to_datetime(modified).timestamp())
    return data, name, mtime


def _read_db(root: str, path: str) -> list[list[str]]:
    host = Context(root, owned=False).resolve(path)
    try:
        with open(host, encoding="utf-8", errors="replace") as f:
            return [
                line.rstrip("\n").split(":")
                for line in f
                if line.strip() and not line.startswith("#")
            ]
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []


def _primary_gid_numeric(uid: str) -> int:
    return 0  # a uid without a passwd entry runs with group 0, as runc does


def _lookup_ids(
    user: str, group: str, root: Callable[[], str], *, for_user: bool = False
) -> tuple[int, int]:
    uid: int
    gid: int | None = None
    if user.isdigit():
        uid = int(user)
        if not group:
            gid = 0 if for_user else uid
    else:
        for fields in _read_db(root(), "/etc/passwd"):
            if len(fields) >= 4 and fields[0] == user:
                uid = int(fields[2])
                if not group and for_user:
                    gid = int(fields[3])
                elif not group:
                    # COPY --chown=name: the group of that name (dockerd's classic
                    # builder), else the numeric uid (the Dockerfile reference)
                    gid = next(
                        (
                            int(g[2])
                            for g in _read_db(root(), "/etc/group")
                            if len(g) >= 3 and g[0] == user
                        ),
                        uid,
                    )
                break
        else:
            if for_user:
                raise BuildError(f"unable to find user {user}: no matching entries in passwd file")
            raise BuildError(
                f"unable to convert uid/gid chown string to host mapping: can't find uid for user {user}: no such user: {user}"
            )
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for fields in _read_db(root(), "/etc/group"):
                if len(fields) >= 3 and fields[0] == group:
                    gid = int(fields[2])
                    break
            else:
                raise BuildError(f"unable to find group {group}: no matching entries in group file")
    assert gid is not None
    return uid, gid
