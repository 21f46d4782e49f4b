"""Seccomp filters from config.json's linux.seccomp, through libseccomp (ctypes).

libseccomp compiles the rules to BPF for the host's architectures; the
filter is loaded last before execve when noNewPrivileges is set (so the
runtime's own set-up calls are not filtered), as runc does.
"""

from __future__ import annotations

import ctypes

from skiff.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from skiff.oci.runtime_spec import Seccomp

EPERM = 1

_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
_ARCHES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
}
ACTIONS = tuple(_ACTIONS)
OPERATORS = tuple(_OPS)
ARCHES = tuple(_ARCHES)
_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_TSYNC = 4
_SCMP_FLTATR_CTL_LOG = 5
_SCMP_FLTATR_CTL_SSB = 6


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _action(name: str, errno_ret: int | None) -> int:
    if name not in _ACTIONS:
        raise InvalidArgument(f"config.json: unknown seccomp action {name!r}")
    value = _ACTIONS[name]
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        value |= (EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


def validate(seccomp: Seccomp) -> None:
    if not isinstance(seccomp, dict):
        raise InvalidArgument("config.json: linux.seccomp must be an object")
    _action(seccomp.get("defaultAction", ""), None)
    for arch in seccomp.get("architectures", []):
        if arch not in _ARCHES:
            raise InvalidArgument(f"config.json: unknown seccomp architecture {arch!r}")
    for rule in seccomp.get("syscalls", []):
        _action(rule.get("action", ""), None)
        if rule.get("action") == "SCMP_ACT_NOTIFY":
            raise InvalidArgument("config.json: seccomp notify is not supported")
        for arg in rule.get("args", []):
            if arg.get("op") not in _OPS:
                raise InvalidArgument(f"config.json: unknown seccomp operator {arg.get('op')!r}")


_loaded: list[ctypes.CDLL] = []


def preload() -> None:
    """Open libseccomp now: after pivot_root the host's libraries are out of reach."""
    _lib()


def _lib() -> ctypes.CDLL:
    if _loaded:
        return _loaded[0]
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise InvalidArgument("seccomp requested but libseccomp.so.2 is not installed")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    _loaded.append(lib)
    return lib


def load(seccomp: Seccomp) -> None:
    """Compile and load the filter into this process (and its future children)."""
    lib = _lib()
    default = _action(
        seccomp.get("defaultAction", "SCMP_ACT_ALLOW"), seccomp.get("defaultErrnoRet")
    )
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        # the runtime decides about no_new_privs itself
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0)
        flags = seccomp.get("flags", [])
        if "SECCOMP_FILTER_FLAG_LOG" in flags:
            lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_LOG, 1)
        if "SECCOMP_FILTER_FLAG_SPEC_ALLOW" in flags:
            lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_SSB, 1)
        for arch in seccomp.get("architectures", []):
            token = lib.seccomp_arch_resolve_name(_ARCHES[arch].encode())
            if token:
                rc = lib.seccomp_arch_add(ctx, token)
                if rc < 0 and rc != -17:  # -EEXIST: the native arch is already there
                    raise OSError(-rc, f"seccomp_arch_add {arch}")
        for rule in seccomp.get("syscalls", []):
            action = _action(rule.get("action", ""), rule.get("errnoRet"))
            if action == default:
                continue  # libseccomp refuses a rule that repeats the default action
            args = rule.get("args", [])
            # conditions on the same argument are alternatives: one rule each
            indexes = [a.get("index", 0) for a in args]
            if len(set(indexes)) == len(indexes):
                groups = [list(args)]
            else:
                groups = [[a] for a in args]
            for name in rule.get("names", []):
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr < 0:
                    continue  # a syscall this kernel or libseccomp does not know
                for group in groups:
                    cmps = (_ArgCmp * max(len(group), 1))()
                    for i, a in enumerate(group):
                        cmps[i].arg = int(a.get("index", 0))
                        cmps[i].op = _OPS[str(a.get("op"))]
                        cmps[i].datum_a = int(a.get("value", 0)) & 0xFFFFFFFFFFFFFFFF
                        cmps[i].datum_b = int(a.get("valueTwo", 0)) & 0xFFFFFFFFFFFFFFFF
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), cmps)
                    if rc < 0:
                        raise OSError(-rc, f"seccomp rule for {name}: error {-rc}")
        rc = lib.seccomp_load(ctx)
        if rc < 0:
            raise OSError(-rc, f"seccomp_load: error {-rc}")
    finally:
        lib.seccomp_release(ctx)
