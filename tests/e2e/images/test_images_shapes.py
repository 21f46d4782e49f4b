"""The pieces of skiffd's image service that need no daemon: dockerd's
progress text, X-Registry-Auth decoding, `docker import --change`, the
reference filter's glob (Go's path.Match: `*` stops at a slash)."""

from __future__ import annotations

import base64
import json

import pytest

from skiff.engine.images import progress as pg
from skiff.engine.images.service import apply_changes, parse_auth_header
from skiff.engine.images.views import ImageView, history, reference_matches
from skiff.errors import InvalidArgument


def test_progress_text_as_jsonmessage_renders_it() -> None:
    assert pg.human_size(512) == "512B"
    assert pg.human_size(1036261) == "1.036MB"
    assert pg.human_size(32768) == "32.77kB"
    assert pg.bar(0, 0) == ""
    assert pg.bar(50, 100) == "[" + "=" * 25 + ">" + " " * 25 + "]      50B/100B"
    line = json.loads(pg.layer("Downloading", "abc", 5, 10))
    assert line == {
        "status": "Downloading",
        "progressDetail": {"current": 5, "total": 10},
        "progress": pg.bar(5, 10),
        "id": "abc",
    }
    assert pg.layer("Pull complete", "abc").endswith(b"\r\n")
    assert json.loads(pg.error("boom")) == {"errorDetail": {"message": "boom"}, "error": "boom"}


def test_registry_auth_header() -> None:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    creds = parse_auth_header(enc({"username": "u", "password": "p/+?"}))
    assert creds is not None and (creds.username, creds.password) == ("u", "p/+?")
    creds = parse_auth_header(enc({"auth": base64.b64encode(b"me:s3cret").decode()}))
    assert creds is not None and (creds.username, creds.password) == ("me", "s3cret")
    assert parse_auth_header(enc({})) is None
    assert parse_auth_header("!!not base64!!") is None
    assert parse_auth_header(None) is None


def test_import_changes() -> None:
    config = apply_changes(
        {},
        [
            'CMD ["/bin/app", "-v"]',
            "ENTRYPOINT /bin/sh",
            "ENV A=1",
            "ENV B two words",
            "EXPOSE 80 53/udp",
            'LABEL a=b "c=d e"',
            "WORKDIR /srv",
            "USER nobody",
            'VOLUME ["/data"]',
        ],
    )
    assert config["Cmd"] == ["/bin/app", "-v"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh"]
    assert config["Env"] == ["A=1", "B=two words"]
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"a": "b", "c": "d e"}
    assert (config["WorkingDir"], config["User"]) == ("/srv", "nobody")
    assert config["Volumes"] == {"/data": {}}
    with pytest.raises(InvalidArgument):
        apply_changes({}, ["RUN rm -rf /"])


def view(*names: str) -> ImageView:
    return ImageView(
        id="sha256:" + "a" * 64,
        config={"history": [{"created_by": "x"}, {"created_by": "y", "empty_layer": True}]},
        names=list(names),
        targets={n: "sha256:" + "b" * 64 for n in names},
        layer_sizes=[7],
    )


def test_reference_filter_and_history() -> None:
    v = view("docker.io/library/busybox:latest", "example.com/team/app:1")
    assert reference_matches(v, ["busybox"])
    assert reference_matches(v, ["busy*"])
    assert reference_matches(v, ["busybox:lat*"])
    assert reference_matches(v, ["example.com/team/*"])
    assert reference_matches(v, ["*"])  # `busybox`
    assert not reference_matches(v, ["example.com/*"])  # `*` never crosses a slash
    assert v.repo_tags() == ["busybox:latest", "example.com/team/app:1"]
    assert v.repo_digests() == [
        "busybox@sha256:" + "b" * 64,
        "example.com/team/app@sha256:" + "b" * 64,
    ]
    h = history(v)
    assert [e["CreatedBy"] for e in h] == ["y", "x"]
    assert h[0]["Id"] == v.id and h[1]["Id"] == "<missing>"
    assert [e["Size"] for e in h] == [0, 7]
