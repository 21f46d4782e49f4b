"""cgroups v1 and v2 for one container: create, apply limits, join, freeze, stats, remove.

The version is detected at run time from the filesystem at the cgroup root:
cgroup2 there means unified (v2); otherwise each v1 controller mounted below
it is used (this includes hybrid hosts, whose unified mount has no
controllers). Every path takes a root so that v2 can be exercised against a
directory that mimics cgroup2's files.
"""

from __future__ import annotations

import errno
import os
import time

from skiff.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiff.oci.runtime_spec import DeviceRule, Resources

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")

# devices that every container may use, as runc allows them
DEFAULT_ALLOWED_DEVICES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:8 rwm",  # random
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 1:5 rwm",  # zero
    "c 1:9 rwm",  # urandom
    "c 136:* rwm",  # pts
    "c 5:2 rwm",  # ptmx
    "c 10:200 rwm",  # tun
)


def is_unified(root: str = CGROUP_ROOT) -> bool:
    """True when `root` is a cgroup2 mount, or a test directory that says so."""
    if os.path.exists(os.path.join(root, ".skiff-fake-cgroup2")):
        return True
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[4] == root:
                    return fields[sep + 1] == "cgroup2"
    except (OSError, ValueError):
        pass
    return False


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller ('' key for the unified one)."""
    result: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                result[""] = path
            for c in controllers.split(","):
                result[c] = path
    return result


def resolve_path(
    cgroups_path: str, container_id: str, unified: bool, hybrid: bool = False
) -> dict[str, str]:
    """The container's cgroup path inside each hierarchy, as runc derives it.

    On a hybrid host the v1 controllers carry the limits, and the controller-less
    cgroup2 mount ("unified") is joined as well, as runc does, so that tools reading
    the last line of /proc/PID/cgroup see the container's cgroup.
    """
    own = _own_cgroups()
    keys = [""] if unified else list(V1_CONTROLLERS) + (["unified"] if hybrid else [])
    result: dict[str, str] = {}
    for key in keys:
        if cgroups_path.startswith("/"):
            inner = cgroups_path
        else:
            base = own.get("" if key == "unified" else key, "/")
            inner = os.path.join(base, cgroups_path or container_id)
        result[key] = os.path.normpath(inner)
    return result


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_CREAT, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Manager:
    """The cgroup directories of one container, in v1 or v2 form."""

    def __init__(self, paths: dict[str, str], root: str = CGROUP_ROOT, unified: bool = False):
        self.root = root
        self.unified = unified
        self.paths = paths  # controller ('' for v2) -> path inside the hierarchy

    @classmethod
    def for_container(
        cls, cgroups_path: str, container_id: str, root: str = CGROUP_ROOT
    ) -> Manager:
        unified = is_unified(root)
        hybrid = not unified and is_unified(os.path.join(root, "unified"))
        return cls(resolve_path(cgroups_path, container_id, unified, hybrid), root, unified)

    def dir(self, controller: str) -> str:
        key = "" if self.unified else controller
        base = self.root if self.unified else os.path.join(self.root, controller)
        return base + self.paths[key]

    def controllers(self) -> list[str]:
        if self.unified:
            return [""]
        return [c for c in self.paths if os.path.isdir(os.path.join(self.root, c))]

    # --- creation and joining

    def create(self) -> list[str]:
        """Create the directories; returns those made, for cleanup on failure."""
        made: list[str] = []
        for c in self.controllers():
            target = self.dir(c)
            base = self.root if self.unified else os.path.join(self.root, c)
            rel = os.path.relpath(target, base)
            current = base
            for part in rel.split("/"):
                if part in ("", "."):
                    continue
                parent = current
                current = os.path.join(current, part)
                if self.unified:
                    self._enable_controllers(parent)
                if not os.path.isdir(current):
                    os.mkdir(current, 0o755)
                    made.append(current)
                if c == "cpuset":
                    # every level, made here or not: an empty cpuset refuses tasks
                    self._inherit_cpuset(parent, current)
        return made

    def _inherit_cpuset(self, parent: str, child: str) -> None:
        # a new v1 cpuset is empty and refuses tasks until cpus and mems are set
        for name in ("cpuset.cpus", "cpuset.mems"):
            try:
                if not _read(os.path.join(child, name)):
                    _write(os.path.join(child, name), _read(os.path.join(parent, name)))
            except OSError:
                pass

    def _enable_controllers(self, parent: str) -> None:
        try:
            available = _read(os.path.join(parent, "cgroup.controllers")).split()
            if available:
                _write(
                    os.path.join(parent, "cgroup.subtree_control"),
                    " ".join("+" + c for c in available),
                )
        except OSError:
            pass

    def join(self, pid: int) -> None:
        for c in self.controllers():
            _write(os.path.join(self.dir(c), "cgroup.procs"), str(pid))

    def remove(self) -> None:
        """Remove the leaf directories (deepest first); processes must be gone."""
        for c in self.controllers():
            path = self.dir(c)
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY:
                        break
                    time.sleep(0.01)

    def pids(self) -> list[int]:
        key = "" if self.unified else ("pids" if "pids" in self.paths else self.controllers()[0])
        path = os.path.join(self.dir(key), "cgroup.procs")
        try:
            with open(path) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    # --- limits

    def apply(self, resources: Resources) -> None:
        if self.unified:
            self._apply_v2(resources)
        else:
            self._apply_v1(resources)

    def _set(self, controller: str, name: str, value: str) -> None:
        path = os.path.join(self.dir(controller), name)
        try:
            _write(path, value)
        except OSError as e:
            raise OSError(e.errno, f"set {name} to {value}: {os.strerror(e.errno or 0)}")

    def _apply_v1(self, r: Resources) -> None:
        mem = r.get("memory", {})
        if mem:
            swap = mem.get("swap")
            limit = mem.get("limit")
            memsw = os.path.exists(os.path.join(self.dir("memory"), "memory.memsw.limit_in_bytes"))
            if limit is not None:
                try:
                    self._set("memory", "memory.limit_in_bytes", str(limit))
                except OSError:
                    # raising the limit above the current memsw limit needs memsw first
                    if swap is not None and memsw:
                        self._set("memory", "memory.memsw.limit_in_bytes", str(swap))
                    self._set("memory", "memory.limit_in_bytes", str(limit))
            if swap is not None and memsw:
                self._set("memory", "memory.memsw.limit_in_bytes", str(swap))
            if mem.get("reservation") is not None:
                self._set("memory", "memory.soft_limit_in_bytes", str(mem["reservation"]))
            if mem.get("swappiness") is not None and 0 <= mem["swappiness"] <= 100:
                self._set("memory", "memory.swappiness", str(mem["swappiness"]))
            if mem.get("disableOOMKiller"):
                self._set("memory", "memory.oom_control", "1")
        cpu = r.get("cpu", {})
        if cpu:
            if cpu.get("shares"):
                self._set("cpu", "cpu.shares", str(cpu["shares"]))
            if cpu.get("period"):
                self._set("cpu", "cpu.cfs_period_us", str(cpu["period"]))
            if cpu.get("quota"):
                self._set("cpu", "cpu.cfs_quota_us", str(cpu["quota"]))
            if cpu.get("realtimeRuntime"):
                self._set("cpu", "cpu.rt_runtime_us", str(cpu["realtimeRuntime"]))
            if cpu.get("realtimePeriod"):
                self._set("cpu", "cpu.rt_period_us", str(cpu["realtimePeriod"]))
            if cpu.get("cpus"):
                self._set("cpuset", "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                self._set("cpuset", "cpuset.mems", cpu["mems"])
        pids = r.get("pids", {})
        if pids and pids.get("limit") is not None:
            limit = pids["limit"]
            self._set("pids", "pids.max", "max" if limit <= 0 else str(limit))
        block = r.get("blockIO", {})
        if block:
            self._apply_blkio_v1(block)
        if "devices" in r:
            self._apply_devices_v1(r.get("devices", []))

    def _apply_blkio_v1(self, block: dict[str, Any]) -> None:
        base = self.dir("blkio")
        # CFQ's files where the kernel has them, else BFQ's (recent kernels)
        bfq = not os.path.exists(os.path.join(base, "blkio.weight"))
        if block.get("weight"):
            name = "blkio.bfq.weight" if bfq else "blkio.weight"
            self._set("blkio", name, str(block["weight"]))
        if block.get("leafWeight") and not bfq:
            self._set("blkio", "blkio.leaf_weight", str(block["leafWeight"]))
        for dev in block.get("weightDevice", []):
            if dev.get("weight"):
                name = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
                self._set("blkio", name, f"{dev['major']}:{dev['minor']} {dev['weight']}")
        throttles = (
            ("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
            ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
            ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
            ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"),
        )
        for key, name in throttles:
            for dev in block.get(key, []):
                self._set("blkio", name, f"{dev['major']}:{dev['minor']} {dev['rate']}")

    def _apply_devices_v1(self, rules: list[DeviceRule]) -> None:
        if "devices" not in self.paths:
            return
        for rule in rules:
            kind = rule.get("type", "a")
            major = rule.get("major")
            minor = rule.get("minor")
            # runc keeps only the letters the kernel knows (r, w, m)
            access = "".join(ch for ch in rule.get("access", "rwm") if ch in "rwm") or "rwm"
            if kind == "a" and major is None and minor is None:
                line = "a"
            else:
                major_s = "*" if major is None or major == -1 else str(major)
                minor_s = "*" if minor is None or minor == -1 else str(minor)
                line = f"{kind} {major_s}:{minor_s} {access}"
            name = "devices.allow" if rule.get("allow") else "devices.deny"
            self._set("devices", name, line)
        for line in DEFAULT_ALLOWED_DEVICES:
            self._set("devices", "devices.allow", line)

    def _apply_v2(self, r: Resources) -> None:
        mem = r.get("memory", {})
        if mem:
            limit = mem.get("limit")
            if limit is not None:
                self._set("", "memory.max", "max" if limit < 0 else str(limit))
            swap = mem.get("swap")
            if swap is not None:
                if swap < 0:
                    value = "max"
                elif limit is not None and limit > 0:
                    # v1's memsw counts memory plus swap; v2's swap.max only the swap
                    value = str(max(swap - limit, 0))
                else:
                    value = str(swap)
                self._set("", "memory.swap.max", value)
            if mem.get("reservation") is not None:
                self._set("", "memory.low", str(mem["reservation"]))
        cpu = r.get("cpu", {})
        if cpu:
            if cpu.get("shares"):
                shares = cpu["shares"]
                weight = 1 + ((shares - 2) * 9999) // 262142
                self._set("", "cpu.weight", str(max(1, min(weight, 10000))))
            if cpu.get("quota") or cpu.get("period"):
                quota = cpu.get("quota") or 0
                period = cpu.get("period") or 100000
                self._set("", "cpu.max", f"{'max' if quota <= 0 else quota} {period}")
            if cpu.get("cpus"):
                self._set("", "cpuset.cpus", cpu["cpus"])
            if cpu.get("mems"):
                self._set("", "cpuset.mems", cpu["mems"])
        pids = r.get("pids", {})
        if pids and pids.get("limit") is not None:
            limit = pids["limit"]
            self._set("", "pids.max", "max" if limit <= 0 else str(limit))
        block = r.get("blockIO", {})
        if block.get("weight"):
            self._set("", "io.bfq.weight", f"default {block['weight']}")
        for dev in block.get("weightDevice", []):
            if dev.get("weight"):
                self._set("", "io.bfq.weight", f"{dev['major']}:{dev['minor']} {dev['weight']}")
        limits = (
            ("throttleReadBpsDevice", "rbps"),
            ("throttleWriteBpsDevice", "wbps"),
            ("throttleReadIOPSDevice", "riops"),
            ("throttleWriteIOPSDevice", "wiops"),
        )
        for key, field in limits:
            for dev in block.get(key, []):
                self._set("", "io.max", f"{dev['major']}:{dev['minor']} {field}={dev['rate']}")
        for key, value in r.get("unified", {}).items():
            if "/" in key:
                raise InvalidArgument(f"invalid unified resource {key}")
            self._set("", key, value)
        # device rules need an eBPF program in v2: they are not applied (docs/runtime.md)

    # --- freezer

    def freeze(self) -> None:
        if self.unified:
            self._set("", "cgroup.freeze", "1")
            path = os.path.join(self.dir(""), "cgroup.events")
            for _ in range(1000):
                try:
                    if "frozen 1" in _read(path):
                        return
                except OSError:
                    return
                time.sleep(0.001)
            return
        for _ in range(1000):
            self._set("freezer", "freezer.state", "FROZEN")
            if _read(os.path.join(self.dir("freezer"), "freezer.state")) == "FROZEN":
                return
            time.sleep(0.001)
        raise OSError(errno.EBUSY, "unable to freeze the container")

    def thaw(self) -> None:
        if self.unified:
            self._set("", "cgroup.freeze", "0")
            return
        self._set("freezer", "freezer.state", "THAWED")

    def frozen(self) -> bool:
        try:
            if self.unified:
                return _read(os.path.join(self.dir(""), "cgroup.freeze")) == "1"
            return _read(os.path.join(self.dir("freezer"), "freezer.state")) == "FROZEN"
        except OSError:
            return False

    def oom_kills(self) -> int:
        """How many processes the OOM killer has taken in this cgroup."""
        if self.unified:
            return self._kv("", "memory.events").get("oom_kill", 0)
        control = self._kv("memory", "memory.oom_control")
        return control.get("oom_kill", 0) or control.get("under_oom", 0)

    # --- statistics (runc's events --stats shape)

    def stats(self) -> dict[str, object]:
        if self.unified:
            return self._stats_v2()
        return self._stats_v1()

    def _int(self, controller: str, name: str) -> int:
        try:
            value = _read(os.path.join(self.dir(controller), name))
            return int(value) if value != "max" else 0
        except (OSError, ValueError):
            return 0

    def _kv(self, controller: str, name: str) -> dict[str, int]:
        result: dict[str, int] = {}
        try:
            for line in _read(os.path.join(self.dir(controller), name)).splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    result[parts[0]] = int(parts[1])
        except OSError:
            pass
        return result

    def _stats_v1(self) -> dict[str, object]:
        percpu = []
        try:
            percpu = [
                int(x)
                for x in _read(os.path.join(self.dir("cpuacct"), "cpuacct.usage_percpu")).split()
            ]
        except (OSError, ValueError):
            pass
        acct = self._kv("cpuacct", "cpuacct.stat")
        tick = 10_000_000  # USER_HZ 100: one tick is 10 ms in ns
        throttle = self._kv("cpu", "cpu.stat")
        raw = self._kv("memory", "memory.stat")
        return {
            "cpu": {
                "usage": {
                    "total": self._int("cpuacct", "cpuacct.usage"),
                    "percpu": percpu,
                    "kernel": acct.get("system", 0) * tick,
                    "user": acct.get("user", 0) * tick,
                },
                "throttling": {
                    "periods": throttle.get("nr_periods", 0),
                    "throttledPeriods": throttle.get("nr_throttled", 0),
                    "throttledTime": throttle.get("throttled_time", 0),
                },
            },
            "memory": {
                "cache": raw.get("cache", 0),
                "usage": {
                    "limit": self._int("memory", "memory.limit_in_bytes"),
                    "usage": self._int("memory", "memory.usage_in_bytes"),
                    "max": self._int("memory", "memory.max_usage_in_bytes"),
                    "failcnt": self._int("memory", "memory.failcnt"),
                },
                "swap": {
                    "limit": self._int("memory", "memory.memsw.limit_in_bytes"),
                    "usage": self._int("memory", "memory.memsw.usage_in_bytes"),
                    "max": self._int("memory", "memory.memsw.max_usage_in_bytes"),
                    "failcnt": self._int("memory", "memory.memsw.failcnt"),
                },
                "kernel": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
                "kernelTCP": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
                "raw": raw,
            },
            "pids": {
                "current": self._int("pids", "pids.current"),
                "limit": self._int("pids", "pids.max"),
            },
            "blkio": {},
            "hugetlb": {},
        }

    def _stats_v2(self) -> dict[str, object]:
        cpu = self._kv("", "cpu.stat")
        raw = self._kv("", "memory.stat")
        return {
            "cpu": {
                "usage": {
                    "total": cpu.get("usage_usec", 0) * 1000,
                    "percpu": [],
                    "kernel": cpu.get("system_usec", 0) * 1000,
                    "user": cpu.get("user_usec", 0) * 1000,
                },
                "throttling": {
                    "periods": cpu.get("nr_periods", 0),
                    "throttledPeriods": cpu.get("nr_throttled", 0),
                    "throttledTime": cpu.get("throttled_usec", 0) * 1000,
                },
            },
            "memory": {
                "usage": {
                    "limit": self._int("", "memory.max"),
                    "usage": self._int("", "memory.current"),
                    "max": self._int("", "memory.peak"),
                    "failcnt": 0,
                },
                "swap": {
                    "limit": self._int("", "memory.swap.max"),
                    "usage": self._int("", "memory.swap.current"),
                    "max": 0,
                    "failcnt": 0,
                },
                "raw": raw,
            },
            "pids": {
                "current": self._int("", "pids.current"),
                "limit": self._int("", "pids.max"),
            },
            "blkio": {},
            "hugetlb": {},
        }
