#!/bin/bash
# `make run` / `make stop`: start what exists of the skiff stack, run a greeting container,
# and say how to go on. Until skiffd lands (issue 5) the stack is the runtime alone:
# skiff-runc runs containers from a bundle unpacked from the busybox test image.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUNC="$REPO/.venv/bin/skiff-runc"
ROOT=/run/skiff-runc
BUNDLE="$REPO/build/run/busybox-bundle"
DEMO=skiff-demo

bundle() {
    rm -rf "$BUNDLE"
    mkdir -p "$BUNDLE/rootfs"
    "$REPO/.venv/bin/python" - "$REPO/build/images/busybox-oci" "$BUNDLE" <<'PY'
import json, sys, tarfile
from pathlib import Path
layout, bundle = Path(sys.argv[1]), Path(sys.argv[2])
blob = lambda d: layout / "blobs" / d.replace(":", "/")
index = json.loads((layout / "index.json").read_text())
manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
config = json.loads(blob(manifest["config"]["digest"]).read_text())
for layer in manifest["layers"]:
    with tarfile.open(blob(layer["digest"])) as tar:
        tar.extractall(bundle / "rootfs")
PY
    (cd "$BUNDLE" && "$RUNC" spec)
    "$REPO/.venv/bin/python" - "$BUNDLE/config.json" "$@" <<'PY'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = args
spec["root"]["readonly"] = False
spec["hostname"] = "skiff"
json.dump(spec, open(path, "w"), indent=2)
PY
}

start() {
    "$RUNC" --root "$ROOT" delete --force "$DEMO" >/dev/null 2>&1 || true
    bundle sh -c 'echo "Hello from a skiff container: $(hostname), pid $$, $(uname -s) $(uname -r)"; exec sleep 86400'
    # The greeting: a long-running container, detached, its output to a log file.
    "$RUNC" --root "$ROOT" run --detach --bundle "$BUNDLE" "$DEMO" \
        </dev/null >"$REPO/build/run/$DEMO.log" 2>&1
    for _ in $(seq 50); do
        [ -s "$REPO/build/run/$DEMO.log" ] && break
        sleep 0.1
    done
    cat "$REPO/build/run/$DEMO.log"
    cat <<MSG

skiff is running the container '$DEMO' with its runtime, skiff-runc (state in $ROOT).
Go on with:
  sudo $RUNC --root $ROOT list
  sudo $RUNC --root $ROOT exec $DEMO ps
  sudo $RUNC --root $ROOT state $DEMO
The engine (skiffd) and the CLI are not there yet; once they are, this target starts them
and \`skiff ps\` or the docker CLI with DOCKER_HOST=unix:///run/skiff/skiff.sock work here.
Stop it all with: make stop
MSG
}

stop() {
    if [ -x "$RUNC" ]; then
        "$RUNC" --root "$ROOT" delete --force "$DEMO" 2>/dev/null || true
    fi
    rm -rf "$REPO/build/run"
    echo "stopped: container '$DEMO' deleted"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
