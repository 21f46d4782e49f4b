"""The client's defaults, alone in a module so that skiff-ctr run (the lean
client) has them without importing the dataclasses of types or grpcio."""

DEFAULT_ADDRESS = "/run/skiff/containerd/containerd.sock"
DEFAULT_NAMESPACE = "default"
DEFAULT_SNAPSHOTTER = "overlayfs"
DEFAULT_RUNTIME = "io.containerd.runc.v2"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
