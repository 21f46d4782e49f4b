"""Containers and tasks made the way `ctr run` makes them: an OCI runtime spec
from containerd's defaults and the image config (Env, Entrypoint/Cmd,
WorkingDir, User), a snapshot prepared on the image's chain, and a task whose
stdio goes through FIFOs that this process copies to and from its own.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Mapping, Sequence

from skiff.containerd.client._defaults import DEFAULT_RUNTIME, DEFAULT_SNAPSHOTTER
from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from skiff.oci.runtime_spec import default_spec

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of run's start-up)
if TYPE_CHECKING:  # not at run time: skiff-ctr run drives these with the lean client
    from typing import Any, BinaryIO

    from skiff.containerd.client.core import Client
    from skiff.containerd.client.images import ResolvedImage
    from skiff.containerd.client.types import Container

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# containerd's default capability set (narrower than runc's `spec`)
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]


class RunOptions:
    """How to run: the command line's part of the spec and the container record.
    A plain class rather than a dataclass: importing dataclasses (with inspect)
    costs skiff-ctr run 10 ms."""

    __slots__ = (
        "args",
        "cwd",
        "env",
        "hostname",
        "labels",
        "mounts",
        "net_host",
        "privileged",
        "readonly",
        "runtime",
        "runtime_options",
        "snapshotter",
        "terminal",
        "user",
    )

    def __init__(
        self,
        *,
        args: Sequence[str] = (),  # replaces the image's Entrypoint+Cmd when given
        env: Sequence[str] = (),
        terminal: bool = False,
        cwd: str = "",
        user: str = "",
        hostname: str = "",
        readonly: bool = False,
        privileged: bool = False,
        net_host: bool = False,
        mounts: Sequence[Mapping[str, Any]] = (),
        labels: Mapping[str, str] | None = None,
        runtime: str = DEFAULT_RUNTIME,
        runtime_options: tuple[str, bytes] | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
    ) -> None:
        self.args = args
        self.env = env
        self.terminal = terminal
        self.cwd = cwd
        self.user = user
        self.hostname = hostname
        self.readonly = readonly
        self.privileged = privileged
        self.net_host = net_host
        self.mounts = mounts
        self.labels: Mapping[str, str] = labels if labels is not None else {}
        self.runtime = runtime
        self.runtime_options = runtime_options
        self.snapshotter = snapshotter


class RunImage:
    """What running needs of an image (its name, top chain ID and process
    defaults), read from a plain manifest's JSON without skiff.oci.image (whose
    dataclasses cost skiff-ctr run 20 ms to import). Anything irregular goes to
    images.get_image instead, which gives the canonical errors."""

    __slots__ = ("chain_id", "cmd", "entrypoint", "env", "name", "user", "working_dir")

    def __init__(self, name: str, chain_id: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.chain_id = chain_id
        self.env: tuple[str, ...] = tuple(config.get("Env") or ())
        self.entrypoint: tuple[str, ...] = tuple(config.get("Entrypoint") or ())
        self.cmd: tuple[str, ...] = tuple(config.get("Cmd") or ())
        self.working_dir = str(config.get("WorkingDir") or "")
        self.user = str(config.get("User") or "")


_PLAIN_MANIFESTS = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
_MAX_JSON = 4 * 1024 * 1024  # skiff.oci.mediatypes.MAX_MANIFEST_SIZE


def _is_sha256(value: object) -> bool:
    text = value if isinstance(value, str) else ""
    return (
        len(text) == 71
        and text.startswith("sha256:")
        and all(c in "0123456789abcdef" for c in text[7:])
    )


def quick_image(client: Client, name: str) -> RunImage | None:
    """The image for a run, or None when its record is not a plain, well-formed
    manifest (an index, say): then images.get_image must resolve it."""
    import json

    image = client.get_image(name)
    target = image.target
    if target.media_type not in _PLAIN_MANIFESTS or target.size > _MAX_JSON:
        return None

    def read(digest: str) -> Any:
        if client.content_info(digest).size > _MAX_JSON:
            return None
        try:
            return json.loads(b"".join(client.read_content(digest)))
        except ValueError:
            return None

    manifest = read(str(target.digest))
    if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
        return None
    if manifest.get("mediaType", target.media_type) not in _PLAIN_MANIFESTS:
        return None
    config_desc = manifest.get("config")
    layers = manifest.get("layers") or []
    if not isinstance(config_desc, dict) or not _is_sha256(config_desc.get("digest")):
        return None
    config = read(config_desc["digest"])
    if not isinstance(config, dict) or not isinstance(config.get("rootfs") or {}, dict):
        return None
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    process = config.get("config") or {}
    if (
        not isinstance(diff_ids, list)
        or not isinstance(layers, list)
        or len(diff_ids) != len(layers)
        or not all(_is_sha256(d) for d in diff_ids)
        or not isinstance(process, dict)
    ):
        return None
    return RunImage(image.name, top_chain_id(diff_ids), process)


def top_chain_id(diff_ids: Sequence[str]) -> str:
    """The ChainID of the last layer, as skiff.oci.image.chain_ids computes it:
    sha256 of "<parent chain> <diff id>" (hashlib only for a second layer)."""
    chain = ""
    for diff_id in diff_ids:
        if chain:
            import hashlib

            chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        else:
            chain = diff_id
    return chain


def _parse_user(user: str) -> tuple[int, int]:
    name, _, group = user.partition(":")
    try:
        uid = 0 if name in ("", "root") else int(name)
        gid = 0 if group in ("", "root") else int(group)
    except ValueError:
        raise InvalidArgument(f"user {user!r}: only numeric uid[:gid] is supported") from None
    return uid, gid


def _merge_env(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    out: dict[str, str] = {}
    for item in [*base, *extra]:
        key = item.split("=", 1)[0]
        out[key] = item
    return list(out.values())


def generate_spec(
    container_id: str,
    namespace: str,
    image: ResolvedImage | RunImage | None,
    options: RunOptions,
) -> dict[str, Any]:
    """The runtime spec ctr would give: containerd's defaults, then the image
    config, then the command line."""
    spec: dict[str, Any] = copy.deepcopy(dict(default_spec()))
    spec.pop("hostname", None)
    process = spec["process"]
    process["terminal"] = options.terminal
    process["capabilities"] = {
        "bounding": list(DEFAULT_CAPS),
        "effective": list(DEFAULT_CAPS),
        "permitted": list(DEFAULT_CAPS),
    }
    process["env"] = [DEFAULT_PATH]
    process["args"] = []
    spec["mounts"].append(
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        }
    )
    spec["linux"]["cgroupsPath"] = f"/{namespace}/{container_id}"
    if image is not None:
        cfg = image if isinstance(image, RunImage) else image.config.config
        if cfg.env:
            process["env"] = _merge_env([DEFAULT_PATH], list(cfg.env))
        process["args"] = [*cfg.entrypoint, *cfg.cmd]
        process["cwd"] = cfg.working_dir or "/"
        if cfg.user:
            uid, gid = _parse_user(cfg.user)
            process["user"] = {"uid": uid, "gid": gid}
    if options.terminal:
        process["env"] = _merge_env(process["env"], ["TERM=xterm"])
    if options.args:
        process["args"] = list(options.args)
    if options.env:
        process["env"] = _merge_env(process["env"], list(options.env))
    if options.cwd:
        process["cwd"] = options.cwd
    if options.user:
        uid, gid = _parse_user(options.user)
        process["user"] = {"uid": uid, "gid": gid}
    if options.hostname:
        spec["hostname"] = options.hostname
    if options.readonly:
        spec["root"]["readonly"] = True
    else:
        spec["root"]["readonly"] = False
    if options.net_host:
        spec["linux"]["namespaces"] = [
            ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network"
        ]
        spec["mounts"].append(
            {
                "destination": "/etc/resolv.conf",
                "type": "bind",
                "source": "/etc/resolv.conf",
                "options": ["rbind", "ro"],
            }
        )
    if options.privileged:
        spec["linux"].pop("maskedPaths", None)
        spec["linux"].pop("readonlyPaths", None)
        spec["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    for m in options.mounts:
        spec["mounts"].append(dict(m))
    if not process["args"]:
        raise InvalidArgument("no command specified")
    return spec


def new_container(
    client: Client,
    container_id: str,
    image_name: str | None,
    options: RunOptions,
) -> Container:
    """Create the container record with a fresh snapshot on the image."""
    try:
        client.get_container(container_id)
    except NotFound:
        pass
    else:
        raise AlreadyExists(f'container "{container_id}": already exists')
    image: ResolvedImage | RunImage | None = None
    snapshot_key = ""
    if image_name:
        try:
            image = quick_image(client, image_name)
            if image is None:
                from skiff.containerd.client.images import get_image

                image = get_image(client, image_name)
        except NotFound:
            raise NotFound(f'image "{image_name}": not found') from None
        try:
            client.stat_snapshot(options.snapshotter, image.chain_id)
        except NotFound:
            from skiff.containerd.client.images import get_image, unpack

            if isinstance(image, RunImage):
                image = get_image(client, image_name)  # unpack wants the layers too
            unpack(client, image, options.snapshotter)
        snapshot_key = container_id
    spec = generate_spec(container_id, client.namespace, image, options)
    if image is not None:
        client.prepare_snapshot(options.snapshotter, snapshot_key, image.chain_id)
    try:
        return client.create_container(
            container_id,
            spec=spec,
            image=image.name if image else "",
            runtime=options.runtime,
            runtime_options=options.runtime_options,
            snapshotter=options.snapshotter if image else "",
            snapshot_key=snapshot_key,
            labels=options.labels,
        )
    except BaseException:
        if snapshot_key:
            with contextlib.suppress(Exception):
                client.remove_snapshot(options.snapshotter, snapshot_key)
        raise


def remove_container(client: Client, container_id: str, *, keep_snapshot: bool = False) -> None:
    """Delete the record and, unless asked not to, its snapshot (as ctr does)."""
    container = client.get_container(container_id)
    client.delete_container(container_id)
    if container.snapshot_key and not keep_snapshot:
        with contextlib.suppress(NotFound):
            client.remove_snapshot(container.snapshotter, container.snapshot_key)


def rootfs_of(client: Client, container: Container) -> list[Any]:
    if not container.snapshot_key:
        return []
    return list(client.snapshot_mounts(container.snapshotter, container.snapshot_key))


# -- stdio through FIFOs -----------------------------------------------------------


class FifoIO:
    """A process's stdio as FIFOs in a private directory, copied by threads.

    Readers open their FIFO blocking (the open returns when the shim opens
    the other end); `close` unblocks any open that never completed.
    """

    def __init__(
        self,
        name: str,
        *,
        stdin: BinaryIO | None,
        stdout: BinaryIO | None,
        stderr: BinaryIO | None,
        terminal: bool = False,
        base: str | None = None,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="skiff-ctr-", dir=base)
        os.chmod(self.dir, 0o700)
        self.stdin_path = self.stdout_path = self.stderr_path = ""
        self._threads: list[threading.Thread] = []
        self._out_threads: list[threading.Thread] = []
        self.stdin_done = threading.Event()
        tag = f"{name}-{os.urandom(4).hex()}"  # not secrets: its hmac import costs ctr run 3 ms
        if stdin is not None:
            self.stdin_path = self._mkfifo(f"{tag}-stdin")
            self._spawn(self._copy_in, stdin, self.stdin_path, out=False)
        if stdout is not None:
            self.stdout_path = self._mkfifo(f"{tag}-stdout")
            self._spawn(self._copy_out, self.stdout_path, stdout, out=True)
        if stderr is not None and not terminal:
            self.stderr_path = self._mkfifo(f"{tag}-stderr")
            self._spawn(self._copy_out, self.stderr_path, stderr, out=True)

    def _mkfifo(self, name: str) -> str:
        path = os.path.join(self.dir, name)
        os.mkfifo(path, 0o600)
        return path

    def _spawn(self, target: Any, *args: Any, out: bool) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)
        if out:
            self._out_threads.append(t)

    @staticmethod
    def _copy_out(path: str, dest: BinaryIO) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            while data := os.read(fd, 65536):
                dest.write(data)
                dest.flush()
        except OSError:
            pass
        finally:
            os.close(fd)

    def _copy_in(self, src: BinaryIO, path: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            src_fd = src.fileno()
            while data := os.read(src_fd, 65536):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        except OSError:
            pass
        finally:
            os.close(fd)
            self.stdin_done.set()

    def wait_output(self, timeout: float = 5.0) -> None:
        """Let the copiers drain what the process wrote before it exited."""
        for t in self._out_threads:
            t.join(timeout)

    def close(self) -> None:
        # a FIFO whose peer never came: open the other end so the thread's open returns
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                continue
            flags = os.O_RDONLY if name.endswith("-stdin") else os.O_WRONLY
            with contextlib.suppress(OSError):
                os.close(os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC))
        for t in self._out_threads:
            t.join(1.0)
        shutil.rmtree(self.dir, ignore_errors=True)


def new_task(
    client: Client,
    container: Container,
    io: FifoIO | None,
    *,
    terminal: bool = False,
    options: tuple[str, bytes] | None = None,
) -> int:
    """Create the container's task with its rootfs mounts and stdio; returns the pid."""
    return client.create_task(
        container.id,
        rootfs=rootfs_of(client, container),
        stdin=io.stdin_path if io else "",
        stdout=io.stdout_path if io else "",
        stderr=io.stderr_path if io else "",
        terminal=terminal,
        options=options,
    )


def require_stopped(client: Client, container_id: str) -> None:
    try:
        task = client.get_task(container_id)
    except NotFound:
        return
    if str(task.status) not in ("STOPPED", "CREATED", "UNKNOWN"):
        raise FailedPrecondition(
            f"task {container_id} must be stopped before deletion: {task.status}"
        )
