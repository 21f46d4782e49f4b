"""Pull and push whole images between a registry and a content store, and
unpack while pulling. Image layer; skiffd's image service and skiff-ctr
call these with the supervisor's store and snapshotter.

Layers download in parallel (RegistryOptions.concurrency). When a
snapshotter is given, an unpacker thread applies layer after layer while
its bytes are still arriving: it reads the ingest's data file as it grows,
and only sees the end of a layer once the blob has been verified and
committed, so a snapshot is never committed from bad bytes.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from skiff.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from skiff.image.registry import Endpoint, Progress, ProgressFn, RegistryClient
from skiff.image.unpack import apply_into, has_snapshot
from skiff.oci import mediatypes as mt
from skiff.oci import platform as plat
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor, Image, Index, Manifest, chain_ids
from skiff.oci.platform import Platform
from skiff.oci.reference import Reference
from skiff.oci.reference import parse as parse_reference


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    name: str
    target: Descriptor  # what the reference names: an index or a manifest
    manifest: Descriptor  # the manifest chosen for the platform
    config: Image
    config_digest: Digest
    chain_id: Digest | None = None  # top snapshot, when unpacked


class _Restarted(Exception):
    """The download started over; the bytes already read are void."""


class _Feed:
    """What an in-flight download tells its reader."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.path = ""
        self.offset = 0
        self.generation = 0
        self.done = False
        self.error: BaseException | None = None

    def update(self, **kw: Any) -> None:
        with self.cond:
            for k, v in kw.items():
                setattr(self, k, v)
            self.cond.notify_all()


class _FeedReader:
    """Reads a blob while it is being downloaded; EOF only after commit."""

    def __init__(self, feed: _Feed) -> None:
        self._feed = feed
        self._fd = -1
        self._pos = 0
        self._gen = -1

    def _wait(self) -> int:
        """Bytes available at our position once there are any (0: the end)."""
        f = self._feed
        with f.cond:
            while True:
                if f.error is not None:
                    raise f.error
                if self._gen == -1 and f.path:
                    self._gen = f.generation
                    try:
                        self._fd = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError:
                        # committed and moved before we looked: use the blob
                        while not f.done and f.error is None:
                            f.cond.wait()
                        if f.error is not None:
                            raise f.error
                        raise _Restarted()
                if self._fd < 0 and f.done:
                    raise _Restarted()  # no ingest to follow: the blob is in the store
                if self._gen != -1 and f.generation != self._gen:
                    raise _Restarted()
                if self._fd >= 0 and (f.offset > self._pos or f.done):
                    return max(0, f.offset - self._pos)
                f.cond.wait()

    def read(self, n: int = -1) -> bytes:
        avail = self._wait()
        if avail <= 0:
            return b""
        data = os.pread(self._fd, avail if n < 0 else min(n, avail), self._pos)
        self._pos += len(data)
        return data

    def readinto(self, buf: memoryview | bytearray) -> int:
        """Like read, into the caller's (reused) buffer."""
        avail = self._wait()
        if avail <= 0:
            return 0
        view = memoryview(buf)
        n = os.preadv(self._fd, [view[: min(len(view), avail)]], self._pos)
        self._pos += n
        return n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> _FeedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def select_manifest(index: Index, want: Platform) -> Descriptor:
    candidates = [
        (d.platform, d)
        for d in index.manifests
        if d.platform is not None and d.media_type in mt.MANIFESTS
    ]
    chosen = plat.best(want, candidates)
    if chosen is None:
        have = ", ".join(str(p) for p, _ in candidates) or "none"
        raise NotFound(f"no image for platform {want} in the index (has {have})")
    return chosen


def pull(
    client: RegistryClient,
    name: str | Reference,
    store: Any,
    *,
    platform: Platform | None = None,
    snapshotter: Any = None,
    progress: ProgressFn | None = None,
) -> PullResult:
    """Pull `name` into `store`; with `snapshotter`, unpack it on the way."""
    ref = parse_reference(name) if isinstance(name, str) else name
    want = platform or Platform(os="linux", architecture="amd64")
    ep, target, data = client.get_manifest(ref)
    store.write_blob(data, target.digest)
    manifest_desc, manifest_data = target, data
    if target.media_type in mt.INDEXES:
        chosen = select_manifest(Index.from_json(data), want)
        ep, manifest_desc, manifest_data = client.get_manifest(ref, obj=str(chosen.digest))
        store.write_blob(manifest_data, manifest_desc.digest)
    manifest = Manifest.from_json(manifest_data)
    config_data = _config(client, ep, ref, manifest.config, store)
    config = Image.from_json(config_data)
    if len(config.rootfs.diff_ids) != len(manifest.layers):
        raise FailedPrecondition("image config and manifest disagree on the number of layers")
    chain_id = _fetch_layers(client, ep, ref, manifest, config, store, snapshotter, progress)
    return PullResult(
        name=str(ref),
        target=target,
        manifest=manifest_desc,
        config=config,
        config_digest=manifest.config.digest,
        chain_id=chain_id,
    )


def _config(
    client: RegistryClient, ep: Endpoint, ref: Reference, desc: Descriptor, store: Any
) -> bytes:
    if store.exists(desc.digest):
        data: bytes = store.read_all(desc.digest, mt.MAX_MANIFEST_SIZE)
        return data
    data = client.get_small_blob(ep, ref.path, desc)
    store.write_blob(data, desc.digest)
    return data


def _open_writer(store: Any, ref: str, desc: Descriptor) -> Any:
    """A writer for the blob, waiting while another pull holds the ref."""
    delay = 0.05
    while True:
        try:
            return store.writer(ref, total=desc.size, expected=desc.digest)
        except Unavailable:
            threading.Event().wait(delay)
            delay = min(delay * 2, 1.0)


