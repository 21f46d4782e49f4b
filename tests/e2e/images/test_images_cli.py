"""The real docker CLI (28.x) drives skiffd's image endpoints, with Debian's
containerd 1.6 as the supervisor and Debian's docker-registry on 127.0.0.1:
load, images, inspect, history, tag, rmi, save/load, import, pull, push,
prune, events, bad references, and an image pulled by ctr in namespace moby.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest
from images_daemons import Registry, Stack, start_stack

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def images_json(stack: Stack, *args: str) -> list[dict[str, str]]:
    out = stack.docker("images", "--format", "json", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def inspect(stack: Stack, name: str) -> dict[str, object]:
    result: list[dict[str, object]] = json.loads(stack.docker("image", "inspect", name).stdout)
    return result[0]


def load_busybox(stack: Stack, tar: Path) -> None:
    out = stack.docker("load", "-i", str(tar)).stdout
    assert "Loaded image: busybox:latest" in out


def make_tar(files: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw) if compress else raw


def test_load_images_inspect_history(stack: Stack, busybox_tar: Path, busybox_id: str) -> None:
    load_busybox(stack, busybox_tar)
    rows = images_json(stack)
    assert [(r["Repository"], r["Tag"]) for r in rows] == [("busybox", "latest")]
    assert rows[0]["ID"] == busybox_id[7:19]
    info = inspect(stack, "busybox")
    assert info["Id"] == busybox_id
    assert info["RepoTags"] == ["busybox:latest"]
    assert info["Os"] == "linux" and info["Architecture"] == "amd64"
    config = info["Config"]
    assert isinstance(config, dict) and config["Cmd"] == ["sh"]
    rootfs = info["RootFS"]
    assert isinstance(rootfs, dict) and rootfs["Type"] == "layers" and len(rootfs["Layers"]) == 1
    assert isinstance(info["Size"], int) and info["Size"] > 1_000_000  # unpacked busybox
    # the same image by ID, short ID and full reference
    for name in (busybox_id, busybox_id[7:19], "docker.io/library/busybox:latest"):
        assert inspect(stack, name)["Id"] == busybox_id
    history = stack.docker("history", "--no-trunc", "--format", "{{json .}}", "busybox").stdout
    entries = [json.loads(line) for line in history.splitlines()]
    assert entries[0]["ID"] == busybox_id
    assert all(e["ID"] == "<missing>" for e in entries[1:])
    assert any(e["CreatedBy"] == 'CMD ["sh"]' for e in entries)


def test_tag_and_rmi(stack: Stack, busybox_tar: Path, busybox_id: str) -> None:
    load_busybox(stack, busybox_tar)
    stack.docker("tag", "busybox", "example.com/team/bb:1")
    stack.docker("tag", busybox_id[7:19], "bb2")
    rows = images_json(stack)
    assert sorted(f"{r['Repository']}:{r['Tag']}" for r in rows) == [
        "bb2:latest",
        "busybox:latest",
        "example.com/team/bb:1",
    ]
    assert {r["ID"] for r in rows} == {busybox_id[7:19]}
    # a name of an image with other names is only untagged
    out = stack.docker("rmi", "example.com/team/bb:1").stdout
    assert out.strip() == "Untagged: example.com/team/bb:1"
    # by ID while two names hold it: refused unless forced
    refused = stack.docker("rmi", busybox_id[7:19], check=False)
    assert refused.returncode != 0
    assert "must be forced" in refused.stderr and "multiple repositories" in refused.stderr
    out = stack.docker("rmi", "-f", busybox_id[7:19]).stdout
    assert "Untagged: busybox:latest" in out and "Untagged: bb2:latest" in out
    assert f"Deleted: {busybox_id}" in out
    assert images_json(stack) == []
    # the supervisor's records are gone too
    assert stack.ctr("images", "ls", "-q").stdout.strip() == ""


def test_save_load_round_trip(
    stack: Stack, busybox_tar: Path, busybox_id: str, tmp_path: Path
) -> None:
    load_busybox(stack, busybox_tar)
    before = inspect(stack, "busybox")
    stack.docker("tag", "busybox", "copy:v2")
    one = tmp_path / "one.tar"
    both = tmp_path / "both.tar"
    stack.docker("save", "-o", str(one), "busybox")
    stack.docker("save", "-o", str(both), "busybox", "copy:v2")
    with tarfile.open(both) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
        names = tar.getnames()
    assert sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "copy:v2"]
    assert "index.json" in names and "oci-layout" in names
    stack.docker("rmi", "-f", busybox_id)
    assert images_json(stack) == []
    out = stack.docker("load", "-i", str(one)).stdout
    assert "Loaded image: busybox:latest" in out
    after = inspect(stack, "busybox")
    assert after["Id"] == before["Id"] == busybox_id
    assert after["RepoDigests"] == before["RepoDigests"]
    assert after["RootFS"] == before["RootFS"]
    out = stack.docker("load", "-i", str(both)).stdout
    assert "Loaded image: copy:v2" in out
    # by ID: an archive without names
    saved = tmp_path / "by-id.tar"
    stack.docker("save", "-o", str(saved), busybox_id[7:19])
    with tarfile.open(saved) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        assert json.load(member)[0]["RepoTags"] == []


def test_import_from_tarball_and_stdin(stack: Stack, tmp_path: Path) -> None:
    archive = tmp_path / "rootfs.tar"
    archive.write_bytes(make_tar({"hello.txt": b"hello\n", "bin/tool": b"#!/bin/sh\n"}))
    out = stack.docker(
        "import",
        "-c", 'CMD ["/bin/tool"]',
        "-c", "ENV A=1",
        "-c", "LABEL team=images",
        "-m", "first import",
        str(archive),
        "imported:1",
    ).stdout.strip()  # fmt: skip
    assert out.startswith("sha256:")
    info = inspect(stack, "imported:1")
    assert info["Id"] == out
    config = info["Config"]
    assert isinstance(config, dict)
    assert config["Cmd"] == ["/bin/tool"]
    assert "A=1" in config["Env"]
    assert config["Labels"] == {"team": "images"}
    assert info["Comment"] == "first import"
    history = json.loads(
        stack.docker("history", "--format", "{{json .}}", "imported:1").stdout.splitlines()[0]
    )
    assert history["Comment"] == "first import"
    # gzip through stdin, no name: a dangling image
    data = make_tar({"other.txt": b"x" * 1000}, compress=True)
    out2 = stack.docker("import", "-", input=data).stdout.strip()
    assert out2.startswith("sha256:") and out2 != out
    dangling = images_json(stack, "--filter", "dangling=true")
    assert [r["ID"] for r in dangling] == [out2[7:19]]
    labelled = images_json(stack, "--filter", "label=team=images")
    assert [r["Repository"] for r in labelled] == ["imported"]


def test_push_then_pull_in_a_fresh_engine(
    stack: Stack, registry: Registry, busybox_tar: Path, busybox_id: str
) -> None:
    since = time.time() - 1
    load_busybox(stack, busybox_tar)
    name = f"{registry.host}/e2e/busybox:v1"
    stack.docker("tag", "busybox", name)
    out = stack.docker("push", name).stdout
    assert f"The push refers to repository [{registry.host}/e2e/busybox]" in out
    assert "Pushed" in out
    assert "v1: digest: sha256:" in out
    with urllib.request.urlopen(f"http://{registry.host}/v2/e2e/busybox/tags/list") as r:
        assert json.load(r)["tags"] == ["v1"]
    # a second push finds every layer there
    again = stack.docker("push", name).stdout
    assert "Layer already exists" in again
    repo_digests = inspect(stack, name)["RepoDigests"]
    assert isinstance(repo_digests, list)
    pushed_digest = [d for d in repo_digests if d.startswith(registry.host)]
    with start_stack(supervisor=stack.supervisor) as fresh:
        out = fresh.docker("pull", name).stdout
        assert "v1: Pulling from e2e/busybox" in out
        assert "Pull complete" in out
        assert f"Status: Downloaded newer image for {name}" in out
        info = inspect(fresh, name)
        assert info["Id"] == busybox_id
        assert info["RepoDigests"] == pushed_digest
        # unpacked into the supervisor's overlayfs snapshotter under the chain id
        layers = info["RootFS"]
        assert isinstance(layers, dict)
        snapshots = fresh.ctr("snapshots", "--snapshotter", "overlayfs", "ls").stdout
        assert layers["Layers"][0] in snapshots
        out = fresh.docker("pull", name).stdout
        assert f"Status: Image is up to date for {name}" in out
        # by digest
        digest = pushed_digest[0].split("@", 1)[1]  # type: ignore[index]
        out = fresh.docker("pull", f"{registry.host}/e2e/busybox@{digest}").stdout
        assert f"Digest: {digest}" in out
        pulls = fresh.docker(
            "events", "--since", str(since), "--until", str(time.time() + 1),
            "--filter", "event=pull", "--format", "{{.Actor.ID}}",
        ).stdout.split()  # fmt: skip
        assert name in pulls
    pushes = stack.docker(
        "events", "--since", str(since), "--until", str(time.time() + 1),
        "--filter", "type=image", "--filter", "event=push", "--format", "{{.Actor.ID}}",
    ).stdout.split()  # fmt: skip
    assert pushes == [name, name]


def test_pull_errors_and_bad_references(stack: Stack, registry: Registry) -> None:
    missing = stack.docker("pull", f"{registry.host}/e2e/nothing-here:v9", check=False)
    assert missing.returncode != 0
    assert "not found" in missing.stderr and "e2e/nothing-here" in missing.stderr
    bad = stack.docker("pull", "Not_Valid", check=False)
    assert bad.returncode != 0 and "invalid reference format" in bad.stderr
    nosuch = stack.docker("image", "inspect", "nosuch", check=False)
    assert nosuch.returncode != 0 and "No such image: nosuch:latest" in nosuch.stderr
    nosuch = stack.docker("rmi", "nosuch:v1", check=False)
    assert "No such image: nosuch:v1" in nosuch.stderr
    nosuch = stack.docker("tag", "nosuch", "other", check=False)
    assert "No such image: nosuch:latest" in nosuch.stderr


def test_image_pulled_by_ctr_is_listed(stack: Stack, registry: Registry, busybox_tar: Path) -> None:
    # put busybox in the registry with a pusher that is not skiffd
    import subprocess

    subprocess.run(
        [
            "skopeo", "copy", "--dest-tls-verify=false", "--quiet",
            f"docker-archive:{busybox_tar}", f"docker://{registry.host}/ctr/busybox:1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ref = f"{registry.host}/ctr/busybox:1"
    pulled = stack.ctr("images", "pull", "--plain-http", ref)
    assert pulled.returncode == 0, pulled.stderr
    rows = images_json(stack)
    assert [(r["Repository"], r["Tag"]) for r in rows] == [(f"{registry.host}/ctr/busybox", "1")]
    assert inspect(stack, ref)["RootFS"]
    out = stack.docker("rmi", ref).stdout
    assert "Deleted: sha256:" in out
    assert stack.ctr("images", "ls", "-q").stdout.strip() == ""


def test_prune_moved_tag_and_events(
    stack: Stack, tmp_path: Path, busybox_tar: Path, busybox_id: str
) -> None:
    since = time.time() - 1
    first = tmp_path / "a.tar"
    first.write_bytes(make_tar({"a": b"1"}))
    second = tmp_path / "b.tar"
    second.write_bytes(make_tar({"b": b"2"}))
    id1 = stack.docker("import", str(first), "moving:tag").stdout.strip()
    id2 = stack.docker("import", str(second), "moving:tag").stdout.strip()
    assert id1 != id2
    dangling = images_json(stack, "--filter", "dangling=true")
    assert [r["ID"] for r in dangling] == [id1[7:19]]
    assert dangling[0]["Repository"] == "<none>"
    load_busybox(stack, busybox_tar)
    assert [r["Repository"] for r in images_json(stack, "--filter", "reference=busy*")] == [
        "busybox"
    ]
    # busybox was made in 2023, the imports now, one after the other
    assert {r["ID"] for r in images_json(stack, "--filter", "before=moving:tag")} == {
        busybox_id[7:19],
        id1[7:19],
    }
    assert {r["ID"] for r in images_json(stack, "--filter", "since=busybox")} == {
        id1[7:19],
        id2[7:19],
    }
    out = stack.docker("image", "prune", "-f").stdout
    assert f"deleted: {id1}" in out
    assert images_json(stack, "--filter", "dangling=true") == []
    assert {r["Repository"] for r in images_json(stack)} == {"busybox", "moving"}
    stack.docker("tag", "busybox", "evt:1")
    stack.docker("rmi", "evt:1")
    until = time.time() + 1
    events = stack.docker(
        "events", "--since", str(since), "--until", str(until),
        "--filter", "type=image", "--format", "{{.Action}}",
    ).stdout.split()  # fmt: skip
    for action in ("import", "load", "tag", "untag", "delete", "prune"):
        assert action in events, events


def test_rmi_of_an_image_a_container_uses(stack: Stack, busybox_tar: Path, busybox_id: str) -> None:
    load_busybox(stack, busybox_tar)
    container = stack.docker("create", "busybox", "true").stdout.strip()
    refused = stack.docker("rmi", "busybox", check=False)
    assert refused.returncode != 0
    assert (
        f"container {container[:12]} is using its referenced image {busybox_id[7:19]}"
        in refused.stderr
    )
    refused = stack.docker("rmi", busybox_id[7:19], check=False)
    assert f"image is being used by stopped container {container[:12]}" in refused.stderr
    # forced: the name goes, the image stays (nameless) while the container holds it
    out = stack.docker("rmi", "-f", "busybox").stdout
    assert "Untagged: busybox:latest" in out and "Deleted" not in out
    rows = images_json(stack, "-a")
    assert [(r["Repository"], r["ID"]) for r in rows] == [("<none>", busybox_id[7:19])]
    assert "Total reclaimed space: 0B" in stack.docker("image", "prune", "-f").stdout
    stack.docker("rm", container)
    out = stack.docker("image", "prune", "-f").stdout
    assert f"deleted: {busybox_id}" in out
    assert images_json(stack, "-a") == []


def test_load_oci_layout_archives(
    stack: Stack, busybox_id: str, busybox_tar: Path, tmp_path: Path
) -> None:
    layout = busybox_tar.parent / "busybox-oci"
    if not layout.is_dir():
        pytest.skip(f"{layout} is missing: run `make images`")
    named = tmp_path / "named.tar"
    with tarfile.open(named, "w") as tar:
        for entry in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / entry, arcname=entry)
    out = stack.docker("load", "-i", str(named)).stdout
    assert "Loaded image: busybox:latest" in out
    assert inspect(stack, "busybox")["Id"] == busybox_id
    # the same layout with no name in its index: loaded by ID, nameless
    stack.docker("rmi", "busybox")
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"] = {}
    unnamed = tmp_path / "unnamed.tar"
    with tarfile.open(unnamed, "w") as tar:
        tar.add(layout / "oci-layout", arcname="oci-layout")
        tar.add(layout / "blobs", arcname="blobs")
        data = json.dumps(index).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    out = stack.docker("load", "-i", str(unnamed)).stdout
    assert f"Loaded image ID: {busybox_id}" in out
    rows = images_json(stack)
    assert [(r["Repository"], r["ID"]) for r in rows] == [("<none>", busybox_id[7:19])]


def test_pull_through_a_registry_mirror(
    registry: Registry, busybox_tar: Path, busybox_id: str
) -> None:
    # the mirror holds docker.io's library/busybox; no other network is needed
    import subprocess

    subprocess.run(
        [
            "skopeo", "copy", "--dest-tls-verify=false", "--quiet",
            f"docker-archive:{busybox_tar}", f"docker://{registry.host}/library/busybox:latest",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with start_stack(["--registry-mirror", f"http://{registry.host}"]) as stack:
        out = stack.docker("pull", "busybox").stdout
        assert "latest: Pulling from library/busybox" in out
        assert "Status: Downloaded newer image for busybox:latest" in out
        assert inspect(stack, "busybox")["Id"] == busybox_id
        info = json.loads(stack.docker("info", "--format", "{{json .RegistryConfig}}").stdout)
        assert info["Mirrors"] == [f"http://{registry.host}"]


def test_concurrent_pulls_of_one_image(
    stack: Stack, registry: Registry, busybox_tar: Path, busybox_id: str
) -> None:
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    name = f"{registry.host}/many/busybox:1"
    subprocess.run(
        [
            "skopeo", "copy", "--dest-tls-verify=false", "--quiet",
            f"docker-archive:{busybox_tar}", f"docker://{name}",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: stack.docker("pull", name, check=False), range(3)))
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "Digest: sha256:" in r.stdout
    assert [r["ID"] for r in images_json(stack)] == [busybox_id[7:19]]
