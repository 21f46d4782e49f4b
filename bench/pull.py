"""Pull + unpack of a 200 MB single-layer image from a local registry:
skiff beside `skopeo copy` + `umoci unpack` and `docker pull`, in the same run.

The image layer of DESIGN.md measured end to end: Debian's docker-registry
on 127.0.0.1 (temporary storage) holds one image whose only layer is a
200 MB file of random bytes. Each tool pulls it fresh each round:

  download   the layer's bytes alone (curl to a file): the floor
  skiff      `skiff.image.pull.pull` with an overlay snapshotter (download,
             verify, unpack while the bytes arrive), in a fresh process
  skiff warm the same in a process that has imported skiff already, as in
             skiff-containerd (docker pull, too, asks a running daemon)
  skopeo     `skopeo copy docker://... oci:DIR`, then `umoci unpack`
  docker     `docker pull` against Debian's dockerd started on a temporary
             root (--bridge=none --iptables=false) with its own containerd

Usage (as root): python bench/pull.py [--runs 3] [--size-mb 200] [--keep]
"""

from __future__ import annotations

# only what the skiff child needs at the top: its start-up is measured
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], what: str) -> None:
    import http.client

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)


@contextlib.contextmanager
def started(cmd: list[str], log: Path, **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )  # type: ignore[call-overload]
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def registry(work: Path) -> Iterator[str]:
    port = free_port()
    (work / "registry").mkdir()
    config = work / "registry" / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work}/registry/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with started(["docker-registry", "serve", str(config)], work / "registry" / "log") as proc:
        wait_http(port, "/v2/", proc, "docker-registry")
        yield f"127.0.0.1:{port}"


def make_image(work: Path, host: str, size: int) -> tuple[str, str]:
    """Push a one-layer image of `size` random bytes; returns (ref, layer digest)."""
    import hashlib
    import tarfile
    import zlib

    from skiff.containerd.content import ContentStore
    from skiff.image.pull import push
    from skiff.image.registry import RegistryClient, RegistryOptions
    from skiff.oci import mediatypes as mt
    from skiff.oci.digest import Digest
    from skiff.oci.image import Descriptor, Image, Manifest

    store = ContentStore(str(work / "src-content"))
    layer_path = work / "layer.tar.gz"
    diff = hashlib.sha256()
    comp = hashlib.sha256()
    with open(layer_path, "wb") as raw:
        z = zlib.compressobj(1, zlib.DEFLATED, 31)

        class Sink:
            def write(self, data: bytes) -> int:
                diff.update(data)
                out = z.compress(data)
                comp.update(out)
                raw.write(out)
                return len(data)

        with tarfile.open(fileobj=Sink(), mode="w|") as tar:  # type: ignore[call-overload]
            ti = tarfile.TarInfo("random.bin")
            ti.size, ti.mode, ti.mtime = size, 0o644, 1700000000

            class Random:
                left = size

                def read(self, n: int) -> bytes:
                    n = min(n, self.left)
                    self.left -= n
                    return os.urandom(n)

            tar.addfile(ti, Random())
        tail = z.flush()
        comp.update(tail)
        raw.write(tail)
    digest = Digest("sha256:" + comp.hexdigest())
    with store.writer("bench-layer") as w, open(layer_path, "rb") as f:
        while chunk := f.read(1 << 20):
            w.write(chunk)
        w.commit(0, digest)
    layer_path.unlink()
    cfg = Image(architecture="amd64", os="linux").to_json()
    cfg["rootfs"]["diff_ids"] = ["sha256:" + diff.hexdigest()]
    cfg_bytes = json.dumps(cfg).encode()
    layer_size = store.info(digest).size
    man = Manifest(
        media_type=mt.DOCKER_MANIFEST,
        config=Descriptor(
            media_type=mt.DOCKER_CONFIG, digest=store.write_blob(cfg_bytes), size=len(cfg_bytes)
        ),
        layers=(Descriptor(media_type=mt.DOCKER_LAYER_GZIP, digest=digest, size=layer_size),),
    )
    data = json.dumps(man.to_json()).encode()
    target = Descriptor(
        media_type=mt.DOCKER_MANIFEST, digest=store.write_blob(data), size=len(data)
    )
    ref = f"{host}/bench/random:1"
    push(RegistryClient(RegistryOptions(docker_config="/nonexistent")), ref, store, target)
    shutil.rmtree(work / "src-content")
    return ref, str(digest)


def skiff_once(ref: str, root: str) -> None:
    """Child-process body: one fresh skiff pull + unpack."""
    from skiff.containerd.content import ContentStore
    from skiff.containerd.snapshots import OverlaySnapshotter
    from skiff.image.pull import pull
    from skiff.image.registry import RegistryClient, RegistryOptions

    sn = OverlaySnapshotter(os.path.join(root, "snapshots"))
    result = pull(
        RegistryClient(RegistryOptions(docker_config="/nonexistent")),
        ref,
        ContentStore(os.path.join(root, "content")),
        snapshotter=sn,
    )
    assert result.chain_id is not None
    sn.close()


def skiff_serve() -> None:
    """Child-process body for `skiff warm`: import once, then pull each
    `REF ROOT` line read from stdin, answering `ok` (or the error)."""
    import skiff.containerd.content
    import skiff.containerd.snapshots
    import skiff.image.pull
    import skiff.image.registry  # noqa: F401

    for line in sys.stdin:
        ref, root = line.split()
        try:
            skiff_once(ref, root)
            print("ok", flush=True)
        except Exception as e:
            print(f"error {e!r}", flush=True)


