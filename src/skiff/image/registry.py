"""A client for the OCI distribution API (what `docker pull/push` speak).
Image layer; skiffd and skiff-containerd hand it a content store.

Auth: a 401's WWW-Authenticate says Bearer (fetch a token from the realm,
with basic credentials if we have some) or Basic; credentials come from the
docker config's `auths` (base64 `user:password` in `auth`). Plain HTTP is
used for 127.0.0.0/8, localhost and registries configured insecure. Blob
downloads resume with HTTP Range after a broken connection.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from skiff.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SkiffError,
    Unavailable,
)
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest, Digester
from skiff.oci.image import Descriptor, sniff_media_type
from skiff.oci.reference import DEFAULT_DOMAIN, Reference

DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_CHUNK = 1 << 20
_USER_AGENT = "skiff/0.1"


class Unauthorized(SkiffError):
    grpc_code = 16  # UNAUTHENTICATED
    http_status = 401


class Denied(SkiffError):
    grpc_code = 7  # PERMISSION_DENIED
    http_status = 403


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryOptions:
    insecure: frozenset[str] = frozenset()  # hosts (host[:port]) spoken to over http
    mirrors: Mapping[str, Sequence[str]] = field(default_factory=dict)  # domain -> base urls
    docker_config: str | None = None  # path of config.json; None: $DOCKER_CONFIG or ~/.docker
    credentials: Mapping[str, Credentials] = field(default_factory=dict)  # host -> creds
    concurrency: int = 3
    retries: int = 5
    timeout: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """One event for the CLI's progress bars."""

    id: Digest
    kind: str  # manifest | config | layer
    status: str  # waiting | downloading | retrying | done | exists | uploading | mounted
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def load_docker_credentials(path: str | None = None) -> dict[str, Credentials]:
    """Credentials by registry host from a docker config.json `auths`."""
    if path is None:
        base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
        path = os.path.join(base, "config.json")
    try:
        with open(path, "rb") as f:
            obj = json.load(f)
    except (FileNotFoundError, ValueError):
        return {}
    out: dict[str, Credentials] = {}
    for key, entry in (obj.get("auths") or {}).items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username", ""), entry.get("password", "")
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        host = key
        if key == DOCKER_HUB_AUTH_KEY or key.rstrip("/") in ("index.docker.io", "docker.io"):
            host = DEFAULT_DOMAIN
        elif "://" in key:
            host = urllib.parse.urlsplit(key).netloc
        out[host.rstrip("/")] = Credentials(user, password)
    return out


_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_www_authenticate(value: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = value.strip().partition(" ")
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _AUTH_PARAM.finditer(rest)
    }
    return scheme.lower(), params


@dataclass(frozen=True, slots=True)
class Endpoint:
    scheme: str
    host: str  # netloc: host[:port]
    domain: str  # the reference's domain it serves (credentials key)
    path_prefix: str = ""


