"""Digests, references, platforms and image-spec types."""

from __future__ import annotations

import hashlib
import json

import pytest

from skiff.errors import InvalidArgument
from skiff.oci import mediatypes as mt
from skiff.oci import platform as plat
from skiff.oci.digest import Digest, Digester
from skiff.oci.image import Descriptor, Image, Index, Manifest, chain_ids
from skiff.oci.platform import Platform
from skiff.oci.reference import parse


def test_digest_sha256_and_sha512() -> None:
    d = Digest.from_bytes(b"hello")
    assert d == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert d.algorithm == "sha256" and len(d.encoded) == 64
    d512 = Digest.from_bytes(b"hello", "sha512")
    assert d512.encoded == hashlib.sha512(b"hello").hexdigest()
    h = Digester("sha512")
    h.update(b"hel")
    h.update(b"lo")
    assert h.digest() == d512


@pytest.mark.parametrize(
    "bad",
    ["", "sha256", "sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64, "sha512:" + "a" * 64],
)
def test_digest_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        Digest(bad)


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("me/app", "docker.io/me/app:latest", "me/app:latest"),
        ("index.docker.io/me/app:v1", "docker.io/me/app:v1", "me/app:v1"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        ("ghcr.io/o/r/s:1.0-rc_1", "ghcr.io/o/r/s:1.0-rc_1", "ghcr.io/o/r/s:1.0-rc_1"),
        ("me/a.b-c__d", "docker.io/me/a.b-c__d:latest", "me/a.b-c__d:latest"),
    ],
)
def test_reference_normalised_like_docker(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_reference_with_digest() -> None:
    d = "sha256:" + "a" * 64
    ref = parse(f"busybox@{d}")
    assert ref.tag == "" and ref.digest == d and ref.object == d
    ref = parse(f"busybox:1@{d}")
    assert ref.tag == "1" and str(ref) == f"docker.io/library/busybox:1@{d}"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Busybox",
        "a//b",
        "x:",
        ":t",
        "-a",
        "a/b:@",
        "a" * 64,
        "a/" + "b" * 300,
        "a@sha256:12",
        " a",
    ],
)
def test_reference_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        parse(bad)


def test_platform_parse_and_match() -> None:
    assert str(Platform.parse("linux/x86_64")) == "linux/amd64"
    assert str(Platform.parse("linux/aarch64/8")) == "linux/arm64/v8"
    arm64 = Platform(os="linux", architecture="arm64")
    assert plat.matches(Platform.parse("linux/arm64/v8"), arm64)  # implied v8
    assert not plat.matches(Platform.parse("linux/arm/v6"), Platform.parse("linux/arm/v7"))
    cands = [
        (Platform.parse("linux/arm/v6"), "armv6"),
        (Platform.parse("linux/arm/v7"), "armv7"),
        (Platform.parse("linux/amd64"), "amd64"),
        (Platform.parse("windows/amd64"), "win"),
    ]
    assert plat.best(Platform.parse("linux/amd64"), cands) == "amd64"
    assert plat.best(Platform.parse("linux/arm/v6"), cands) == "armv6"
    assert plat.best(Platform.parse("linux/arm"), cands) == "armv7"
    assert plat.best(Platform.parse("linux/s390x"), cands) is None


def test_manifest_round_trip_and_bounds() -> None:
    cfg = {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.from_bytes(b"c")), "size": 1}
    layer = {"mediaType": mt.OCI_LAYER_GZIP, "digest": str(Digest.from_bytes(b"l")), "size": 1}
    obj = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": cfg, "layers": [layer]}
    man = Manifest.from_json(json.dumps(obj).encode())
    assert man.to_json() == obj
    with pytest.raises(InvalidArgument, match="too large"):
        Manifest.from_json(b" " * (mt.MAX_MANIFEST_SIZE + 1))
    with pytest.raises(InvalidArgument):
        Manifest.from_json(json.dumps({**obj, "schemaVersion": 1}))
    with pytest.raises(InvalidArgument):
        Descriptor.from_json({**layer, "size": -1})
    idx = Index.from_json(
        {
            "schemaVersion": 2,
            "manifests": [{**cfg, "platform": {"os": "linux", "architecture": "amd64"}}],
        }
    )
    assert idx.manifests[0].platform == Platform(os="linux", architecture="amd64")


def test_image_config_and_chain_ids() -> None:
    a, b = Digest.from_bytes(b"a"), Digest.from_bytes(b"b")
    img = Image.from_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["A=1"], "WorkingDir": "/w"},
            "rootfs": {"type": "layers", "diff_ids": [a, b]},
        }
    )
    assert img.config.cmd == ("sh",) and img.config.working_dir == "/w"
    assert Image.from_json(img.to_json()) == img
    chain = chain_ids([a, b])
    assert chain[0] == a
    assert chain[1] == "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