def _fetch_layers(
    client: RegistryClient,
    ep: Endpoint,
    ref: Reference,
    manifest: Manifest,
    config: Image,
    store: Any,
    snapshotter: Any,
    progress: ProgressFn | None,
) -> Digest | None:
    layers = manifest.layers
    feeds = [_Feed() for _ in layers]
    chain = chain_ids(list(config.rootfs.diff_ids))
    report = progress or (lambda p: None)

    def download(i: int) -> None:
        try:
            fetch(i)
        except BaseException as e:
            feeds[i].update(error=e)  # the unpacker must not wait for it
            raise
        feeds[i].update(done=True)

    def fetch(i: int) -> None:
        desc, feed = layers[i], feeds[i]
        if store.exists(desc.digest):
            report(
                Progress(
                    id=desc.digest, kind="layer", status="exists", done=desc.size, total=desc.size
                )
            )
            return
        try:
            writer = _open_writer(store, f"pull-{desc.digest}", desc)
        except AlreadyExists:
            return  # committed meanwhile by another pull
        with writer:
            feed.update(path=writer.data_path, offset=writer.offset)

            def on_progress(status: str, offset: int) -> None:
                feed.update(offset=offset)
                report(
                    Progress(
                        id=desc.digest, kind="layer", status=status, done=offset, total=desc.size
                    )
                )

            def on_restart() -> None:
                feed.update(generation=feed.generation + 1, offset=0)

            client.fetch_blob(
                ep, ref.path, desc, writer, on_progress=on_progress, on_restart=on_restart
            )
        report(
            Progress(id=desc.digest, kind="layer", status="done", done=desc.size, total=desc.size)
        )

    def unpack_all() -> None:
        for i, desc in enumerate(layers):
            if has_snapshot(snapshotter, str(chain[i])):
                continue
            parent = str(chain[i - 1]) if i else ""
            blob: BinaryIO | _FeedReader
            try:
                if store.exists(desc.digest):
                    blob = store.open(desc.digest)
                else:
                    blob = _FeedReader(feeds[i])
                with blob:
                    apply_into(snapshotter, parent, chain[i], blob, config.rootfs.diff_ids[i])  # type: ignore[arg-type]
            except _Restarted:
                _wait_done(feeds[i])
                with store.open(desc.digest) as f:
                    apply_into(snapshotter, parent, chain[i], f, config.rootfs.diff_ids[i])

    downloads = _Batch([functools.partial(download, i) for i in range(len(layers))], client)
    unpacker = _Batch([unpack_all], client, workers=1) if snapshotter is not None else None
    errors = [e for e in downloads.wait() if e is not None]
    if unpacker is not None:
        (error,) = unpacker.wait()
        if error is not None and not errors:
            errors.append(error)
    if errors:
        raise errors[0]
    return chain[-1] if (snapshotter is not None and chain) else None


class _Batch:
    """Jobs run in list order on a few threads; `wait` gives each one's
    exception or None. (concurrent.futures would cost a cold pull more
    import time than this whole class.)"""

    def __init__(
        self, jobs: Sequence[Callable[[], None]], client: RegistryClient, workers: int = 0
    ) -> None:
        self._jobs = list(jobs)
        self._next = 0
        self._lock = threading.Lock()
        self._errors: list[BaseException | None] = [None] * len(self._jobs)
        n = min(workers or max(1, client.options.concurrency), len(self._jobs))
        self._threads = [threading.Thread(target=self._work, name="skiff-pull") for _ in range(n)]
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                i = self._next
                if i >= len(self._jobs):
                    return
                self._next = i + 1
            try:
                self._jobs[i]()
            except BaseException as e:
                self._errors[i] = e

    def wait(self) -> list[BaseException | None]:
        for t in self._threads:
            t.join()
        return self._errors


def _wait_done(feed: _Feed) -> None:
    with feed.cond:
        while not feed.done and feed.error is None:
            feed.cond.wait()
        if feed.error is not None:
            raise feed.error


def push(
    client: RegistryClient,
    name: str | Reference,
    store: Any,
    target: Descriptor,
    *,
    mount_from: Sequence[str] = (),
    progress: ProgressFn | None = None,
) -> Digest:
    """Push the image `target` (manifest or index) from `store` to `name`."""
    ref = parse_reference(name) if isinstance(name, str) else name
    report: Callable[[Progress], None] = progress or (lambda p: None)
    data = store.read_all(target.digest, mt.MAX_MANIFEST_SIZE)
    if target.media_type in mt.INDEXES:
        for child in Index.from_json(data).manifests:
            if store.exists(child.digest):
                push(
                    client,
                    ref.with_digest(child.digest),
                    store,
                    child,
                    mount_from=mount_from,
                    progress=progress,
                )
    else:
        manifest = Manifest.from_json(data)
        blobs = [manifest.config, *manifest.layers]

        def one(desc: Descriptor) -> None:
            report(
                Progress(id=desc.digest, kind="layer", status="uploading", done=0, total=desc.size)
            )
            how = client.push_blob(
                ref, desc, lambda: store.open(desc.digest), mount_from=mount_from
            )
            report(
                Progress(id=desc.digest, kind="layer", status=how, done=desc.size, total=desc.size)
            )

        errors = [e for e in _Batch([functools.partial(one, d) for d in blobs], client).wait() if e]
        if errors:
            raise errors[0]
    obj = ref.tag if ref.tag else str(target.digest)
    client.put_manifest(ref, target.media_type, data, obj=obj)
    return target.digest