class _Response:
    """A response with its connection, closed together."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self.conn = conn
        self.resp = resp
        self.status = resp.status

    def header(self, name: str) -> str:
        return self.resp.getheader(name) or ""

    def read(self, n: int = -1) -> bytes:
        return self.resp.read(n) if n >= 0 else self.resp.read()

    def readinto(self, buf: memoryview) -> int:
        return self.resp.readinto(buf)

    def read_limited(self, limit: int) -> bytes:
        length = self.header("Content-Length")
        if length.isdigit() and int(length) > limit:
            raise InvalidArgument(f"response too large: {length} bytes exceeds {limit}")
        data = self.resp.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"response too large: exceeds {limit} bytes")
        return data

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_text(r: _Response) -> str:
    try:
        body = r.read_limited(64 * 1024)
        obj = json.loads(body)
        errs = obj.get("errors") or []
        if errs:
            return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".lower() for e in errs)
        return body.decode(errors="replace")[:200]
    except (ValueError, InvalidArgument, OSError, http.client.HTTPException):
        return ""


def _raise_for(r: _Response, what: str) -> None:
    text = _error_text(r)
    detail = f": {text}" if text else ""
    if r.status == 404:
        raise NotFound(f"{what}: not found{detail}")
    if r.status == 401:
        raise Unauthorized(f"{what}: unauthorized{detail}")
    if r.status == 403:
        raise Denied(f"{what}: denied{detail}")
    if r.status >= 500 or r.status == 429:
        raise Unavailable(f"{what}: registry answered {r.status}{detail}")
    raise FailedPrecondition(f"{what}: registry answered {r.status}{detail}")


class RegistryClient:
    """Distribution API client; thread-safe (one connection per request)."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options or RegistryOptions()
        creds = load_docker_credentials(self.options.docker_config)
        creds.update(self.options.credentials)
        self._creds = creds
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}  # (host, scope) -> Authorization
        self._basic: dict[str, str] = {}  # host -> Authorization

    # -- endpoints ---------------------------------------------------------

    def _scheme(self, host: str) -> str:
        return "http" if _is_loopback(host) or host in self.options.insecure else "https"

    def endpoints(self, domain: str, *, pull: bool = True) -> list[Endpoint]:
        out = []
        if pull:
            for url in self.options.mirrors.get(domain, ()):
                parts = urllib.parse.urlsplit(url if "://" in url else f"//{url}")
                scheme = parts.scheme or self._scheme(parts.netloc)
                out.append(Endpoint(scheme, parts.netloc, parts.netloc, parts.path.rstrip("/")))
        host = DOCKER_HUB_API if domain == DEFAULT_DOMAIN else domain
        out.append(Endpoint(self._scheme(domain), host, domain))
        return out

    # -- transport ---------------------------------------------------------

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, timeout=self.options.timeout, blocksize=_CHUNK)
        return http.client.HTTPConnection(host, timeout=self.options.timeout, blocksize=_CHUNK)

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | BinaryIO | None = None,
    ) -> _Response:
        parts = urllib.parse.urlsplit(url)
        conn = self._connect(parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, target, body=body, headers={"User-Agent": _USER_AGENT, **headers})
            return _Response(conn, conn.getresponse())
        except BaseException:
            conn.close()
            raise

    def _request(
        self,
        ep: Endpoint,
        method: str,
        path: str,
        *,
        scope: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | BinaryIO | None = None,
        url: str | None = None,
    ) -> _Response:
        """Send with auth (answering one 401 challenge) and follow redirects."""
        url = url or f"{ep.scheme}://{ep.host}{ep.path_prefix}{path}"
        hdrs = dict(headers or {})
        retried_auth = False
        for _ in range(8):
            same_host = urllib.parse.urlsplit(url).netloc == ep.host
            auth = self._auth_header(ep, scope) if same_host else None
            send = dict(hdrs)
            if auth:
                send["Authorization"] = auth
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            r = self._send(method, url, send, body)
            if r.status == 401 and same_host and not retried_auth:
                challenge = r.header("WWW-Authenticate")
                r.close()
                retried_auth = True
                self._answer_challenge(ep, scope, challenge)
                continue
            if r.status in (301, 302, 303, 307, 308):
                location = r.header("Location")
                r.close()
                url = urllib.parse.urljoin(url, location)
                if r.status == 303:
                    method, body = "GET", None
                continue
            return r
        raise Unavailable(f"{method} {url}: too many redirects or auth rounds")

    def _auth_header(self, ep: Endpoint, scope: str) -> str | None:
        with self._lock:
            return self._tokens.get((ep.host, scope)) or self._basic.get(ep.host)

    def _answer_challenge(self, ep: Endpoint, scope: str, challenge: str) -> None:
        scheme, params = parse_www_authenticate(challenge)
        creds = self._creds.get(ep.domain) or self._creds.get(ep.host)
        if scheme == "basic":
            if creds is None:
                raise Unauthorized(f"{ep.host}: authentication required and no credentials")
            with self._lock:
                self._basic[ep.host] = _basic(creds)
            return
        if scheme != "bearer" or "realm" not in params:
            raise Unauthorized(f"{ep.host}: unsupported authentication challenge {challenge!r}")
        query = [("service", params.get("service", ""))] if params.get("service") else []
        for s in scope.split(" "):
            query.append(("scope", s))
        realm = params["realm"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"Authorization": _basic(creds)} if creds else {}
        r = self._send("GET", url, headers)
        with r:
            if r.status != 200:
                _raise_for(r, f"token from {realm}")
            try:
                obj = json.loads(r.read_limited(1 << 20))
            except ValueError:
                raise Unauthorized(f"{realm}: invalid token response")
        token = obj.get("token") or obj.get("access_token")
        if not token:
            raise Unauthorized(f"{realm}: no token in response")
        with self._lock:
            self._tokens[(ep.host, scope)] = f"Bearer {token}"

    # -- manifests ---------------------------------------------------------

    def get_manifest(
        self, ref: Reference, *, obj: str | None = None
    ) -> tuple[Endpoint, Descriptor, bytes]:
        """Fetch a manifest or index by tag or digest, verifying the digest."""
        wanted = obj or ref.object
        last: Exception | None = None
        for ep in self.endpoints(ref.domain):
            try:
                return ep, *self._get_manifest(ep, ref.path, wanted)
            except (OSError, http.client.HTTPException, Unavailable, NotFound) as e:
                last = e  # a mirror that fails or lacks it: try the next endpoint
        assert last is not None
        if isinstance(last, SkiffError):
            raise last
        raise Unavailable(f"{ref.domain}: {last}")

    def _get_manifest(self, ep: Endpoint, path: str, wanted: str) -> tuple[Descriptor, bytes]:
        scope = f"repository:{path}:pull"
        with self._request(
            ep,
            "GET",
            f"/v2/{path}/manifests/{wanted}",
            scope=scope,
            headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)},
        ) as r:
            if r.status != 200:
                _raise_for(r, f"manifest {path}:{wanted}")
            data = r.read_limited(mt.MAX_MANIFEST_SIZE)
            content_type = r.header("Content-Type").split(";")[0].strip()
            header_digest = r.header("Docker-Content-Digest")
        if wanted.startswith(("sha256:", "sha512:")):
            expected = Digest(wanted)
            actual = Digest.from_bytes(data, expected.algorithm)
            if actual != expected:
                raise FailedPrecondition(
                    f"manifest digest mismatch: got {actual}, expected {expected}"
                )
        else:
            actual = Digest.from_bytes(data)
            if header_digest.startswith("sha256:") and header_digest != actual:
                raise FailedPrecondition(
                    f"manifest digest mismatch: got {actual}, registry says {header_digest}"
                )
        media_type = (
            content_type if content_type in mt.MANIFESTS | mt.INDEXES else sniff_media_type(data)
        )
        return Descriptor(media_type=media_type, digest=actual, size=len(data)), data

    def put_manifest(
        self, ref: Reference, media_type: str, data: bytes, obj: str | None = None
    ) -> Digest:
        ep = self.endpoints(ref.domain, pull=False)[0]
        scope = f"repository:{ref.path}:pull,push"
        with self._request(
            ep,
            "PUT",
            f"/v2/{ref.path}/manifests/{obj or ref.object}",
            scope=scope,
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            body=data,
        ) as r:
            if r.status not in (200, 201):
                _raise_for(r, f"put manifest {ref}")
        return Digest.from_bytes(data)

    # -- blobs -------------------------------------------------------------

    def get_small_blob(self, ep: Endpoint, path: str, desc: Descriptor) -> bytes:
        """A config (bounded in size, verified)."""
        if desc.size > mt.MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"blob {desc.digest} too large: {desc.size} bytes")
        with self._request(
            ep, "GET", f"/v2/{path}/blobs/{desc.digest}", scope=f"repository:{path}:pull"
        ) as r:
            if r.status != 200:
                _raise_for(r, f"blob {desc.digest}")
            data = r.read_limited(mt.MAX_MANIFEST_SIZE)
        actual = Digest.from_bytes(data, desc.digest.algorithm)
        if actual != desc.digest or len(data) != desc.size:
            raise FailedPrecondition(f"blob digest mismatch: got {actual}, expected {desc.digest}")
        return data

    def fetch_blob(
        self,
        ep: Endpoint,
        path: str,
        desc: Descriptor,
        writer: Any,
        *,
        on_progress: Callable[[str, int], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> Digest:
        """Download into a content-store writer, resuming from its offset
        (HTTP Range) after a broken connection, then commit it."""
        failures = 0
        while writer.offset < desc.size:
            start = writer.offset
            try:
                headers = {"Range": f"bytes={start}-"} if start else {}
                with self._request(
                    ep,
                    "GET",
                    f"/v2/{path}/blobs/{desc.digest}",
                    scope=f"repository:{path}:pull",
                    headers=headers,
                ) as r:
                    if r.status == 206:
                        crange = r.header("Content-Range")
                        m = re.match(r"bytes (\d+)-", crange)
                        if not m or int(m.group(1)) != start:
                            raise Unavailable(f"blob {desc.digest}: bad Content-Range {crange!r}")
                    elif r.status == 200:
                        if start:
                            # the registry ignored Range: start over
                            writer.truncate(0)
                            if on_restart is not None:
                                on_restart()
                    elif r.status == 416 and start >= desc.size:
                        break
                    else:
                        _raise_for(r, f"blob {desc.digest}")
                    # one buffer for the whole blob: no allocation or copy per chunk
                    buf = memoryview(bytearray(_CHUNK))
                    while writer.offset < desc.size:
                        n = r.readinto(buf[: min(_CHUNK, desc.size - writer.offset)])
                        if not n:
                            raise Unavailable(
                                f"blob {desc.digest}: connection closed at {writer.offset} of {desc.size}"
                            )
                        writer.write(buf[:n])
                        if on_progress is not None:
                            on_progress("downloading", writer.offset)
            except (OSError, http.client.HTTPException, Unavailable) as e:
                if writer.offset > start:
                    failures = 0  # progress was made: the budget is per stall
                failures += 1
                if failures > self.options.retries:
                    raise Unavailable(f"blob {desc.digest}: giving up after {failures} tries: {e}")
                if on_progress is not None:
                    on_progress("retrying", writer.offset)
                time.sleep(min(0.1 * 2**failures, 2.0))
        return Digest(writer.commit(desc.size, desc.digest))

    def blob_exists(self, ep: Endpoint, path: str, digest: Digest, scope: str) -> bool:
        with self._request(ep, "HEAD", f"/v2/{path}/blobs/{digest}", scope=scope) as r:
            if r.status == 200:
                return True
            if r.status == 404:
                return False
            _raise_for(r, f"blob {digest}")
        return False

    def push_blob(
        self,
        ref: Reference,
        desc: Descriptor,
        open_blob: Callable[[], BinaryIO],
        *,
        mount_from: Sequence[str] = (),
    ) -> str:
        """Upload a blob unless the registry has it; returns what happened:
        `exists`, `mounted` or `uploaded`."""
        ep = self.endpoints(ref.domain, pull=False)[0]
        scope = f"repository:{ref.path}:pull,push"
        if self.blob_exists(ep, ref.path, desc.digest, scope):
            return "exists"
        location = ""
        for source in mount_from:
            if source == ref.path:
                continue
            mscope = f"{scope} repository:{source}:pull"
            q = urllib.parse.urlencode({"mount": str(desc.digest), "from": source})
            with self._request(
                ep,
                "POST",
                f"/v2/{ref.path}/blobs/uploads/?{q}",
                scope=mscope,
                headers={"Content-Length": "0"},
                body=b"",
            ) as r:
                if r.status == 201:
                    return "mounted"
                if r.status == 202:
                    location = r.header("Location")
                    break
        if not location:
            with self._request(
                ep,
                "POST",
                f"/v2/{ref.path}/blobs/uploads/",
                scope=scope,
                headers={"Content-Length": "0"},
                body=b"",
            ) as r:
                if r.status != 202:
                    _raise_for(r, f"start upload of {desc.digest}")
                location = r.header("Location")
        base = f"{ep.scheme}://{ep.host}{ep.path_prefix}/"
        url = urllib.parse.urljoin(base, location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": str(desc.digest)})
        with (
            open_blob() as f,
            self._request(
                ep,
                "PUT",
                "",
                url=url,
                scope=scope,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
                body=f,
            ) as r,
        ):
            if r.status not in (201, 204):
                _raise_for(r, f"upload {desc.digest}")
        return "uploaded"


def _basic(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def verify_digest(data: bytes, expected: Digest) -> None:
    d = Digester(expected.algorithm)
    d.update(data)
    if d.digest() != expected:
        raise FailedPrecondition(f"digest mismatch: got {d.digest()}, expected {expected}")
