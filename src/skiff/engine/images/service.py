"""skiffd's image service: Docker's images over the supervisor's content
store, image records and overlayfs snapshots (engine layer).

Images are supervisor image records in the engine's namespace, named by the
normalised reference (one record per tag); the image ID is the config
digest. An image that loses its last name while still held (a moved tag, a
container using it) keeps a `moby-dangling@<digest>` record, as dockerd's
containerd store does, so the supervisor's garbage collector keeps it.
Content written here carries containerd's GC reference labels and is held
by a lease until its image record exists.

Everything that talks to the supervisor or a registry is synchronous and
runs in worker threads; the async methods are what the API routes call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from skiff.engine.images import progress as pg
from skiff.engine.images.remote import ImageRecord, Session, open_channel
from skiff.engine.images.views import DANGLING_PREFIX, ImageView
from skiff.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SkiffError,
    Unavailable,
)
from skiff.image import archive
from skiff.image.compression import GZIP_MAGIC, ZSTD_MAGIC, decompressed
from skiff.image.pull import pull as registry_pull
from skiff.image.pull import push as registry_push
from skiff.image.pull import select_manifest
from skiff.image.registry import (
    Credentials,
    Endpoint,
    Progress,
    RegistryClient,
    RegistryOptions,
)
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor, Index, Manifest, chain_ids
from skiff.oci.platform import Platform
from skiff.oci.reference import Reference
from skiff.oci.reference import parse as parse_reference

log = logging.getLogger("skiffd.images")

DEFAULT_SNAPSHOTTER = "overlayfs"
GC_CONTENT = "containerd.io/gc.ref.content"
GC_SNAPSHOT = "containerd.io/gc.ref.snapshot"
_ID = re.compile(r"^(sha256:)?([0-9a-f]{64})$")
_HEX_PREFIX = re.compile(r"^(sha256:)?([0-9a-f]{1,63})$")


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a record's target resolves to on this platform (immutable by digest)."""

    target: Descriptor
    manifest_desc: Descriptor
    manifest: Manifest
    config: dict[str, Any]
    config_digest: Digest

    @property
    def image_id(self) -> str:
        return str(self.config_digest)

    @property
    def chain(self) -> list[Digest]:
        diff_ids = [Digest(d) for d in (self.config.get("rootfs") or {}).get("diff_ids") or []]
        return chain_ids(diff_ids)

    @property
    def chain_id(self) -> str:
        chain = self.chain
        return str(chain[-1]) if chain else ""


class ResolvedImage:
    """What `resolve` answers; unpacks as (config, chain id, target, name)."""

    def __init__(self, loaded: Loaded, name: str) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.chain_id = loaded.chain_id
        self.target = loaded.target
        self.name = name
        self.id = loaded.image_id

    def __iter__(self) -> Iterator[Any]:
        return iter((self.config, self.chain_id, self.target, self.name))

    def __getitem__(self, i: int) -> Any:
        return (self.config, self.chain_id, self.target, self.name)[i]

    def __len__(self) -> int:
        return 4


def parse_auth_header(value: str | None) -> Credentials | None:
    """X-Registry-Auth: base64url JSON of {username, password} (or {auth})."""
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        obj = json.loads(raw or b"{}")
    except ValueError:
        return None  # dockerd ignores an unreadable header too
    if not isinstance(obj, dict):
        return None
    user, password = str(obj.get("username") or ""), str(obj.get("password") or "")
    if not user and obj.get("auth"):
        try:
            user, _, password = base64.b64decode(str(obj["auth"])).decode().partition(":")
        except ValueError:
            return None
    if not user:
        return None
    return Credentials(user, password)


def _expiry() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dangling_name(target: Descriptor) -> str:
    return f"{DANGLING_PREFIX}{target.digest}"


