"""skiff.cli.goshape: inspect answers as the docker CLI's Go structs see them."""

from __future__ import annotations

import json

import pytest

from skiff.cli.formatting import TemplateError, render_inspect
from skiff.cli.goshape import go_float, go_json, go_time, typed, typed_root


def test_struct_order_zero_values_unknown_fields_and_omitempty() -> None:
    raw = {"Labels": {"z": "1", "a": "2"}, "Image": "busybox", "Bogus": 1, "Cmd": ["true"]}
    out = go_json(typed(raw, "container.Config"))
    assert out == (
        '{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
        '"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,'
        '"Cmd":["true"],"Image":"busybox","Volumes":null,"WorkingDir":"","Entrypoint":null,'
        '"OnBuild":null,"Labels":{"a":"2","z":"1"}}'
    )
    with_omitted = go_json(typed({**raw, "StopTimeout": 5, "ExposedPorts": {}}, "container.Config"))
    assert with_omitted.endswith('"Labels":{"a":"2","z":"1"},"StopTimeout":5}')


def test_arrays_pointers_and_times() -> None:
    host = typed({"RestartPolicy": {"Name": "no"}}, "container.HostConfig")
    assert json.loads(go_json(host))["ConsoleSize"] == [0, 0]
    assert go_json(host["RestartPolicy"]) == '{"Name":"no","MaximumRetryCount":0}'
    assert go_time("2026-11-26T00:49:41.120000000+00:00") == "2026-11-26T00:49:41.12Z"
    assert go_time(None) == "0001-01-01T00:00:00Z"
    assert go_time("2026-11-26T00:49:41Z").go_string() == "2026-11-26 00:49:41 +0000 UTC"


def test_floats_as_encoding_json() -> None:
    assert [go_float(x) for x in (3.0, 0.5, 1e20, 1e21, 1e-7, 1.5e-10)] == [
        "3", "0.5", "100000000000000000000", "1e+21", "1e-7", "1.5e-10"
    ]  # fmt: skip


def test_indent_and_html_escape_as_json_marshal() -> None:
    v = typed({"Name": "a<b>&", "Labels": {}, "Options": None}, "volume.Volume")
    out = go_json([v], "    ", escape_html=True)
    assert out.startswith('[\n    {\n        "Driver": "",\n')  # CreatedAt: omitempty
    assert '"Labels": {},\n' in out and '"Name": "a\\u003cb\\u003e\\u0026",' in out
    assert out.endswith("\n    }\n]")


def test_templates_over_structs_fall_back_to_raw() -> None:
    obj = {"HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}, "X": 1}
    assert render_inspect("{{.HostConfig.RestartPolicy}}", "container", obj) == "{always 0}"
    # X is no field of the struct: the raw JSON answers, as the docker CLI's fallback
    assert render_inspect("{{.X}}", "container", obj) == "1"
    with pytest.raises(TemplateError, match='no entry for key "Y"'):
        render_inspect("{{.Y}}", "container", obj)
    with pytest.raises(TemplateError):
        render_inspect("{{.X}}", "volume", obj, fallback=False)
    assert typed_root("other", obj) is obj