@contextlib.contextmanager
def warm_skiff() -> Iterator[Callable[[str, str], None]]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--skiff-serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def ask(ref: str, root: str) -> None:
        stdin.write(f"{ref} {root}\n")
        stdin.flush()
        answer = stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"skiff warm: {answer or 'exited'}")

    try:
        yield ask
    finally:
        stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed(fn: Callable[[], None]) -> float:
    os.sync()  # no tool pays for writing back what the one before it wrote
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(cmd: list[str], **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()[-500:]}")


@contextlib.contextmanager
def dockerd(work: Path) -> Iterator[dict[str, str] | None]:
    if not (shutil.which("dockerd") and shutil.which("docker") and shutil.which("containerd")):
        print("docker: dockerd/docker/containerd not installed, skipped")
        yield None
        return
    d = work / "docker"
    d.mkdir()
    (d / "containerd-config.toml").write_text(
        "version = 2\n"
        f'root = "{d}/containerd-root"\nstate = "{d}/containerd-state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{d}/containerd.sock"\n'
        f'[ttrpc]\n  address = "{d}/containerd.sock.ttrpc"\n'
        f'[debug]\n  address = "{d}/containerd-debug.sock"\n'
    )
    sock = d / "docker.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    with started(
        ["containerd", "--config", str(d / "containerd-config.toml")], d / "containerd.log"
    ):
        deadline = time.monotonic() + 20
        while not (d / "containerd.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("containerd did not start")
            time.sleep(0.05)
        cmd = [
            "dockerd",
            f"--data-root={d}/root",
            f"--exec-root={d}/exec",
            f"--pidfile={d}/docker.pid",
            f"--host=unix://{sock}",
            f"--containerd={d}/containerd.sock",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--storage-driver=overlay2",
        ]
        with started(cmd, d / "dockerd.log", env=env):
            deadline = time.monotonic() + 30
            while (
                subprocess.run(["docker", "version"], env=env, capture_output=True).returncode != 0
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"dockerd did not start: {(d / 'dockerd.log').read_text()[-1000:]}"
                    )
                time.sleep(0.1)
            yield env


def main() -> int:
    if sys.argv[1:2] == ["--skiff-once"] and len(sys.argv) == 4:
        skiff_once(sys.argv[2], sys.argv[3])  # before argparse & co: start-up is measured
        return 0
    if sys.argv[1:] == ["--skiff-serve"]:
        skiff_serve()
        return 0
    import argparse
    import statistics
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/pull.py needs root (overlay mounts, dockerd)", file=sys.stderr)
        return 1

    work = Path(tempfile.mkdtemp(prefix="skiff-bench-pull-", dir="/var/tmp"))
    times: dict[str, list[float]] = {}
    try:
        with registry(work) as host, dockerd(work) as docker_env, warm_skiff() as ask:
            ref, layer = make_image(work, host, args.size_mb << 20)
            print(f"image {ref}: one layer {layer}, {args.size_mb} MB of random data")
            blob_url = f"http://{host}/v2/bench/random/blobs/{layer}"
            for i in range(args.runs):
                r = work / f"run{i}"
                r.mkdir()

                def download(r: Path = r) -> None:
                    run(["curl", "-sSf", "-o", str(r / "blob"), blob_url])

                def skiff(r: Path = r) -> None:
                    run([sys.executable, __file__, "--skiff-once", ref, str(r / "skiff")])

                def skopeo(r: Path = r) -> None:
                    run(
                        [
                            "skopeo",
                            "copy",
                            "--src-tls-verify=false",
                            f"docker://{ref}",
                            f"oci:{r}/oci:1",
                        ]
                    )

                def umoci(r: Path = r) -> None:
                    run(["umoci", "unpack", "--image", f"{r}/oci:1", str(r / "bundle")])

                samples = {
                    "download": timed(download),
                    "skiff": timed(skiff),
                    "skiff warm": timed(lambda r=r: ask(ref, str(r / "skiff-warm"))),  # type: ignore[misc]
                    "skopeo copy": timed(skopeo),
                    "umoci unpack": timed(umoci),
                }
                samples["skopeo+umoci"] = samples["skopeo copy"] + samples["umoci unpack"]
                if docker_env is not None:
                    samples["docker pull"] = timed(
                        lambda: run(["docker", "pull", "-q", ref], env=docker_env)
                    )
                    run(["docker", "rmi", ref], env=docker_env)
                for k, v in samples.items():
                    times.setdefault(k, []).append(v)
                print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in samples.items()))
                shutil.rmtree(r, ignore_errors=True)  # free the disk before the next round
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedians over {args.runs} runs ({args.size_mb} MB single-layer image):")
    for k, v in med.items():
        print(f"  {k:<14} {v:6.2f} s")
    print("ratios:")
    print(f"  skiff / download       {med['skiff'] / med['download']:.2f}x  (target <= 1.3x)")
    print(f"  skiff warm / download  {med['skiff warm'] / med['download']:.2f}x")
    print(f"  skiff / skopeo+umoci   {med['skiff'] / med['skopeo+umoci']:.2f}x")
    if "docker pull" in med:
        print(
            f"  skiff / docker pull    {med['skiff'] / med['docker pull']:.2f}x  (target <= 1.0x)"
        )
    print(json.dumps({"medians_s": med, "runs": args.runs, "size_mb": args.size_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
