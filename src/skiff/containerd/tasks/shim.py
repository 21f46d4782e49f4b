"""Starting, reaching and burying one shim, with containerd's shim v2
bootstrap. Below skiff-containerd's task manager; above any shim that speaks
containerd.task.v2 (skiff-shim, containerd-shim-runc-v2).

    <shim> -namespace NS -id ID -address GRPC -publish-binary SELF start
        cwd = bundle; TTRPC_ADDRESS in the environment; runtime options (a
        protobuf Any) on stdin; prints the ttrpc address of the shim
    <shim> -namespace NS -id ID -address GRPC -publish-binary SELF -bundle B delete
        after the shim died: prints a containerd.task.v2.DeleteResponse
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable

from skiff.containerd.metadata.db import AnyValue
from skiff.errors import Internal, NotFound
from skiff.ttrpc import shimstart
from skiff.ttrpc import task as tt
from skiff.ttrpc.client import Client
from skiff.ttrpc.protobuf import Any_, Message

SHIM_BINARY_FILE = "shim-binary-path"
START_TIMEOUT = 30.0


def shim_binary_name(runtime: str) -> str:
    """io.containerd.runc.v2 -> containerd-shim-runc-v2, as containerd names them."""
    parts = runtime.split(".")
    if len(parts) < 2 or not all(parts[-2:]):
        raise NotFound(f"runtime {runtime!r}: not a valid runtime name")
    return f"containerd-shim-{parts[-2]}-{parts[-1]}"


def find_shim(runtime: str, overrides: dict[str, str]) -> str:
    """The shim binary for a runtime: the config's choice, then beside our
    Python (a venv's bin holds containerd-shim-skiff-v1), then PATH."""
    name = overrides.get(runtime) or shim_binary_name(runtime)
    if os.path.isabs(name):
        if os.access(name, os.X_OK):
            return name
        raise NotFound(f"runtime {runtime!r}: shim binary {name} not found")
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found is None:
        raise NotFound(f"runtime {runtime!r}: shim binary {name} not installed: not found")
    return found


class Shim:
    """A connection to one running shim; calls raise skiff errors."""

    def __init__(self, binary: str, address: str, client: Client) -> None:
        self.binary = binary
        self.address = address
        self.client = client

    @property
    def alive(self) -> bool:
        return not self.client.closed

    def call(
        self,
        method: str,
        request: Message,
        response: type[Message] | None = None,
        *,
        timeout: float | None = None,
    ) -> Message | None:
        payload = self.client.call(tt.SERVICE, method, request.encode(), timeout=timeout)
        return response.decode(payload) if response is not None else None

    def close(self) -> None:
        self.client.close()


def bootstrap_args(
    binary: str, ns: str, cid: str, grpc_address: str, publish_binary: str
) -> list[str]:
    return [
        binary,
        "-namespace",
        ns,
        "-id",
        cid,
        "-address",
        grpc_address,
        "-publish-binary",
        publish_binary,
    ]


def start_shim(
    binary: str,
    ns: str,
    cid: str,
    bundle: str,
    *,
    grpc_address: str,
    ttrpc_address: str,
    publish_binary: str,
    options: AnyValue | None,
) -> Shim:
    env = dict(os.environ)
    env.update(
        {
            "TTRPC_ADDRESS": ttrpc_address,
            "GRPC_ADDRESS": grpc_address,
            "NAMESPACE": ns,
            "GOMAXPROCS": "2",
        }
    )
    stdin = Any_(type_url=options.type_url, value=options.value).encode() if options else b""
    with open(os.path.join(bundle, SHIM_BINARY_FILE), "w") as f:
        f.write(binary)
    address = _start_from_template(binary, ns, cid, bundle, grpc_address, publish_binary, env)
    if address:
        return connect_shim(binary, address)
    try:
        proc = subprocess.run(
            [*bootstrap_args(binary, ns, cid, grpc_address, publish_binary), "start"],
            cwd=bundle,
            env=env,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=START_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise Internal(f"start shim {binary} for {cid}: timed out after {START_TIMEOUT:.0f}s")
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not out:
        raise Internal(f"start shim {os.path.basename(binary)} for {cid}: {out or 'no address'}")
    return connect_shim(binary, out)


# stamps a template refused ("stale"), and binaries whose template refuses us for good
_refused: set[bytes] = set()
_no_template: set[str] = set()


def _start_from_template(
    binary: str,
    ns: str,
    cid: str,
    bundle: str,
    grpc_address: str,
    publish_binary: str,
    env: dict[str, str],
) -> str:
    """Our own skiff-shim, started without executing its bootstrap: its address, or "".

    When the binary is this checkout's skiff-shim launcher and its template
    runs, ask the template for the shim as `skiff-shim start` would
    (skiff.ttrpc.shimstart): the same request, without an interpreter's start
    (some 15-30 ms). Otherwise "" and the caller executes the binary, which
    also starts the template for the next time.
    """
    if binary in _no_template:
        return ""
    interpreter = shimstart.own_shim_interpreter(binary)
    if not interpreter or not os.path.isabs(interpreter):
        return ""
    stamp = shimstart.code_stamp(interpreter)
    try:
        return shimstart.start_from_template(
            binary,
            bootstrap_args(binary, ns, cid, grpc_address, publish_binary)[1:],
            bundle,
            address=grpc_address,
            namespace=ns,
            container_id=cid,
            env={os.fsencode(k): os.fsencode(v) for k, v in env.items()},
            stamp=stamp,
        )
    except shimstart.TemplateGone as exc:
        if str(exc).endswith(": stale"):
            # A template of other code steps aside and the executed bootstrap starts
            # one of its own; if that one refuses this stamp too, we never agree.
            if stamp in _refused:
                _no_template.add(binary)
            _refused.add(stamp)
        return ""
    except OSError:
        return ""


def connect_shim(binary: str, address: str) -> Shim:
    return Shim(binary, address, Client(address, timeout=5.0))


def delete_dead_shim(
    binary: str, ns: str, cid: str, bundle: str, *, grpc_address: str, publish_binary: str
) -> tt.DeleteResponse:
    """`<shim> delete` after a shim died; a failing binary still yields 137."""
    try:
        proc = subprocess.run(
            [
                *bootstrap_args(binary, ns, cid, grpc_address, publish_binary),
                "-bundle",
                bundle,
                "delete",
            ],
            cwd=bundle if os.path.isdir(bundle) else "/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        if proc.returncode == 0:
            return tt.DeleteResponse.decode(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, Exception):
        pass
    return tt.DeleteResponse(exit_status=137)


class LogDrain:
    """Holds the read end of `<bundle>/log`, the FIFO a shim writes its log to
    (containerd-shim-runc-v2 refuses to start without a reader), and copies
    lines to our logger."""

    def __init__(self, path: str, sink: Callable[[str], None]) -> None:
        if not os.path.exists(path):
            os.mkfifo(path, 0o700)
        # read-write: the FIFO never reports EOF between shim writers
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._sink = sink
        self._closed = False
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        fd = self.fd
        try:
            while not self._closed:
                ready, _, _ = select.select([fd], [], [], 1.0)
                if not ready or self._closed:
                    continue
                data = os.read(fd, 65536)
                for line in data.decode(errors="replace").splitlines():
                    if line.strip():
                        self._sink(line)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        self._closed = True
