"""The start side of skiff-shim's template protocol, shared by `skiff-shim start` and skiff-containerd.

Below skiff-shim and skiff-containerd, beside the ttrpc wire code: how a shim
for (supervisor address, namespace, id) is named and asked for. Every skiff
shim is forked by a template process (skiff.shim.template) listening on a
root-only SOCK_SEQPACKET socket beside the shim sockets. `skiff-shim start`
(containerd's shim v2 bootstrap, an executed binary) asks it; skiff-containerd,
when the runtime's shim binary is this checkout's own launcher, asks it
directly and saves the bootstrap's interpreter start. Both send the same
request, so the shim cannot tell them apart; a supervisor that knows nothing
of templates (containerd) executes the binary as always.

Request: one message, NUL-separated fields (PROTOCOL, the code stamp, the
bundle, the umask in octal, the argument count, the arguments, the
environment as KEY=VALUE), with the shim's listening socket over
SCM_RIGHTS. Answer: `ok <pid>`, `stale` (the template runs other code and
goes away) or `error ...`.

Imported by every `start`: at module level only os, sys and _socket.
"""

from __future__ import annotations

import _socket
import os
import sys

PROTOCOL = b"skiff-shim-template/1"
_FD_SIZE = 4  # sizeof(int), as SCM_RIGHTS carries descriptors
_SHIM_MODULE = b"from skiff.shim.main import main"
_LAUNCHER_MARK = b"# a lean launcher written by tools/launchers.py"


def _sha256_hex(data: bytes) -> str:
    try:
        # the builtin module: hashlib would load OpenSSL, about 0.6 MB per shim
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256
    digest: str = sha256(data).hexdigest()
    return digest


def socket_path(address: str, namespace: str, container_id: str) -> str:
    """Where the shim listens: beside containerd's socket, under s/<hash> as containerd's shims do."""
    digest = _sha256_hex(f"{address}/{namespace}/{container_id}".encode())
    base = os.path.join(os.path.dirname(os.path.abspath(address)), "s")
    path = os.path.join(base, digest)
    if len(path) >= 104:  # sun_path limit
        path = os.path.join("/run/skiff/s", digest)
    return path


def template_path(shim_socket: str, address: str) -> str:
    """The template's socket: in the directory of the shim sockets, one per supervisor address."""
    digest = _sha256_hex(address.encode())[:32]
    return os.path.join(os.path.dirname(shim_socket), f"template-{digest}")


def code_stamp(executable: str = "") -> bytes:
    """Which code a template runs: the interpreter and the shim's sources (names, sizes, mtimes).

    A template keeps running the code it imported; a `start` from a changed
    checkout or another interpreter must not be served by it. executable is
    the interpreter the shim runs under (this one by default).
    """
    skiff_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [executable or sys.executable, sys.version]
    # the runtime's and oci's too: the template pre-imports skiff-runc for the shims' helpers
    for d in (os.path.join(skiff_dir, p) for p in ("shim", "ttrpc", "runtime", "oci")):
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".py"))
        except OSError:
            names = []
        for name in names:
            st = os.stat(os.path.join(d, name))
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    st = os.stat(os.path.join(skiff_dir, "errors.py"))
    parts.append(f"errors.py:{st.st_size}:{st.st_mtime_ns}")
    return _sha256_hex("\n".join(parts).encode())[:32].encode()


class TemplateGone(Exception):
    """No template answers (or it runs other code): start one, or fork the shim directly."""


def current_umask() -> int:
    """This process's umask without setting it (os.umask would race with other threads)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def request_shim(
    path: str,
    stamp: bytes,
    argv: list[str],
    bundle: str,
    listener_fd: int,
    *,
    env: dict[bytes, bytes] | None = None,
    umask: int | None = None,
) -> int:
    """Ask the template at path to fork a shim serving listener_fd; return the shim's pid.

    The shim gets argv as its sys.argv, bundle as its directory, and env
    (this process's environment by default) and umask.
    """
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        sock.settimeout(10.0)
        try:
            sock.connect(path)
        except OSError as exc:
            raise TemplateGone(f"connect {path}: {exc}") from None
        if umask is None:
            umask = current_umask()
        environ = os.environb if env is None else env
        fields = [PROTOCOL, stamp, bundle.encode(), b"%o" % umask, b"%d" % len(argv)]
        fields += [os.fsencode(a) for a in argv]
        fields += [k + b"=" + v for k, v in environ.items()]
        fds = listener_fd.to_bytes(_FD_SIZE, sys.byteorder)
        try:
            sock.sendmsg([b"\0".join(fields)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
            reply = sock.recv(4096)
        except OSError as exc:
            raise TemplateGone(f"template {path}: {exc}") from None
    finally:
        sock.close()
    if reply.startswith(b"ok "):
        return int(reply[3:])
    raise TemplateGone(f"template {path}: {reply.decode(errors='replace') or 'no answer'}")


def alive(path: str) -> bool:
    """Whether something accepts connections at the unix socket path."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def listen(path: str) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def write_address(bundle: str, address: str) -> None:
    """<bundle>/address, which a restarted supervisor reconnects to."""
    tmp = os.path.join(bundle, "address.tmp")
    with open(tmp, "w") as f:
        f.write(address)
    os.rename(tmp, os.path.join(bundle, "address"))


def own_shim_interpreter(binary: str) -> str:
    """The interpreter of binary if it is the lean skiff-shim launcher of this checkout, else ""."""
    try:
        with open(binary, "rb") as f:
            head = f.read(1024)
    except OSError:
        return ""
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not (
        head.startswith(b"#!")
        and _LAUNCHER_MARK in head
        and _SHIM_MODULE in head
        and f"sys.path.insert(0, {src!r})".encode() in head
    ):
        return ""
    shebang = head.split(b"\n", 1)[0][2:].split()
    return os.fsdecode(shebang[0]) if shebang else ""


def start_from_template(
    binary: str,
    flags: list[str],
    bundle: str,
    *,
    address: str,
    namespace: str,
    container_id: str,
    env: dict[bytes, bytes] | None = None,
    stamp: bytes,
) -> str:
    """`<binary> <flags> start` done by asking the template: the shim's ttrpc address.

    flags are the bootstrap's (-namespace, -id, -address, ...), without
    "start". Raises TemplateGone when no template (of this code) answers;
    nothing is left behind then, and the caller executes the binary instead.
    """
    path = socket_path(address, namespace, container_id)
    shim_address = "unix://" + path
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    if os.path.exists(path):
        if alive(path):
            write_address(bundle, shim_address)
            return shim_address
        os.unlink(path)
    template = template_path(path, address)
    if not os.path.exists(template):
        raise TemplateGone(f"no template at {template}")
    listener = listen(path)
    try:
        request_shim(template, stamp, [binary, *flags, "start"], bundle, listener.fileno(), env=env)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    finally:
        listener.close()  # the shim has its own copy
    write_address(bundle, shim_address)
    return shim_address
