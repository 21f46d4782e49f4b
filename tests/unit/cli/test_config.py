"""The context store (docker's layout) and the order in which the endpoint is chosen."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from skiff.cli.config import ConfigError, ConfigFile, ContextStore, resolve_endpoint


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "SKIFF_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def test_store_layout_and_tls_material(tmp_path: Path) -> None:
    store = ContextStore(tmp_path)
    store.create("prod", "tcp://10.0.0.1:2376", "desc", tls_material={"ca": b"CA", "key": b"K"})
    cid = hashlib.sha256(b"prod").hexdigest()
    meta = json.loads((tmp_path / "contexts/meta" / cid / "meta.json").read_text())
    assert meta == {"Name": "prod", "Metadata": {"Description": "desc"},
                    "Endpoints": {"docker": {"Host": "tcp://10.0.0.1:2376", "SkipTLSVerify": False}}}  # fmt: skip
    key = tmp_path / "contexts/tls" / cid / "docker/key.pem"
    assert key.read_bytes() == b"K" and key.stat().st_mode & 0o777 == 0o600
    ctx = store.load("prod")
    tls = ctx.tls()
    assert tls is not None and tls.ca and tls.ca.endswith("ca.pem") and tls.cert is None
    assert store.names() == ["prod"]
    store.remove("prod")
    assert store.names() == [] and not (tmp_path / "contexts/tls" / cid).exists()
    with pytest.raises(ConfigError):
        store.load("prod")


def test_endpoint_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ContextStore(tmp_path).create("a", "unix:///a.sock")
    ContextStore(tmp_path).create("b", "unix:///b.sock")
    cfg = ConfigFile(tmp_path)
    assert resolve_endpoint(None, [], cfg, None).host == "unix:///run/skiff/skiff.sock"
    cfg.current_context = "a"
    assert resolve_endpoint(None, [], cfg, None).host == "unix:///a.sock"
    monkeypatch.setenv("DOCKER_CONTEXT", "b")
    assert resolve_endpoint(None, [], cfg, None).host == "unix:///b.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///env.sock")
    ep = resolve_endpoint(None, [], cfg, None)
    assert (ep.context, ep.host) == ("default", "unix:///env.sock")
    assert resolve_endpoint(None, ["/flag.sock"], cfg, None).host == "unix:///flag.sock"
    assert resolve_endpoint("a", [], cfg, None).host == "unix:///a.sock"
    with pytest.raises(ConfigError):
        resolve_endpoint("a", ["unix:///x"], cfg, None)


def test_config_file_keeps_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"auths": {"r": {"auth": "eA=="}}, "psFormat": "x"}')
    cfg = ConfigFile(tmp_path)
    cfg.current_context = "a"
    cfg.save()
    data = json.loads((tmp_path / "config.json").read_text())
    assert data == {"auths": {"r": {"auth": "eA=="}}, "psFormat": "x", "currentContext": "a"}
    cfg.current_context = "default"
    cfg.save()
    assert "currentContext" not in json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError):
        ConfigFile(tmp_path)
