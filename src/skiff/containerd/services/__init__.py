"""skiff-containerd's service logic, one module per containerd service,
tested without a socket; the gRPC adapters in containerd/server are thin."""
