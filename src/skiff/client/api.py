"""The typed Engine API client: one method per endpoint the CLI uses.

Sits under the CLI and over transport.py (DESIGN.md: skiff CLI -> Engine
API -> skiffd or dockerd). Negotiates the API version through /_ping on first
use, keeps one idle connection for reuse, streams JSON for pull, push, events,
logs and load, and hands out hijacked streams for attach and exec.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from skiff.client.errors import APIError, DaemonUnreachable
from skiff.client.transport import (
    DEFAULT_HOST,
    Response,
    Stream,
    TLSConfig,
    connect,
    encode_query,
    quote_path,
    request_bytes,
)

JSON = dict[str, Any]
MAX_API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
Body = bytes | Iterable[bytes] | IO[bytes] | None


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


class Hijacked:
    """A connection taken over after an Upgrade: raw bytes both ways.

    Bytes the HTTP reader buffered past the response head are moved to
    `pending` once, so that callers can select() on the socket itself.
    """

    def __init__(self, stream: Stream, multiplexed: bool) -> None:
        self.stream = stream
        self.multiplexed = multiplexed
        self.sock = stream.sock
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)
        try:
            # peek returns the buffer without reading when it holds bytes; a raw
            # read on the non-blocking socket gives nothing rather than blocking
            try:
                buffered = stream.reader.peek()  # type: ignore[attr-defined]
            except (BlockingIOError, OSError):
                buffered = b""
            self.pending = stream.reader.read(len(buffered)) if buffered else b""
        finally:
            self.sock.settimeout(timeout)

    def send(self, data: bytes) -> None:
        self.stream.send(data)

    def recv(self, size: int = 65536) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            return b""

    def close_write(self) -> None:
        self.stream.close_write()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.stream.close()


class Client:
    """A client of one daemon; cheap to make, connects lazily."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        *,
        tls: TLSConfig | None = None,
        version: str | None = None,
        timeout: float | None = None,
        user_agent: str = "skiff-cli",
    ) -> None:
        self.host = host
        self.tls = tls
        self.timeout = timeout
        self.user_agent = user_agent
        self._version = version
        self._idle: Stream | None = None
        self.ping_headers: dict[str, str] = {}

    # -- plumbing --------------------------------------------------------

    @property
    def api_version(self) -> str:
        if self._version is None:
            self._version = self.negotiate()
        return self._version

    def negotiate(self) -> str:
        resp = self._send("GET", "/_ping")
        resp.read()
        self.ping_headers = resp.headers
        self._release(resp)
        server = resp.headers.get("api-version", "")
        if not server:
            return MAX_API_VERSION
        return min(server, MAX_API_VERSION, key=version_tuple)

    def close(self) -> None:
        if self._idle is not None:
            self._idle.close()
            self._idle = None

    def _stream(self) -> Stream:
        if self._idle is not None:
            s, self._idle = self._idle, None
            return s
        return connect(self.host, self.tls, self.timeout)

    def _release(self, resp: Response) -> None:
        if resp.done and resp.reusable and self._idle is None:
            self._idle = resp.stream
        else:
            resp.stream.close()

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Body = None,
        headers: dict[str, str] | None = None,
        versioned: bool = False,
        upgrade: bool = False,
    ) -> Response:
        target = (f"/v{self.api_version}" if versioned else "") + path + encode_query(params)
        hdrs = {"User-Agent": self.user_agent}
        if upgrade:
            hdrs["Connection"] = "Upgrade"
            hdrs["Upgrade"] = "tcp"
        hdrs.update(headers or {})
        reused = self._idle is not None
        stream = self._stream()
        try:
            if body is None or isinstance(body, bytes):
                length = (
                    len(body) if body is not None else (0 if method in ("POST", "PUT") else None)
                )
                stream.send(request_bytes(method, target, hdrs, length) + (body or b""))
            else:
                hdrs["Transfer-Encoding"] = "chunked"
                stream.send(request_bytes(method, target, hdrs, None))
                try:
                    for chunk in iter_body(body):
                        if chunk:
                            stream.send(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    stream.send(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    # a daemon may answer (say, 400 for a bad option) and close before
                    # reading the whole body: its answer is worth more than the EPIPE
                    try:
                        early = Response(stream, method)
                        early.reusable = False
                        return early
                    except (OSError, ValueError):
                        raise ConnectionError("the daemon closed the connection") from None
            return Response(stream, method)
        except (ConnectionError, BrokenPipeError) as e:
            stream.close()
            if reused and (body is None or isinstance(body, bytes)):
                # the daemon may close an idle keep-alive connection at any time
                return self._send(method, path, params, body, headers, versioned, upgrade)
            raise DaemonUnreachable(self.host, str(e)) from e
        except OSError as e:
            stream.close()
            raise DaemonUnreachable(self.host, e.strerror or str(e)) from e

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Body = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send a versioned request; raise the mapped APIError for 4xx/5xx."""
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        resp = self._send(method, path, params, body, hdrs, versioned=True)
        try:
            resp.raise_for_status()
        except APIError:
            self._release(resp)
            raise
        return resp

    def call(self, method: str, path: str, params: dict[str, Any] | None = None,
             json_body: Any = None, body: Body = None,
             headers: dict[str, str] | None = None) -> Any:  # fmt: skip
        """A request whose whole answer is read and decoded (JSON, text, or None)."""
        resp = self.request(method, path, params, body=body, json_body=json_body, headers=headers)
        data = resp.read()
        self._release(resp)
        if not data:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return json.loads(data)
        return data.decode("utf-8", "replace")

    def stream_json(self, resp: Response) -> Iterator[JSON]:
        """The objects of a streamed JSON response, one at a time."""
        decoder = json.JSONDecoder()
        buf = ""
        try:
            for chunk in resp.iter_bytes():
                buf += chunk.decode("utf-8", "replace")
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        obj, end = decoder.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    yield obj
        finally:
            self._release(resp)

    def stream_bytes(self, resp: Response) -> Iterator[bytes]:
        try:
            yield from resp.iter_bytes()
        finally:
            self._release(resp)

    def hijack(self, path: str, params: dict[str, Any] | None = None,
               json_body: Any = None) -> Hijacked:  # fmt: skip
        """POST with Upgrade: tcp and hand the raw connection over."""
        body = json.dumps(json_body).encode() if json_body is not None else b""
        hdrs = {"Content-Type": "application/json"}
        resp = self._send("POST", path, params, body, hdrs, versioned=True, upgrade=True)
        if resp.status >= 400:
            resp.raise_for_status()
        multiplexed = "multiplexed" in resp.headers.get("content-type", "")
        return Hijacked(resp.stream, multiplexed)

    # -- system ----------------------------------------------------------

    def ping(self) -> str:
        resp = self._send("GET", "/_ping")
        data = resp.read()
        self.ping_headers = resp.headers
        self._release(resp)
        return data.decode()

    def version(self) -> JSON:
        result: JSON = self.call("GET", "/version")
        return result

    def info(self) -> JSON:
        result: JSON = self.call("GET", "/info")
        return result

    def df(self) -> JSON:
        result: JSON = self.call("GET", "/system/df")
        return result

    def events(self, since: str | None = None, until: str | None = None,
               filters: dict[str, list[str]] | None = None) -> Iterator[JSON]:  # fmt: skip
        params = {"since": since, "until": until, "filters": filters_param(filters)}
        return self.stream_json(self.request("GET", "/events", params))

    def auth(self, config: JSON) -> JSON:
        result: JSON = self.call("POST", "/auth", json_body=config)
        return result

    # -- containers ------------------------------------------------------

    def containers(self, all: bool = False, limit: int | None = None, size: bool = False,
                   filters: dict[str, list[str]] | None = None) -> list[JSON]:  # fmt: skip
        params = {"all": all or None, "limit": limit, "size": size or None,
                  "filters": filters_param(filters)}  # fmt: skip
        result: list[JSON] = self.call("GET", "/containers/json", params)
        return result

    def before(self, version: str) -> bool:
        """Whether the negotiated API version is older than `version`."""
        return version_tuple(self.api_version) < version_tuple(version)

    def create_container(self, config: JSON, name: str | None = None,
                         platform: str | None = None) -> JSON:  # fmt: skip
        host = config.get("HostConfig")
        if isinstance(host, dict) and "ConsoleSize" in host and self.before("1.42"):
            # ConsoleSize came with API 1.42; the docker client zeroes it for older daemons
            config = {**config, "HostConfig": {**host, "ConsoleSize": [0, 0]}}
        result: JSON = self.call(
            "POST", "/containers/create", {"name": name, "platform": platform}, json_body=config
        )
        return result

    def inspect_container(self, id: str, size: bool = False) -> JSON:
        result: JSON = self.call(
            "GET", f"/containers/{quote_path(id)}/json", {"size": size or None}
        )
        return result

    def start(self, id: str, detach_keys: str | None = None) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/start", {"detachKeys": detach_keys})

    def stop(self, id: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/stop", {"t": timeout, "signal": signal})

    def restart(self, id: str, timeout: int | None = None, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/restart", {"t": timeout, "signal": signal})

    def kill(self, id: str, signal: str | None = None) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/kill", {"signal": signal})

    def remove_container(self, id: str, force: bool = False, volumes: bool = False,
                         link: bool = False) -> None:  # fmt: skip
        params = {"force": force or None, "v": volumes or None, "link": link or None}
        self.call("DELETE", f"/containers/{quote_path(id)}", params)

    def wait(self, id: str, condition: str | None = None) -> JSON:
        result: JSON = self.call(
            "POST", f"/containers/{quote_path(id)}/wait", {"condition": condition}
        )
        return result

    def wait_response(self, id: str, condition: str | None = None) -> Response:
        """Start a wait and return before it answers (so the wait precedes a start)."""
        return self.request("POST", f"/containers/{quote_path(id)}/wait", {"condition": condition})

    def read_wait(self, resp: Response) -> JSON:
        data = resp.read()
        self._release(resp)
        result: JSON = json.loads(data)
        return result

    def logs(self, id: str, *, stdout: bool = True, stderr: bool = True, follow: bool = False,
             timestamps: bool = False, tail: str | None = None, since: str | None = None,
             until: str | None = None) -> Response:  # fmt: skip
        params = {"stdout": stdout, "stderr": stderr, "follow": follow or None,
                  "timestamps": timestamps or None, "tail": tail, "since": since,
                  "until": until}  # fmt: skip
        return self.request("GET", f"/containers/{quote_path(id)}/logs", params)

    def attach(self, id: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True,
               stream: bool = True, logs: bool = False,
               detach_keys: str | None = None) -> Hijacked:  # fmt: skip
        params = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "stream": stream,
                  "logs": logs or None, "detachKeys": detach_keys}  # fmt: skip
        return self.hijack(f"/containers/{quote_path(id)}/attach", params)

    def resize(self, id: str, height: int, width: int) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/resize", {"h": height, "w": width})

    def top(self, id: str, ps_args: str | None = None) -> JSON:
        result: JSON = self.call("GET", f"/containers/{quote_path(id)}/top", {"ps_args": ps_args})
        return result

    def stats(self, id: str, stream: bool = True) -> Iterator[JSON]:
        resp = self.request("GET", f"/containers/{quote_path(id)}/stats", {"stream": stream})
        return self.stream_json(resp)

    def rename(self, id: str, name: str) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/rename", {"name": name})

    def pause(self, id: str) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/pause")

    def unpause(self, id: str) -> None:
        self.call("POST", f"/containers/{quote_path(id)}/unpause")

    def update(self, id: str, config: JSON) -> JSON:
        result: JSON = self.call("POST", f"/containers/{quote_path(id)}/update", json_body=config)
        return result

    def changes(self, id: str) -> list[JSON]:
        result: list[JSON] | None = self.call("GET", f"/containers/{quote_path(id)}/changes")
        return result or []

    def export(self, id: str) -> Iterator[bytes]:
        return self.stream_bytes(self.request("GET", f"/containers/{quote_path(id)}/export"))

    def get_archive(self, id: str, path: str) -> tuple[JSON, Iterator[bytes]]:
        resp = self.request("GET", f"/containers/{quote_path(id)}/archive", {"path": path})
        stat = decode_path_stat(resp.headers.get("x-docker-container-path-stat", ""))
        return stat, self.stream_bytes(resp)

    def stat_path(self, id: str, path: str) -> JSON:
        resp = self.request("HEAD", f"/containers/{quote_path(id)}/archive", {"path": path})
        resp.read()
        self._release(resp)
        return decode_path_stat(resp.headers.get("x-docker-container-path-stat", ""))

    def put_archive(self, id: str, path: str, data: Body,
                    no_overwrite_dir_non_dir: bool = True) -> None:  # fmt: skip
        params = {"path": path, "noOverwriteDirNonDir": no_overwrite_dir_non_dir}
        self.call("PUT", f"/containers/{quote_path(id)}/archive", params, body=data,
                  headers={"Content-Type": "application/x-tar"})  # fmt: skip

    def prune_containers(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.call("POST", "/containers/prune", {"filters": filters_param(filters)})
        return result

    # -- exec ------------------------------------------------------------

    def exec_create(self, id: str, config: JSON) -> str:
        if "ConsoleSize" in config and self.before("1.42"):
            config = {k: v for k, v in config.items() if k != "ConsoleSize"}
        result: JSON = self.call("POST", f"/containers/{quote_path(id)}/exec", json_body=config)
        return str(result["Id"])

    def exec_start_detached(self, exec_id: str) -> None:
        self.call("POST", f"/exec/{exec_id}/start", json_body={"Detach": True, "Tty": False})

    def exec_attach(self, exec_id: str, tty: bool,
                    console_size: list[int] | None = None) -> Hijacked:  # fmt: skip
        body: JSON = {"Detach": False, "Tty": tty}
        if console_size and not self.before("1.42"):
            body["ConsoleSize"] = console_size
        return self.hijack(f"/exec/{exec_id}/start", json_body=body)

    def exec_inspect(self, exec_id: str) -> JSON:
        result: JSON = self.call("GET", f"/exec/{exec_id}/json")
        return result

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.call("POST", f"/exec/{exec_id}/resize", {"h": height, "w": width})

    # -- images ----------------------------------------------------------

    def images(self, all: bool = False, filters: dict[str, list[str]] | None = None,
               digests: bool = False) -> list[JSON]:  # fmt: skip
        params = {"all": all or None, "filters": filters_param(filters),
                  "digests": digests or None}  # fmt: skip
        result: list[JSON] = self.call("GET", "/images/json", params)
        return result

    def inspect_image(self, name: str) -> JSON:
        result: JSON = self.call("GET", f"/images/{name}/json")
        return result

    def pull(self, image: str, tag: str | None = None, auth: JSON | None = None,
             platform: str | None = None) -> Iterator[JSON]:  # fmt: skip
        params = {"fromImage": image, "tag": tag, "platform": platform}
        resp = self.request("POST", "/images/create", params, headers=auth_header(auth))
        return self.stream_json(resp)

    def push(self, name: str, tag: str | None = None, auth: JSON | None = None) -> Iterator[JSON]:
        hdrs = auth_header(auth) or {"X-Registry-Auth": "e30="}  # base64 of {}
        resp = self.request("POST", f"/images/{name}/push", {"tag": tag}, headers=hdrs)
        return self.stream_json(resp)

    def tag(self, image: str, repo: str, tag: str | None = None) -> None:
        self.call("POST", f"/images/{image}/tag", {"repo": repo, "tag": tag})

    def remove_image(self, name: str, force: bool = False, noprune: bool = False) -> list[JSON]:
        params = {"force": force or None, "noprune": noprune or None}
        result: list[JSON] = self.call("DELETE", f"/images/{name}", params)
        return result

    def history(self, name: str) -> list[JSON]:
        result: list[JSON] = self.call("GET", f"/images/{name}/history")
        return result

    def save(self, names: list[str]) -> Iterator[bytes]:
        resp = self.request("GET", "/images/get" + encode_query_multi("names", names))
        return self.stream_bytes(resp)

    def load(self, data: Body, quiet: bool = False) -> Iterator[JSON]:
        resp = self.request("POST", "/images/load", {"quiet": quiet}, body=data,
                            headers={"Content-Type": "application/x-tar"})  # fmt: skip
        return self.stream_json(resp)

    def import_image(self, data: Body, repo: str | None = None, tag: str | None = None,
                     message: str | None = None, changes: list[str] | None = None,
                     src: str = "-") -> Iterator[JSON]:  # fmt: skip
        params: dict[str, Any] = {"fromSrc": src, "repo": repo, "tag": tag, "message": message}
        path = "/images/create" + encode_query(params)
        for c in changes or []:
            path += "&" + encode_query({"changes": c})[1:]
        resp = self.request("POST", path, body=data if src == "-" else None,
                            headers={"Content-Type": "application/x-tar"})  # fmt: skip
        return self.stream_json(resp)

    def prune_images(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.call("POST", "/images/prune", {"filters": filters_param(filters)})
        return result

    def commit(self, container: str, repo: str | None = None, tag: str | None = None,
               comment: str | None = None, author: str | None = None,
               pause: bool = True, config: JSON | None = None) -> JSON:  # fmt: skip
        params = {"container": container, "repo": repo, "tag": tag, "comment": comment,
                  "author": author, "pause": pause}  # fmt: skip
        result: JSON = self.call("POST", "/commit", params, json_body=config or {})
        return result

    # -- volumes and networks --------------------------------------------

    def volumes(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.call("GET", "/volumes", {"filters": filters_param(filters)})
        return result

    def create_volume(self, config: JSON) -> JSON:
        result: JSON = self.call("POST", "/volumes/create", json_body=config)
        return result

    def inspect_volume(self, name: str) -> JSON:
        result: JSON = self.call("GET", f"/volumes/{quote_path(name)}")
        return result

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.call("DELETE", f"/volumes/{quote_path(name)}", {"force": force or None})

    def prune_volumes(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.call("POST", "/volumes/prune", {"filters": filters_param(filters)})
        return result

    def networks(self, filters: dict[str, list[str]] | None = None) -> list[JSON]:
        result: list[JSON] = self.call("GET", "/networks", {"filters": filters_param(filters)})
        return result

    def inspect_network(self, name: str) -> JSON:
        result: JSON = self.call("GET", f"/networks/{quote_path(name)}")
        return result

    def prune_networks(self, filters: dict[str, list[str]] | None = None) -> JSON:
        result: JSON = self.call("POST", "/networks/prune", {"filters": filters_param(filters)})
        return result

    def create_network(self, config: JSON) -> JSON:
        result: JSON = self.call("POST", "/networks/create", json_body=config)
        return result

    def remove_network(self, name: str) -> None:
        self.call("DELETE", f"/networks/{quote_path(name)}")

    def connect_network(self, network: str, container: str,
                        endpoint: JSON | None = None) -> None:  # fmt: skip
        body: JSON = {"Container": container}
        if endpoint:
            body["EndpointConfig"] = endpoint
        self.call("POST", f"/networks/{quote_path(network)}/connect", json_body=body)

    def disconnect_network(self, network: str, container: str, force: bool = False) -> None:
        body = {"Container": container, "Force": force}
        self.call("POST", f"/networks/{quote_path(network)}/disconnect", json_body=body)

    # -- builds ----------------------------------------------------------

    def prune_build_cache(self, all: bool = False, filters: dict[str, list[str]] | None = None,
                          keep_storage: int = 0) -> JSON:  # fmt: skip
        """POST /build/prune; `all` only when asked, as the docker CLI sends it."""
        params = {"all": all or None, "filters": filters_param(filters),
                  "keep-storage": keep_storage or None}  # fmt: skip
        result: JSON = self.call("POST", "/build/prune", params)
        return result

    def build(self, context: Body, params: dict[str, Any],
              registry_config: JSON | None = None) -> Iterator[JSON]:  # fmt: skip
        """POST /build with a tar context; the daemon's JSON messages as they come.

        params are the query (t may be a list: one `t=` each); registry_config
        maps registries to credentials (X-Registry-Config) for FROM pulls.
        """
        hdrs = {"Content-Type": "application/x-tar"}
        if registry_config:
            import base64

            raw = json.dumps(registry_config).encode()
            hdrs["X-Registry-Config"] = base64.urlsafe_b64encode(raw).decode()
        multi = {k: v for k, v in params.items() if isinstance(v, list)}
        single = {k: v for k, v in params.items() if not isinstance(v, list)}
        path = "/build" + encode_query(single)
        for k, values in multi.items():
            for v in values:
                path += ("&" if "?" in path else "?") + encode_query({k: v})[1:]
        resp = self.request("POST", path, body=context, headers=hdrs)
        return self.stream_json(resp)


def iter_body(body: Iterable[bytes] | IO[bytes]) -> Iterator[bytes]:
    if hasattr(body, "read"):
        while chunk := body.read(1 << 16):
            yield chunk
    else:
        yield from body


def filters_param(filters: dict[str, list[str]] | None) -> str | None:
    if not filters:
        return None
    return json.dumps({k: {v: True for v in vs} for k, vs in filters.items()})


def encode_query_multi(name: str, values: list[str]) -> str:
    from urllib.parse import urlencode

    return "?" + urlencode([(name, v) for v in values])


def auth_header(auth: JSON | None) -> dict[str, str]:
    if not auth:
        return {}
    import base64

    data = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
    return {"X-Registry-Auth": data}


def decode_path_stat(header: str) -> JSON:
    if not header:
        return {}
    import base64

    result: JSON = json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
    return result


__all__ = ["DEFAULT_HOST", "Client", "DaemonUnreachable", "Hijacked", "TLSConfig"]