class ImageService:
    """daemon.services["images"]; see docs/engine.md for its API."""

    def __init__(self, daemon: Any, snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        self.daemon = daemon
        self.snapshotter = snapshotter
        self._session: Session | None = None
        self._channel: Any = None
        self._lock = threading.Lock()
        self._loaded: dict[str, Loaded] = {}  # target digest -> Loaded
        self._usage: dict[tuple[str, str], int] = {}  # (snapshotter, chain id) -> bytes
        self._tag_times: dict[str, datetime] = {}
        self._mutate = asyncio.Lock()  # tag moves and deletes, one at a time
        self._up = False

    # -- lifecycle -------------------------------------------------------

    @property
    def namespace(self) -> str:
        return str(self.daemon.config.containerd_namespace)

    def session(self) -> Session:
        with self._lock:
            if self._session is None:
                address = self.daemon.supervisor.address or self.daemon.config.containerd
                if not address:
                    raise Unavailable("the supervisor is not connected yet")
                self._channel = open_channel(address)
                self._session = Session(self._channel, self.namespace)
            return self._session

    async def start(self) -> None:
        self._up = True  # the daemon starts services once the supervisor answers
        await asyncio.to_thread(self.session)

    async def connected(self) -> None:
        """Wait (up to a minute) for the supervisor: requests can arrive while
        skiffd is still finding or starting it."""
        if self._up:
            return
        from skiff.engine.supervisor import listening

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:
            address = self.daemon.supervisor.address
            if address and await asyncio.to_thread(listening, address):
                self._up = True
                return
            if loop.time() > deadline:
                raise Unavailable("the supervisor does not answer")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._session = None

    @contextlib.contextmanager
    def _leased(self) -> Iterator[Session]:
        """A session whose new content and snapshots a lease holds until the
        records that reference them exist."""
        session = self.session()
        lease_id = f"skiffd-{secrets.token_hex(8)}"
        session.create_lease(lease_id, {"containerd.io/gc.expire": _expiry()})
        try:
            yield session.with_lease(lease_id)
        finally:
            with contextlib.suppress(SkiffError):
                session.delete_lease(lease_id)

    # -- reading ---------------------------------------------------------

    def _load(self, target: Descriptor, session: Session | None = None) -> Loaded:
        key = str(target.digest)
        cached = self._loaded.get(key)
        if cached is not None:
            return cached
        s = session or self.session()
        data = s.content.read_all(target.digest, mt.MAX_MANIFEST_SIZE)
        media_type = target.media_type
        manifest_desc = target
        if media_type in mt.INDEXES:
            index = Index.from_json(data)
            present = [d for d in index.manifests if s.content.exists(d.digest)]
            want = Platform(os="linux", architecture="amd64")
            try:
                manifest_desc = select_manifest(
                    Index(media_type=index.media_type, manifests=tuple(present)), want
                )
            except NotFound:
                if not present:
                    raise NotFound(f"no manifest of {target.digest} is present")
                manifest_desc = present[0]
            data = s.content.read_all(manifest_desc.digest, mt.MAX_MANIFEST_SIZE)
        manifest = Manifest.from_json(data)
        config_raw = s.content.read_all(manifest.config.digest, mt.MAX_MANIFEST_SIZE)
        config = json.loads(config_raw)
        if not isinstance(config, dict):
            raise InvalidArgument(f"image config {manifest.config.digest} is not an object")
        loaded = Loaded(target, manifest_desc, manifest, config, manifest.config.digest)
        self._loaded[key] = loaded
        return loaded

    def _layer_sizes(self, loaded: Loaded, session: Session) -> list[int]:
        out = []
        for layer, chain in zip(loaded.manifest.layers, loaded.chain, strict=False):
            key = (self.snapshotter, str(chain))
            size = self._usage.get(key)
            if size is None:
                try:
                    size = session.snapshot_usage(self.snapshotter, str(chain))
                    self._usage[key] = size
                except SkiffError:
                    size = layer.size  # not unpacked: the compressed size says something
            out.append(size)
        return out

    def _views(self, session: Session | None = None) -> list[ImageView]:
        s = session or self.session()
        views: dict[str, ImageView] = {}
        for record in sorted(s.list_images(), key=lambda r: r.name):
            try:
                loaded = self._load(record.target, s)
            except (SkiffError, ValueError) as e:
                log.debug("skipping image %s: %s", record.name, e)
                continue
            view = views.get(loaded.image_id)
            if view is None:
                sizes = self._layer_sizes(loaded, s)
                view = ImageView(
                    id=loaded.image_id,
                    config=loaded.config,
                    size=sum(sizes),
                    layer_sizes=sizes,
                    created_at=record.created_at,
                )
                views[loaded.image_id] = view
            view.names.append(record.name)
            view.targets[record.name] = str(record.target.digest)
            tagged = self._tag_times.get(record.name) or record.updated_at
            if tagged is not None and (view.last_tag_time is None or tagged > view.last_tag_time):
                view.last_tag_time = tagged
        return sorted(views.values(), key=lambda v: (-v.created, v.id))

    def _records_of(self, image_id: str, session: Session) -> list[ImageRecord]:
        out = []
        for record in session.list_images():
            with contextlib.suppress(SkiffError, ValueError):
                if self._load(record.target, session).image_id == image_id:
                    out.append(record)
        return out

    def _find(self, name_or_id: str, session: Session) -> tuple[ImageView, str | None]:
        """The image and, when it was named by a reference, the record name."""
        if not name_or_id:
            raise InvalidArgument("invalid reference format")
        views = self._views(session)
        full = _ID.match(name_or_id)
        if full:
            for v in views:
                if v.id == f"sha256:{full.group(2)}":
                    return v, None
            raise NotFound(f"No such image: {name_or_id}")
        ref: Reference | None = None
        try:
            ref = parse_reference(name_or_id)
        except (InvalidArgument, ValueError) as e:
            if not _HEX_PREFIX.match(name_or_id):
                raise InvalidArgument(
                    str(e)
                    if "invalid reference format" in str(e)
                    else f"invalid reference format: {e}"
                )
        if ref is not None:
            wanted = str(ref)
            for v in views:
                if wanted in v.names:
                    return v, wanted
            if ref.digest is not None:
                for v in views:
                    for n in v.named:
                        if parse_reference(n).name == ref.name and v.targets[n] == str(ref.digest):
                            return v, None
        prefix = _HEX_PREFIX.match(name_or_id)
        if prefix:
            found = [v for v in views if v.id[7:].startswith(prefix.group(2))]
            if len(found) == 1:
                return found[0], None
        raise NotFound(f"No such image: {ref.familiar() if ref is not None else name_or_id}")

    async def views(self) -> list[ImageView]:
        await self.connected()
        return await asyncio.to_thread(self._views)

    async def find(self, name_or_id: str) -> ImageView:
        await self.connected()
        view, _ = await asyncio.to_thread(lambda: self._find(name_or_id, self.session()))
        return view

    # -- the API for the other services ------------------------------------

    async def resolve(self, ref_or_id: str) -> ResolvedImage:
        await self.connected()

        def run() -> ResolvedImage:
            s = self.session()
            view, name = self._find(ref_or_id, s)
            record_name = name or (view.named[0] if view.named else view.names[0])
            record = s.get_image(record_name)
            return ResolvedImage(self._load(record.target, s), record_name)

        return await asyncio.to_thread(run)

    async def ensure_unpacked(
        self, image: ResolvedImage | str, snapshotter: str = DEFAULT_SNAPSHOTTER
    ) -> str:
        """Unpack every layer not yet unpacked; returns the top chain id."""
        await self.connected()
        resolved = image if isinstance(image, ResolvedImage) else await self.resolve(image)

        def run() -> str:
            with self._leased() as s:
                return self._unpack(s, resolved.loaded, snapshotter)

        return await asyncio.to_thread(run)

    async def image_id_of(self, ref_or_id: str) -> str:
        return (await self.resolve(ref_or_id)).id

    def counts(self) -> dict[str, int]:
        try:
            # called on the event loop (for /info): never wait long
            records = self.session().list_images(timeout=2)
        except SkiffError:
            return {"Images": 0}
        ids = set()
        for r in records:
            cached = self._loaded.get(str(r.target.digest))
            ids.add(cached.image_id if cached else str(r.target.digest))
        return {"Images": len(ids)}

    async def disk_usage(self) -> dict[str, Any]:
        await self.connected()
        from skiff.engine.images.views import summary

        views = await self.views()
        users = await self._all_users()
        layer_count: dict[str, int] = {}
        layer_size: dict[str, int] = {}
        for v in views:
            diff_ids = [Digest(d) for d in (v.config.get("rootfs") or {}).get("diff_ids") or []]
            for chain, size in zip(chain_ids(diff_ids), v.layer_sizes, strict=False):
                layer_count[str(chain)] = layer_count.get(str(chain), 0) + 1
                layer_size[str(chain)] = size
        images = []
        for v in views:
            diff_ids = [Digest(d) for d in (v.config.get("rootfs") or {}).get("diff_ids") or []]
            shared = sum(layer_size[str(c)] for c in chain_ids(diff_ids) if layer_count[str(c)] > 1)
            images.append(summary(v, containers=len(users.get(v.id, [])), shared=shared))
        return {"Images": images, "LayersSize": sum(layer_size.values())}

    # -- containers that use images ----------------------------------------

    def _users_of(self, image_id: str) -> list[tuple[str, bool]]:
        containers = self.daemon.services.get("containers")
        users = getattr(containers, "image_users", None)
        if users is None:
            return []
        return list(users(image_id))

    async def _all_users(self) -> dict[str, list[tuple[str, bool]]]:
        views = await self.views()
        return {v.id: self._users_of(v.id) for v in views}

    # -- records and GC labels ---------------------------------------------

    def _label_tree(self, s: Session, target: Descriptor) -> None:
        """containerd's GC reference labels from each manifest and index to
        its children, so that the image record keeps everything it reaches."""
        data = s.content.read_all(target.digest, mt.MAX_MANIFEST_SIZE)
        labels: dict[str, str] = {}
        if target.media_type in mt.INDEXES:
            for i, child in enumerate(Index.from_json(data).manifests):
                labels[f"{GC_CONTENT}.m.{i}"] = str(child.digest)
                if s.content.exists(child.digest):
                    self._label_tree(s, child)
        elif target.media_type in mt.MANIFESTS:
            manifest = Manifest.from_json(data)
            labels[f"{GC_CONTENT}.config"] = str(manifest.config.digest)
            for i, layer in enumerate(manifest.layers):
                labels[f"{GC_CONTENT}.l.{i}"] = str(layer.digest)
        if labels:
            s.content.update_labels(target.digest, labels)

    def _unpack(
        self,
        s: Session,
        loaded: Loaded,
        snapshotter: str,
        *,
        wait_layer: Callable[[int], None] | None = None,
        on_layer: Callable[[int, str], None] | None = None,
    ) -> str:
        """Apply each missing layer through the supervisor's diff service
        onto a snapshot prepared on its parent, committed under its chain id."""
        diff_ids = [Digest(d) for d in (loaded.config.get("rootfs") or {}).get("diff_ids") or []]
        layers = loaded.manifest.layers
        if len(diff_ids) != len(layers):
            raise FailedPrecondition(f"image has {len(layers)} layers but {len(diff_ids)} diff ids")
        chain = chain_ids(diff_ids)
        for i, layer in enumerate(layers):
            if wait_layer is not None:
                wait_layer(i)
            name = str(chain[i])
            if s.has_snapshot(snapshotter, name):
                if on_layer is not None:
                    on_layer(i, "exists")
                continue
            parent = str(chain[i - 1]) if i else ""
            key = f"extract-{secrets.token_hex(6)} {name}"
            if on_layer is not None:
                on_layer(i, "extracting")
            try:
                mounts = s.prepare_snapshot(
                    snapshotter, key, parent, {"containerd.io/snapshot.ref": name}
                )
            except AlreadyExists:
                # containerd answers a prepare whose snapshot.ref target exists with
                # "target snapshot ...: already exists": a concurrent pull unpacked it
                if on_layer is not None:
                    on_layer(i, "exists")
                continue
            try:
                applied = s.apply(layer, mounts)
                if str(applied.digest) != str(diff_ids[i]):
                    raise FailedPrecondition(
                        f"layer {layer.digest}: diff id {applied.digest} does not match "
                        f"the config's {diff_ids[i]}"
                    )
                try:
                    s.commit_snapshot(snapshotter, name, key)
                except AlreadyExists:
                    s.remove_snapshot(snapshotter, key)  # unpacked meanwhile by another
            except BaseException:
                with contextlib.suppress(SkiffError):
                    s.remove_snapshot(snapshotter, key)
                raise
            if on_layer is not None:
                on_layer(i, "done")
        if chain:
            s.content.update_labels(
                loaded.config_digest, {f"{GC_SNAPSHOT}.{snapshotter}": str(chain[-1])}
            )
        return str(chain[-1]) if chain else ""

    def _set_name(self, s: Session, name: str, target: Descriptor) -> str | None:
        """Point `name` at `target`; an image that loses its last name this way
        keeps a dangling record. Returns the ID the name pointed to before,
        when that was another image."""
        new = self._load(target, s)
        old_id: str | None = None
        try:
            old = s.get_image(name)
            old_loaded = self._load(old.target, s)
            if old_loaded.image_id != new.image_id:
                old_id = old_loaded.image_id
                others = [
                    r
                    for r in self._records_of(old_id, s)
                    if r.name != name and not r.name.startswith(DANGLING_PREFIX)
                ]
                if not others:
                    s.put_image(dangling_name(old.target), old.target)
        except NotFound:
            pass
        s.put_image(name, target)
        self._tag_times[name] = datetime.now(UTC)
        if not name.startswith(DANGLING_PREFIX):
            with contextlib.suppress(NotFound):
                s.delete_image(dangling_name(target))
        return old_id

    # -- tag ---------------------------------------------------------------

    async def tag(self, source: str, repo: str, tag: str) -> str:
        await self.connected()
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        text = f"{repo}:{tag}" if tag else repo
        try:
            ref = parse_reference(text)
        except (InvalidArgument, ValueError) as e:
            raise InvalidArgument(
                f"invalid reference format: {e}".replace(": invalid reference format", "")
            )
        if ref.digest is not None:
            raise InvalidArgument("refusing to create a tag with a digest reference")

        def run() -> str:
            s = self.session()
            view, name = self._find(source, s)
            record = s.get_image(name or (view.named[0] if view.named else view.names[0]))
            self._set_name(s, str(ref), record.target)
            return view.id

        async with self._mutate:
            image_id = await asyncio.to_thread(run)
        self.daemon.events.emit("image", "tag", image_id, {"name": ref.familiar()})
        return ref.familiar()

    # -- delete ------------------------------------------------------------

    async def delete(
        self, name_or_id: str, force: bool = False, prune: bool = True
    ) -> list[dict[str, str]]:
        await self.connected()
        async with self._mutate:
            return await asyncio.to_thread(self._delete, name_or_id, force)

    def _delete(self, name_or_id: str, force: bool) -> list[dict[str, str]]:
        s = self.session()
        view, name = self._find(name_or_id, s)
        short = view.id[7:19]
        users = self._users_of(view.id)
        out: list[dict[str, str]] = []
        # as dockerd: the last tag of an image a container uses (other names being at
        # most digests of the same repository) goes only with force
        if name is not None and users and not force and single_reference(view.named):
            raise Conflict(
                f'conflict: unable to remove repository reference "{name_or_id}" (must force) '
                f"- container {users[0][0][:12]} is using its referenced image {short}"
            )
        if name is not None and len(view.named) > 1:
            s.delete_image(name)
            fam = parse_reference(name).familiar()
            self.daemon.events.emit("image", "untag", view.id, {"name": fam})
            return [{"Untagged": fam}]
        if name is None and len(view.named) > 1 and not force:
            raise Conflict(
                f"conflict: unable to delete {short} (must be forced) - image is referenced "
                "in multiple repositories"
            )
        running = [c for c, up in users if up]
        # a forced untag by name leaves the image of a running container nameless,
        # as dockerd does; only its removal by ID is refused
        if running and name is None:
            raise Conflict(
                f"conflict: unable to delete {short} (cannot be forced) - image is being used "
                f"by running container {running[0][:12]}"
            )
        if users and not force:
            raise Conflict(
                f"conflict: unable to delete {short} (must be forced) - image is being used "
                f"by stopped container {users[0][0][:12]}"
            )
        records = self._records_of(view.id, s)
        for r in records:
            if r.name.startswith(DANGLING_PREFIX):
                continue
            fam = parse_reference(r.name).familiar()
            out.append({"Untagged": fam})
            ref = parse_reference(r.name)
            if ref.tag and not ref.digest:
                repo = fam.rsplit(":", 1)[0]
                out.append({"Untagged": f"{repo}@{r.target.digest}"})
            self.daemon.events.emit("image", "untag", view.id, {"name": fam})
        if users:
            # forced while a stopped container uses it: keep the image, nameless
            target = records[0].target
            s.put_image(dangling_name(target), target)
            for r in records:
                if r.name != dangling_name(target):
                    s.delete_image(r.name)
            return out
        for i, r in enumerate(records):
            s.delete_image(r.name, sync=i == len(records) - 1)
        out.append({"Deleted": view.id})
        self.daemon.events.emit("image", "delete", view.id, {"name": view.id})
        return out

    async def prune(self, filters: dict[str, set[str]]) -> dict[str, Any]:
        await self.connected()
        from skiff.engine.images.views import label_matches, parse_bool_filter, parse_time

        for key in filters:
            if key not in ("dangling", "label", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        dangling_only = True
        if filters.get("dangling"):
            dangling_only = parse_bool_filter(filters["dangling"], "dangling")
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        async with self._mutate:
            views = await self.views()
            gone: set[str] = set()
            for v in views:
                if dangling_only and not v.dangling:
                    continue
                labels = (v.config.get("config") or {}).get("Labels") or {}
                if not all(label_matches(labels, w) for w in filters.get("label", ())):
                    continue
                until = next(iter(filters.get("until", ())), None)
                if until is not None:
                    try:
                        limit = float(until)
                    except ValueError:
                        limit = parse_time(until) or 0
                    if v.created > limit:
                        continue
                if self._users_of(v.id):
                    continue
                try:
                    deleted.extend(await asyncio.to_thread(self._delete, v.id, True))
                    gone.add(v.id)
                except SkiffError as e:
                    log.warning("prune: %s: %s", v.id, e)
            reclaimed = freed_space([v for v in views if v.id in gone], views)
        self.daemon.events.emit("image", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    # -- registry ----------------------------------------------------------

    def registry(self, ref: Reference, creds: Credentials | None) -> RegistryClient:
        config = self.daemon.config
        insecure = set()
        for entry in config.insecure_registries:
            insecure.add(entry.split("://", 1)[-1].rstrip("/"))
        options = RegistryOptions(
            insecure=frozenset(insecure),
            mirrors={"docker.io": list(config.registry_mirrors)},
            # the daemon never reads a user's ~/.docker: credentials come with the request
            docker_config=os.path.join(config.data_root, "no-such-docker-config.json"),
            credentials={ref.domain: creds} if creds else {},
        )
        return RegistryClient(options)

    async def prepare_pull(
        self, image: str, tag: str, creds: Credentials | None, platform: str = ""
    ) -> PullPlan:
        """Parse and fetch the manifest: errors here are plain HTTP errors,
        before any progress has been streamed."""
        await self.connected()
        text = image
        if tag:
            text = f"{image}@{tag}" if tag.startswith(("sha256:", "sha512:")) else f"{image}:{tag}"
        try:
            ref = parse_reference(text)
        except (InvalidArgument, ValueError) as e:
            raise InvalidArgument(_invalid_reference(e))
        want = Platform.parse(platform) if platform else Platform(os="linux", architecture="amd64")
        client = self.registry(ref, creds)

        def run() -> PullPlan:
            try:
                ep, target, data = client.get_manifest(ref)
                manifest_desc, manifest_data = target, data
                if target.media_type in mt.INDEXES:
                    chosen = select_manifest(Index.from_json(data), want)
                    ep, manifest_desc, manifest_data = client.get_manifest(
                        ref, obj=str(chosen.digest)
                    )
            except NotFound as e:
                text = str(e).lower()
                if "name_unknown" in text or "name unknown" in text:
                    repo = (
                        ref.familiar().split("@")[0].rsplit(":", 1)[0]
                        if ref.tag
                        else ref.familiar().split("@")[0]
                    )
                    raise NotFound(
                        f"repository {repo} not found: name unknown: repository name not known to registry"
                    )
                if ref.domain == "docker.io":
                    repo = (
                        ref.familiar().split("@")[0].rsplit(":", 1)[0]
                        if ref.tag
                        else ref.familiar().split("@")[0]
                    )
                    raise NotFound(
                        f"pull access denied for {repo}, repository does not exist or may "
                        "require 'docker login': denied: requested access to the resource is denied"
                    )
                raise NotFound(
                    f"manifest for {ref.familiar()} not found: manifest unknown: manifest unknown"
                )
            except (OSError, Unavailable) as e:
                host = client.endpoints(ref.domain)[-1]
                raise Unavailable(f'Get "{host.scheme}://{host.host}/v2/": {e}')
            manifest = Manifest.from_json(manifest_data)
            return PullPlan(
                ref=ref,
                client=client,
                endpoint=ep,
                target=target,
                manifest_desc=manifest_desc,
                manifest=manifest,
                platform=want,
            )

        return await asyncio.to_thread(run)

    def pull_stream(self, plan: PullPlan) -> AsyncIterator[bytes]:
        return self._streamed(lambda emit: self._pull(plan, emit))

    def _pull(self, plan: PullPlan, emit: Callable[[bytes], None]) -> None:
        ref = plan.ref
        ident = ref.tag or str(ref.digest)
        repo_name = ref.familiar().split("@")[0]
        if ref.tag:
            repo_name = repo_name.rsplit(":", 1)[0]
        emit(pg.status(f"Pulling from {ref.path}", ident))
        s0 = self.session()
        layers = plan.manifest.layers
        index_of: dict[str, list[int]] = {}
        for i, layer in enumerate(layers):
            index_of.setdefault(str(layer.digest), []).append(i)
        done = [threading.Event() for _ in layers]
        failed: list[BaseException] = []
        announced = set()
        for layer in layers:
            d = str(layer.digest)
            if d in announced:
                continue
            announced.add(d)
            if s0.content.exists(layer.digest):
                emit(pg.layer("Already exists", pg.short(d)))
                for i in index_of[d]:
                    done[i].set()
            else:
                emit(pg.layer("Pulling fs layer", pg.short(d)))
        existing: str | None = None
        with contextlib.suppress(NotFound):
            existing = str(s0.get_image(str(ref)).target.digest)

        def on_progress(p: Progress) -> None:
            d = str(p.id)
            if d not in index_of:
                return
            sid = pg.short(d)
            if p.status == "downloading":
                emit(pg.layer("Downloading", sid, p.done, p.total))
            elif p.status == "retrying":
                emit(pg.layer("Retrying", sid))
            elif p.status in ("done", "exists"):
                if p.status == "done":
                    emit(pg.layer("Verifying Checksum", sid))
                    emit(pg.layer("Download complete", sid))
                for i in index_of[d]:
                    done[i].set()

        def wait_layer(i: int) -> None:
            while not done[i].wait(0.2):
                if failed:
                    raise failed[0]

        def on_layer(i: int, what: str) -> None:
            sid = pg.short(str(layers[i].digest))
            if what == "extracting":
                emit(pg.layer("Extracting", sid, layers[i].size, layers[i].size))
            elif what == "done":
                emit(pg.layer("Pull complete", sid))

        with self._leased() as s:
            config_desc = plan.manifest.config
            if not s.content.exists(config_desc.digest):
                data = plan.client.get_small_blob(plan.endpoint, ref.path, config_desc)
                s.content.write_blob(data, config_desc.digest)
            config = json.loads(s.content.read_all(config_desc.digest, mt.MAX_MANIFEST_SIZE))
            loaded = Loaded(
                plan.target, plan.manifest_desc, plan.manifest, config, config_desc.digest
            )
            unpack_error: list[BaseException] = []

            def unpacker() -> None:
                try:
                    self._unpack(
                        s, loaded, self.snapshotter, wait_layer=wait_layer, on_layer=on_layer
                    )
                except BaseException as e:
                    unpack_error.append(e)

            # layers are applied in order as each finishes downloading
            thread = threading.Thread(target=unpacker, name="skiffd-unpack", daemon=True)
            thread.start()
            try:
                result = registry_pull(
                    plan.client, ref, s.content, platform=plan.platform, progress=on_progress
                )
            except BaseException as e:
                failed.append(e)
                thread.join()
                raise
            # a layer another pull committed meanwhile reports no progress here
            for event in done:
                event.set()
            thread.join()
            if unpack_error:
                raise unpack_error[0]
            self._label_tree(s, result.target)
            self._set_name(s, str(ref), result.target)
        digest = str(result.target.digest)
        emit(pg.status(f"Digest: {digest}"))
        if existing == digest:
            emit(pg.status(f"Status: Image is up to date for {ref.familiar()}"))
        else:
            emit(pg.status(f"Status: Downloaded newer image for {ref.familiar()}"))
        self.daemon.events.emit("image", "pull", ref.familiar(), {"name": repo_name})

    async def prepare_push(self, name: str, tag: str) -> list[ImageRecord]:
        await self.connected()
        text = f"{name}:{tag}" if tag else name
        try:
            ref = parse_reference(text, default_tag=False)
        except (InvalidArgument, ValueError) as e:
            raise InvalidArgument(_invalid_reference(e))

        def run() -> list[ImageRecord]:
            s = self.session()
            if ref.tag or ref.digest:
                try:
                    return [s.get_image(str(ref))]
                except NotFound:
                    raise NotFound(f"tag does not exist: {ref.familiar()}")
            records = [
                r
                for r in s.list_images()
                if not r.name.startswith(DANGLING_PREFIX)
                and parse_reference(r.name, default_tag=False).name == ref.name
                and parse_reference(r.name, default_tag=False).tag
            ]
            if not records:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar()}")
            return sorted(records, key=lambda r: r.name)

        return await asyncio.to_thread(run)

    def push_stream(
        self, records: list[ImageRecord], creds: Credentials | None
    ) -> AsyncIterator[bytes]:
        return self._streamed(lambda emit: self._push(records, creds, emit))

    def _push(
        self, records: list[ImageRecord], creds: Credentials | None, emit: Callable[[bytes], None]
    ) -> None:
        s = self.session()
        first = parse_reference(records[0].name)
        emit(
            pg.status(
                f"The push refers to repository [{first.familiar().split('@')[0].rsplit(':', 1)[0]}]"
            )
        )
        for record in records:
            ref = parse_reference(record.name)
            client = self.registry(ref, creds)
            loaded = self._load(record.target, s)
            layer_ids = {str(layer.digest) for layer in loaded.manifest.layers}
            for layer in reversed(loaded.manifest.layers):
                emit(pg.layer("Preparing", pg.short(str(layer.digest))))
            store = _CountingStore(s.content, layer_ids, emit)

            def on_progress(
                p: Progress, layer_ids: set[str] = layer_ids, ref: Reference = ref
            ) -> None:
                d = str(p.id)
                if d not in layer_ids:
                    return
                sid = pg.short(d)
                if p.status == "exists":
                    emit(pg.layer("Layer already exists", sid))
                elif p.status == "mounted":
                    emit(pg.layer("Mounted from " + ref.path, sid))
                elif p.status == "uploaded":
                    emit(pg.layer("Pushed", sid))

            digest = registry_push(client, ref, store, record.target, progress=on_progress)
            tag = ref.tag or str(ref.digest)
            emit(pg.status(f"{tag}: digest: {digest} size: {record.target.size}"))
            emit(pg.aux({"Tag": tag, "Digest": str(digest), "Size": record.target.size}))
            self.daemon.events.emit("image", "push", ref.familiar(), {"name": ref.familiar()})

    # -- save, load, import --------------------------------------------------

    async def prepare_save(self, names: Sequence[str]) -> list[tuple[str, Descriptor, str]]:
        await self.connected()

        def run() -> list[tuple[str, Descriptor, str]]:
            s = self.session()
            out = []
            for n in names:
                view, name = self._find(n, s)
                if name is not None:
                    out.append((name, s.get_image(name).target, view.id))
                    continue
                by_digest: Reference | None = None
                with contextlib.suppress(InvalidArgument, ValueError):
                    by_digest = parse_reference(n)
                if by_digest is not None and by_digest.digest is not None:
                    for rn in view.named:
                        if view.targets[rn] == str(by_digest.digest):
                            out.append((str(by_digest), s.get_image(rn).target, view.id))
                            break
                    continue
                # by ID: the archive names no repository, as docker save <id>
                record = s.get_image(view.named[0] if view.named else view.names[0])
                out.append(("", record.target, view.id))
            return out

        return await asyncio.to_thread(run)

    def save_stream(self, items: list[tuple[str, Descriptor, str]]) -> AsyncIterator[bytes]:
        s = self.session()

        def run(emit: Callable[[bytes], None]) -> None:
            writer = _EmitWriter(emit)
            archive.export_images(s.content, [(n, d) for n, d, _ in items], writer)  # type: ignore[arg-type]
            writer.flush()
            for name, _d, image_id in items:
                self.daemon.events.emit(
                    "image",
                    "save",
                    image_id,
                    {"name": parse_reference(name).familiar() if name else image_id},
                )

        return self._streamed(run, report_errors=False)

    def _tmpdir(self) -> str:
        base = os.path.join(self.daemon.config.data_root, "tmp")
        os.makedirs(base, 0o700, exist_ok=True)
        return tempfile.mkdtemp(prefix="image-", dir=base)

    async def spool(self, body: AsyncIterator[bytes]) -> str:
        """The request body in a temporary file (archives are read twice)."""
        await self.connected()
        tmp = self._tmpdir()
        path = os.path.join(tmp, "body")
        f = open(path, "wb")  # noqa: SIM115 (closed below, written from the loop)
        try:
            async for chunk in body:
                await asyncio.to_thread(f.write, chunk)
        except BaseException:
            f.close()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        f.close()
        return path

    def load_stream(self, path: str, quiet: bool) -> AsyncIterator[bytes]:
        return self._streamed(lambda emit: self._load_archive(path, emit))

    def _load_archive(self, path: str, emit: Callable[[bytes], None]) -> None:
        workdir = os.path.dirname(path)
        try:
            with self._leased() as s:
                with open(path, "rb") as f:
                    imported = archive.import_docker_archive(s.content, f, workdir)
                if not imported:
                    raise InvalidArgument("no images found in the archive")
                for item in imported:
                    self._label_tree(s, item.target)
                    loaded = self._load(item.target, s)
                    self._unpack(s, loaded, self.snapshotter)
                    if item.name:
                        old = self._set_name(s, item.name, item.target)
                        fam = parse_reference(item.name).familiar()
                        if old is not None:
                            emit(
                                pg.stream(
                                    f"The image {fam} already exists, renaming the old one "
                                    f"with ID {old} to empty string\n"
                                )
                            )
                        emit(pg.stream(f"Loaded image: {fam}\n"))
                        self.daemon.events.emit("image", "load", loaded.image_id, {"name": fam})
                    else:
                        with contextlib.suppress(AlreadyExists):
                            try:
                                s.get_image(dangling_name(item.target))
                            except NotFound:
                                if not self._records_of(loaded.image_id, s):
                                    s.put_image(dangling_name(item.target), item.target)
                        emit(pg.stream(f"Loaded image ID: {loaded.image_id}\n"))
                        self.daemon.events.emit(
                            "image", "load", loaded.image_id, {"name": loaded.image_id}
                        )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def import_stream(
        self, path: str, repo: str, tag: str, changes: list[str], message: str, platform: str
    ) -> AsyncIterator[bytes]:
        return self._streamed(
            lambda emit: self._import(path, repo, tag, changes, message, platform, emit)
        )

    def _import(
        self,
        path: str,
        repo: str,
        tag: str,
        changes: list[str],
        message: str,
        platform: str,
        emit: Callable[[bytes], None],
    ) -> None:
        workdir = os.path.dirname(path)
        try:
            ref = None
            if repo:
                try:
                    ref = parse_reference(f"{repo}:{tag}" if tag else repo)
                except (InvalidArgument, ValueError) as e:
                    raise InvalidArgument(_invalid_reference(e))
            with open(path, "rb") as f:
                head = f.read(4)
                f.seek(0)
                diff = Digester()
                blob = Digester()
                stream = decompressed(_Tee(f, blob))  # type: ignore[arg-type]
                while chunk := stream.read(1 << 20):
                    diff.update(chunk)
                while chunk := f.read(1 << 20):
                    blob.update(chunk)
            size = os.path.getsize(path)
            media_type = (
                mt.DOCKER_LAYER_GZIP
                if head.startswith(GZIP_MAGIC)
                else mt.OCI_LAYER_ZSTD
                if head.startswith(ZSTD_MAGIC)
                else mt.DOCKER_LAYER
            )
            plat = (
                Platform.parse(platform) if platform else Platform(os="linux", architecture="amd64")
            )
            now = _now_rfc3339()
            container_config = apply_changes({}, changes)
            config: dict[str, Any] = {
                "architecture": plat.architecture,
                "os": plat.os,
                "created": now,
                "config": container_config,
                "rootfs": {"type": "layers", "diff_ids": [diff.digest()]},
                "history": [
                    {"created": now, "created_by": "", "comment": message or "Imported from -"}
                ],
            }
            if message:
                config["comment"] = message
            if plat.variant:
                config["variant"] = plat.variant
            config_data = json.dumps(config, separators=(",", ":")).encode()
            with self._leased() as s:
                layer_digest = blob.digest()
                if not s.content.exists(layer_digest):
                    with (
                        open(path, "rb") as f,
                        s.content.writer(f"import-{layer_digest}", size, layer_digest) as w,
                    ):
                        w.truncate(0)
                        while chunk := f.read(1 << 20):
                            w.write(chunk)
                        w.commit(size, layer_digest)
                config_digest = s.content.write_blob(config_data)
                manifest = Manifest(
                    media_type=mt.DOCKER_MANIFEST,
                    config=Descriptor(
                        media_type=mt.DOCKER_CONFIG, digest=config_digest, size=len(config_data)
                    ),
                    layers=(
                        Descriptor(media_type=media_type, digest=Digest(layer_digest), size=size),
                    ),
                )
                manifest_data = json.dumps(manifest.to_json(), indent=3).encode()
                manifest_digest = s.content.write_blob(manifest_data)
                target = Descriptor(
                    media_type=mt.DOCKER_MANIFEST, digest=manifest_digest, size=len(manifest_data)
                )
                self._label_tree(s, target)
                loaded = self._load(target, s)
                self._unpack(s, loaded, self.snapshotter)
                if ref is not None:
                    self._set_name(s, str(ref), target)
                else:
                    s.put_image(dangling_name(target), target)
            emit(pg.status(loaded.image_id))
            self.daemon.events.emit(
                "image",
                "import",
                loaded.image_id,
                {"name": ref.familiar() if ref else loaded.image_id},
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- streaming from worker threads ------------------------------------

    def _streamed(
        self, work: Callable[[Callable[[bytes], None]], None], report_errors: bool = True
    ) -> AsyncIterator[bytes]:
        """Run `work(emit)` in a thread; what it emits is streamed; an error
        after the stream began is Docker's errorDetail line."""
        loop = asyncio.get_running_loop()
        # unbounded queue; the semaphore bounds what the worker may run ahead
        q: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        space = threading.Semaphore(64)
        gone = threading.Event()

        def emit(data: bytes) -> None:
            while not space.acquire(timeout=0.5):
                if gone.is_set():
                    # the client went away: stop, as dockerd cancels the job
                    raise Unavailable("the client closed the connection")
            loop.call_soon_threadsafe(q.put_nowait, data)

        def run() -> None:
            try:
                work(emit)
            except BaseException as e:  # handed to the stream
                loop.call_soon_threadsafe(q.put_nowait, e)
            else:
                loop.call_soon_threadsafe(q.put_nowait, None)

        threading.Thread(target=run, name="skiffd-image-job", daemon=True).start()

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    item = await q.get()
                    if item is None:
                        return
                    if isinstance(item, BaseException):
                        if not isinstance(item, SkiffError):
                            log.error("image job failed", exc_info=item)
                        if report_errors:
                            yield pg.error(str(item) or type(item).__name__)
                        return
                    space.release()
                    yield item
            finally:
                # a client that went away must not leave the worker blocked
                gone.set()

        return chunks()


@dataclass(frozen=True, slots=True)
class PullPlan:
    ref: Reference
    client: RegistryClient
    endpoint: Endpoint
    target: Descriptor
    manifest_desc: Descriptor
    manifest: Manifest
    platform: Platform


def single_reference(names: Sequence[str]) -> bool:
    """dockerd's test of an image's names being "one reference": all of one
    repository, with at most one tag (the others digests)."""
    refs = [parse_reference(n) for n in names]
    if len(refs) <= 1:
        return len(refs) == 1
    tags = [r for r in refs if r.digest is None]
    return len(tags) <= 1 and len({r.name for r in refs}) == 1


def _chain_sizes(view: ImageView) -> dict[str, int]:
    diff_ids = [Digest(d) for d in (view.config.get("rootfs") or {}).get("diff_ids") or []]
    return {str(c): size for c, size in zip(chain_ids(diff_ids), view.layer_sizes, strict=False)}


def freed_space(removed: Sequence[ImageView], before: Sequence[ImageView]) -> int:
    """The bytes that removing `removed` freed, as dockerd counts a prune: the layers
    no remaining image still holds (a base layer shared with a kept image frees nothing)."""
    ids = {v.id for v in removed}
    kept: set[str] = set()
    for v in before:
        if v.id not in ids:
            kept.update(_chain_sizes(v))
    freed: dict[str, int] = {}
    for v in removed:
        for chain, size in _chain_sizes(v).items():
            if chain not in kept:
                freed[chain] = size
    return sum(freed.values())


def _invalid_reference(e: Exception) -> str:
    text = str(e)
    if text.startswith("invalid reference format"):
        return "invalid reference format" + (
            ": repository name must be lowercase" if "lowercase" in text else ""
        )
    return f"invalid reference format: {text}"


class Digester:
    def __init__(self) -> None:
        import hashlib

        self._h = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


class _Tee:
    """Reads from src and hashes what passes."""

    def __init__(self, src: BinaryIO, digester: Digester) -> None:
        self._src = src
        self._d = digester

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._d.update(data)
        return data


class _EmitWriter:
    """A write-only file that hands 256 KiB pieces to emit."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= 256 * 1024:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._emit(bytes(self._buf))
            self._buf = bytearray()

    def tell(self) -> int:
        return 0


class _CountingStore:
    """The content store with reads of layer blobs reported as push progress."""

    def __init__(self, content: Any, layer_ids: set[str], emit: Callable[[bytes], None]) -> None:
        self._content = content
        self._layers = layer_ids
        self._emit = emit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._content, name)

    def open(self, digest: Digest | str) -> Any:
        blob = self._content.open(digest)
        if str(digest) not in self._layers:
            return blob
        total = self._content.info(digest).size
        emit = self._emit
        sid = pg.short(str(digest))

        class Counting:
            mode = "rb"

            def __init__(self) -> None:
                self.done = 0
                self.last = -1.0

            def read(self, n: int = -1) -> bytes:
                data: bytes = blob.read(n)
                self.done += len(data)
                now = time.monotonic()
                if data and (now - self.last > 0.1 or self.done == total):
                    self.last = now
                    emit(pg.layer("Pushing", sid, self.done, total))
                return data

            def close(self) -> None:
                blob.close()

            def __enter__(self) -> Counting:
                return self

            def __exit__(self, *exc: object) -> None:
                self.close()

        return Counting()


# -- docker import --change --------------------------------------------------

_CHANGE_KEYS = {
    "CMD": "Cmd",
    "ENTRYPOINT": "Entrypoint",
    "ENV": "Env",
    "EXPOSE": "ExposedPorts",
    "LABEL": "Labels",
    "USER": "User",
    "VOLUME": "Volumes",
    "WORKDIR": "WorkingDir",
    "STOPSIGNAL": "StopSignal",
    "ONBUILD": "OnBuild",
}


def _words(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    return rest.split()


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Dockerfile instructions of `docker import --change` applied to a config."""
    import shlex

    out = dict(config)
    for change in changes:
        for text in change.splitlines():
            text = text.strip()
            if not text:
                continue
            word, _, rest = text.partition(" ")
            key = _CHANGE_KEYS.get(word.upper())
            if key is None:
                raise InvalidArgument(f"{word} is not a valid change command")
            rest = rest.strip()
            if key in ("Cmd", "Entrypoint"):
                words = _words(rest)
                out[key] = words if rest.startswith("[") else ["/bin/sh", "-c", rest]
            elif key == "Env":
                env = list(out.get("Env") or [])
                pairs = (
                    [rest.split(None, 1)[0] + "=" + rest.split(None, 1)[1]]
                    if "=" not in rest.split(None, 1)[0]
                    else shlex.split(rest)
                )
                for pair in pairs:
                    k = pair.split("=", 1)[0]
                    env = [e for e in env if e.split("=", 1)[0] != k] + [pair]
                out["Env"] = env
            elif key == "ExposedPorts":
                ports = dict(out.get("ExposedPorts") or {})
                for p in rest.split():
                    ports[p if "/" in p else f"{p}/tcp"] = {}
                out["ExposedPorts"] = ports
            elif key == "Labels":
                labels = dict(out.get("Labels") or {})
                for pair in shlex.split(rest):
                    k, _, v = pair.partition("=")
                    labels[k] = v
                out["Labels"] = labels
            elif key == "Volumes":
                vols = dict(out.get("Volumes") or {})
                for v in _words(rest):
                    vols[v] = {}
                out["Volumes"] = vols
            elif key == "OnBuild":
                out["OnBuild"] = [*list(out.get("OnBuild") or []), rest]
            else:
                out[key] = rest
    return out
