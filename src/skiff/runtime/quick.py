"""The common `start` and `delete` with the interpreter's built-in modules alone.

Part of skiff-runc's command line (skiff.runtime.cli), below the lifecycle
in skiff.runtime.container. A container's `start` and `delete` are new
interpreters each time, and the `os` module and the runtime's modules cost
more than the work (about 4 ms against 1 ms here). The usual case, `start`
of a created container and `delete` of a stopped one, needs only the state
file, /proc, the exec FIFO and rmdir: posix and the C half of json do that.

Anything else (another status, hooks to run, a cgroup still busy, a state
that does not read) returns False before it has changed anything that the
full path would do differently, and skiff.runtime.container runs instead,
so errors and rarer cases come from one place. The checks repeat
skiff.runtime.state's (status from init's start time and the FIFO).
"""

import _json
import posix

_S_IFMT = 0o170000
_S_IFDIR = 0o040000


class _Context:
    """What _json's scanner asks of its decoder, as json.JSONDecoder() has it."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None
    memo: dict[str, str] = {}


def _load(root: str, container_id: str) -> "tuple[str, dict[str, object]] | None":
    """The container's state directory and saved state, or None (the full path decides)."""
    ok = (
        container_id
        and container_id not in (".", "..")
        and all(c.isalnum() or c in "_+-." for c in container_id)
    )
    if not ok:
        return None
    directory = f"{root}/{container_id}" if root else container_id
    try:
        fd = posix.open(f"{directory}/state.json", posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = posix.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        posix.close(fd)
    try:
        data, _ = _json.make_scanner(_Context())(b"".join(chunks).decode(), 0)  # type: ignore[arg-type]
    except Exception:
        return None
    return (directory, data) if isinstance(data, dict) else None


def _alive(data: "dict[str, object]") -> bool:
    """Init still runs: the saved pid has the saved start time and is not a zombie."""
    pid = data.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        fd = posix.open(f"/proc/{pid}/stat", posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        raw = posix.read(fd, 4096)
    finally:
        posix.close(fd)
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return False
    return int(fields[19]) == data.get("start_time")


def _exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def _hooks(data: "dict[str, object]", kind: str) -> bool:
    config = data.get("config")
    hooks = config.get("hooks") if isinstance(config, dict) else None
    return bool(hooks.get(kind)) if isinstance(hooks, dict) else False


def start(root: str, container_id: str) -> bool:
    """Release a created container's init; False if the full path must handle it."""
    loaded = _load(root, container_id)
    if loaded is None:
        return False
    directory, data = loaded
    fifo = f"{directory}/exec.fifo"
    if _hooks(data, "poststart") or not _alive(data) or not _exists(fifo):
        return False
    try:
        fd = posix.open(fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        # Init blocks opening the FIFO for writing until this open, then writes one
        # byte and goes on to execve. With no writer (init not there yet, or dead)
        # the read is at end of file at once and the full path polls instead.
        posix.set_blocking(fd, True)
        released = bool(posix.read(fd, 1))
    finally:
        posix.close(fd)
    if not released:
        return False
    try:
        posix.unlink(fifo)
    except FileNotFoundError:
        pass
    return True


def delete(root: str, container_id: str) -> bool:
    """Remove a stopped container; False if the full path must handle it."""
    loaded = _load(root, container_id)
    if loaded is None:
        return False
    directory, data = loaded
    cgroup = data.get("cgroup")
    if _hooks(data, "poststop") or _alive(data) or not isinstance(cgroup, dict):
        return False
    paths = cgroup.get("paths")
    cgroup_root = cgroup.get("root")
    if not isinstance(paths, dict) or not isinstance(cgroup_root, str):
        return False
    unified = bool(cgroup.get("unified"))
    # the same directories, in the same order, as cgroups.Manager.remove
    for controller in [""] if unified else list(paths):
        base = cgroup_root if unified else f"{cgroup_root}/{controller}"
        if not unified:
            try:
                if posix.stat(base).st_mode & _S_IFMT != _S_IFDIR:
                    continue
            except OSError:
                continue
        try:
            posix.rmdir(f"{base}{paths['' if unified else controller]}")
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno == 16:  # EBUSY: the full path waits for the cgroup to empty
                return False
    try:
        for name in posix.listdir(directory):
            posix.unlink(f"{directory}/{name}")
        posix.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError:
        return False  # the full path meets the same error and reports it
    return True
