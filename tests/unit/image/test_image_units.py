"""Pieces of the image layer that need no root and no daemon."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os

import pytest
import zstandard

from skiff.errors import InvalidArgument
from skiff.image.compression import decompressed
from skiff.image.registry import load_docker_credentials, parse_www_authenticate
from skiff.image.rootpath import clean


@pytest.mark.parametrize("kind", ["plain", "gzip", "gzip-multi", "zstd"])
def test_decompression_is_detected(kind: str) -> None:
    data = os.urandom(3 << 20) + b"tail"
    if kind == "gzip":
        blob = gzip.compress(data)
    elif kind == "gzip-multi":
        blob = gzip.compress(data[:1000]) + gzip.compress(data[1000:])
    elif kind == "zstd":
        blob = zstandard.ZstdCompressor().compress(data)
    else:
        blob = data
    out = decompressed(io.BytesIO(blob))
    got = b""
    while chunk := out.read(65536):
        got += chunk
    assert got == data


def test_truncated_gzip_is_refused() -> None:
    blob = gzip.compress(os.urandom(100000))[:-5000]
    out = decompressed(io.BytesIO(blob))
    with pytest.raises(InvalidArgument, match="truncated"):
        while out.read(65536):
            pass


@pytest.mark.parametrize(
    ("name", "parts"), [("a/b", ["a", "b"]), ("./a//b/", ["a", "b"]), ("a/../b", ["b"]), (".", [])]
)
def test_clean(name: str, parts: list[str]) -> None:
    assert clean(name) == parts


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x"])
def test_clean_refuses_escapes(name: str) -> None:
    with pytest.raises(InvalidArgument):
        clean(name)


def test_www_authenticate() -> None:
    scheme, params = parse_www_authenticate(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_www_authenticate('Basic realm="x"') == ("basic", {"realm": "x"})


def test_docker_config_credentials(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "config.json")
    with open(path, "w") as f:
        json.dump(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                    "127.0.0.1:5000": {"auth": base64.b64encode(b"me:a:b").decode()},
                    "http://reg.example:8080/v2/": {"username": "u", "password": "p"},
                }
            },
            f,
        )
    creds = load_docker_credentials(path)
    assert creds["docker.io"].username == "hub" and creds["docker.io"].password == "pw"
    assert creds["127.0.0.1:5000"].password == "a:b"
    assert creds["reg.example:8080"].username == "u"
