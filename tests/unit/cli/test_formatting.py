"""docker's units and Go's tabwriter, as the CLI's tables depend on them."""

from __future__ import annotations

import io

import pytest

from skiff.cli import formatting as fmt


def test_tabwrite_like_go() -> None:
    # minwidth 10, padding 3; the last cell is not padded
    out = fmt.tabwrite(["CONTAINER ID\tIMAGE\tNAMES", "abc\tbusybox\tweb"])
    assert out == "CONTAINER ID   IMAGE     NAMES\nabc            busybox   web\n"
    assert fmt.tabwrite(["a\t\tz"]) == "a         " + " " * 10 + "z\n"
    top = fmt.tabwrite(["UID\tPID", "root\t12"], minwidth=20)
    assert top == "UID" + " " * 17 + "PID\nroot" + " " * 16 + "12\n"


@pytest.mark.parametrize(
    ("size", "precision", "text"),
    [(0, 3, "0B"), (999, 3, "999B"), (1000, 3, "1kB"), (1982419, 3, "1.98MB"),
     (1982419, 4, "1.982MB"), (5 * 10**9, 3, "5GB"), (123456, 3, "123kB")],
)  # fmt: skip
def test_human_size(size: int, precision: int, text: str) -> None:
    assert fmt.human_size(size, precision) == text


def test_bytes_size() -> None:
    assert fmt.bytes_size(964 * 1024) == "964KiB"
    assert fmt.bytes_size(23.54 * 1024**3) == "23.54GiB"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
     (119, "About a minute"), (120, "2 minutes"), (3600, "About an hour"), (7200, "2 hours"),
     (3 * 86400, "3 days"), (20 * 86400, "2 weeks"), (90 * 86400, "3 months"),
     (3 * 365 * 86400, "3 years")],
)  # fmt: skip
def test_human_duration(seconds: float, text: str) -> None:
    assert fmt.human_duration(seconds) == text


def test_parse_time() -> None:
    assert fmt.parse_time("1970-01-01T00:00:10.5Z") == 10.5
    assert fmt.parse_time("1970-01-01T01:00:10.000000001+01:00") == pytest.approx(10.000000001)
    assert fmt.parse_time("0001-01-01T00:00:00Z") == 0.0


def test_formatter_table_json_and_template() -> None:
    rows = [{"ID": "a", "Name": "x"}, {"ID": "bb", "Name": "y"}]
    headers = {"ID": "CONTAINER ID", "Name": "NAME"}
    out = io.StringIO()
    fmt.Formatter("", "table {{.ID}}\t{{.Name}}", headers).render(rows, out)
    assert out.getvalue() == "CONTAINER ID   NAME\na              x\nbb             y\n"
    out = io.StringIO()
    fmt.Formatter("{{.Name}}-{{.ID}}", "table {{.ID}}", headers).render(rows, out)
    assert out.getvalue() == "x-a\ny-bb\n"
    out = io.StringIO()
    fmt.Formatter("json", "table {{.ID}}", headers).render(rows, out)
    assert out.getvalue() == '{"ID":"a","Name":"x"}\n{"ID":"bb","Name":"y"}\n'
    out = io.StringIO()
    fmt.Formatter("table {{.Name}}\\t{{.ID}}", "", headers).render(rows, out)
    assert out.getvalue().splitlines()[0] == "NAME      CONTAINER ID"


def test_ellipsis_and_short_id() -> None:
    assert fmt.ellipsis("sh -c 'echo hello; sleep 1000'", 20) == "sh -c 'echo hello; …"
    assert fmt.short_id("sha256:e4f8e184eccab6256488") == "e4f8e184ecca"


def test_rows_marshal_like_go() -> None:
    assert fmt.row_json({"b": "<none>", "a": "x&y"}) == '{"a":"x\\u0026y","b":"\\u003cnone\\u003e"}'
    out = io.StringIO()
    fmt.Formatter("{{json .}}", "table {{.a}}", {}).render([{"b": 1, "a": 2}], out)
    assert out.getvalue() == '{"a":2,"b":1}\n'
