#!/bin/bash
# `make run` / `make stop`: start the skiff stack in the background, greet from a container,
# and say how to go on. The stack: skiffd (the engine, Docker's API on /run/skiff/skiff.sock)
# with its managed skiff-containerd (the supervisor), a skiff-shim per container and skiff-runc.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BIN="$REPO/.venv/bin"
SOCK=/run/skiff/skiff.sock
PIDFILE=/run/skiff/skiffd.pid
LOG="$REPO/build/run/skiffd.log"

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    mkdir -p "$REPO/build/run"
    if running; then
        echo "skiffd is already running (pid $(cat "$PIDFILE"))"
    else
        echo "starting skiffd (log: $LOG)"
        setsid "$BIN/skiffd" -H "unix://$SOCK" --pidfile "$PIDFILE" \
            </dev/null >>"$LOG" 2>&1 &
        for _ in $(seq 100); do
            "$BIN/skiff" -H "unix://$SOCK" version >/dev/null 2>&1 && break
            sleep 0.1
        done
        if ! "$BIN/skiff" -H "unix://$SOCK" version >/dev/null 2>&1; then
            echo "skiffd did not come up; its log:" >&2
            tail -20 "$LOG" >&2
            exit 1
        fi
    fi
    export DOCKER_HOST="unix://$SOCK"
    "$BIN/skiff" load -q -i "$REPO/build/images/busybox.tar"
    "$BIN/skiff" run --rm --name skiff-greeting busybox \
        sh -c 'echo "Hello from a skiff container: $(hostname), pid $$, $(uname -s) $(uname -r)"'
    cat <<MSG

skiff is running: skiffd on $SOCK, with its managed skiff-containerd,
a skiff-shim per container and skiff-runc as the OCI runtime.
Go on with:
  export PATH=$BIN:\$PATH
  skiff run -it busybox sh          # skiff talks to unix://$SOCK by default
  skiff ps -a; skiff images
  DOCKER_HOST=unix://$SOCK docker ps     # the docker CLI works too
Stop it with: make stop (containers keep running; skiffd finds them again when restarted)
MSG
}

stop() {
    if running; then
        pid=$(cat "$PIDFILE")
        kill -TERM "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "stopped skiffd (pid $pid) and its managed skiff-containerd"
    else
        echo "skiffd is not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
