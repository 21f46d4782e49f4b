"""The Go-template subset behind --format, checked against what Go's text/template
(with the docker CLI's functions) prints for the same template and data."""

from __future__ import annotations

import pytest

from skiff.cli.gotemplate import Template, TemplateError

DATA = {
    "Name": "/web",
    "State": {"Status": "running", "Pid": 42, "Running": True, "ExitCode": 0},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}, "Cmd": ["sh", "-c", "x"]},
    "NetworkSettings": {"IPAddress": "", "Networks": {"none": {"IPAddress": ""}}},
    "Mounts": [{"Destination": "/data", "RW": False}],
    "Empty": [],
    "Nil": None,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.State.Status}}", "running"),
        ("{{.NetworkSettings.IPAddress}}", ""),
        ("{{json .Config.Labels}}", '{"b":"2","a":"1"}'),
        (
            "{{json .Config}}",
            '{"Env":["A=1","B=2"],"Labels":{"b":"2","a":"1"},"Cmd":["sh","-c","x"]}',
        ),
        ("{{range .Config.Env}}{{.}};{{end}}", "A=1;B=2;"),
        ("{{range $i, $e := .Config.Env}}{{$i}}={{$e}} {{end}}", "0=A=1 1=B=2 "),
        ("{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}},{{end}}", "a:1,b:2,"),
        ("{{range .Empty}}x{{else}}none{{end}}", "none"),
        ('{{index .Config.Labels "a"}}', "1"),
        ("{{index .Config.Cmd 1}}", "-c"),
        ("{{(index .Mounts 0).Destination}}", "/data"),
        ("{{.Config.Labels}}", "map[a:1 b:2]"),
        ("{{.Config.Cmd}}", "[sh -c x]"),
        ("{{.State.Running}} {{.State.Pid}}", "true 42"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Nil}}", "<nil>"),
        ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
        ("{{if ne .State.ExitCode 0}}bad{{else if .State.Running}}run{{else}}ok{{end}}", "run"),
        ("{{with .State}}{{.Status}}/{{$.Name}}{{end}}", "running//web"),
        ("{{ range .Config.Env -}} [{{ . }}] {{- end }}", "[A=1][B=2]"),
        ("a {{- /* comment */ -}} b", "ab"),
        ('{{join .Config.Env ","}}', "A=1,B=2"),
        ("{{len .Config.Env}} {{len .Empty}}", "2 0"),
        ('{{printf "%-6s|%3d" .State.Status .State.Pid}}', "running| 42"),
        ('{{.Name | upper}} {{lower "AB"}} {{title "ab cd"}}', "/WEB ab Ab Cd"),
        ('{{split "a:b" ":"}}', "[a b]"),
        ("{{truncate .Name 2}}", "/w"),
        ('{{if and .State.Running (eq .Name "/web")}}both{{end}}', "both"),
        ("{{if or .Nil .Empty}}x{{else}}neither{{end}}", "neither"),
        ("{{not .State.Running}}", "false"),
        ("{{$x := .State.Pid}}{{$x}}", "42"),
        ("{{println .Name}}", "/web\n"),
    ],
)
def test_renders_like_go(template: str, expected: str) -> None:
    assert Template(template).render(DATA) == expected


@pytest.mark.parametrize(
    "template",
    ["{{nosuchfn .Name}}", "{{if .Name}}open", "{{end}}", "{{range 3.5}}{{end}}", "{{$undefined}}"],
)
def test_errors(template: str) -> None:
    with pytest.raises(TemplateError):
        Template(template).render(DATA)


def test_objects_expose_attributes() -> None:
    class Row:
        ID = "abc"

        def Label(self) -> str:
            return "lbl"

    assert Template("{{.ID}} {{.Label}}").render(Row()) == "abc lbl"
    with pytest.raises(TemplateError):
        Template("{{.Nope}}").render(Row())


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Name}", "template: :1: bad character U+007D '}'"),
        ("{{.Name", "template: :1: unclosed action"),
        ("a\n{{nosuchfn .Name}}", 'template: :2: function "nosuchfn" not defined'),
    ],
)
def test_parse_errors_as_go(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        Template(template)
    assert str(e.value) == message


def test_execution_errors_placed_as_go() -> None:
    class Strict(dict[str, object]):
        def missing_field(self, name: str) -> str:
            return f'map has no entry for key "{name}"'

    data = Strict(State=Strict(Status="up"), Cmd=["a"])
    for template, message in [
        ("x {{.State.Nope}}", 'template: :1:10: executing "" at <.State.Nope>: map has no'),
        ("a\n {{if .State.Nope}}y{{end}}", 'template: :2:12: executing "" at <.State.Nope>:'),
        ("{{$x := .State}}{{$x.Nope}}", 'template: :1:20: executing "" at <$x.Nope>:'),
        ("{{index .Cmd 5}}", 'template: :1:2: executing "" at <index .Cmd 5>: error calling '
         "index: index out of range: 5"),
    ]:  # fmt: skip
        with pytest.raises(TemplateError) as e:
            Template(template).render(data)
        assert str(e.value).startswith(message), template
