"""skiff-containerd's gRPC edge: one thin adapter module per containerd
service (decode, call the service, encode, map errors); grpc.py wires them."""
