"""docker's run/create flags translated to Engine API JSON."""

from __future__ import annotations

import pytest

from skiff.cli import options
from skiff.cli.common import UsageError, parser


def body(*argv: str, run: bool = True) -> dict:  # type: ignore[type-arg]
    p = parser("run", add_help=False)
    options.add_create_flags(p, run=run)
    return options.build_create_body(p.parse_args(list(argv)), run=run)


def test_run_defaults_attach_stdout_and_stderr() -> None:
    b = body("busybox")
    assert b["Image"] == "busybox" and "Cmd" not in b
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"]) == (False, True, True)
    assert (b["Tty"], b["OpenStdin"], b["StdinOnce"]) == (False, False, False)
    assert b["HostConfig"]["NetworkMode"] == "default"
    assert b["HostConfig"]["RestartPolicy"] == {"Name": "no"}


def test_interactive_tty_detached() -> None:
    b = body("-it", "busybox", "sh")
    assert (b["AttachStdin"], b["Tty"], b["OpenStdin"], b["StdinOnce"]) == (True, True, True, True)
    b = body("-dit", "busybox", "sh")
    assert (b["AttachStdin"], b["AttachStdout"], b["StdinOnce"], b["OpenStdin"]) == (
        False,
        False,
        False,
        True,
    )


def test_command_after_image_is_not_parsed() -> None:
    b = body("--rm", "busybox", "sh", "-c", "ls -l", "--name", "x")
    assert b["Cmd"] == ["sh", "-c", "ls -l", "--name", "x"]
    assert b["HostConfig"]["AutoRemove"] is True


def test_resources_and_security() -> None:
    h = body("--memory", "512m", "--cpus", "1.5", "--pids-limit", "10", "--cap-add", "NET_ADMIN",
             "--cap-drop", "ALL", "--privileged", "--read-only", "--init", "--shm-size", "1g",
             "busybox")["HostConfig"]  # fmt: skip
    assert h["Memory"] == 512 << 20 and h["NanoCpus"] == 1_500_000_000 and h["PidsLimit"] == 10
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["ALL"]
    assert h["Privileged"] and h["ReadonlyRootfs"] and h["Init"] and h["ShmSize"] == 1 << 30


def test_env_labels_volumes_ports(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / "e"
    env_file.write_text("# c\nF=1\n\nPASSED\n")
    monkeypatch.setenv("PASSED", "through")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    b = body("-e", "A=1", "-e", "UNSET_VAR", "--env-file", str(env_file), "-l", "k=v",
             "-v", "/h:/c:ro", "-v", "/anon", "--mount", "type=bind,src=/s,dst=/d,readonly",
             "-p", "8080:80", "-p", "127.0.0.1:53:53/udp", "--expose", "9000", "busybox")  # fmt: skip
    assert b["Env"] == ["F=1", "PASSED=through", "A=1"]
    assert b["Labels"] == {"k": "v"}
    assert b["HostConfig"]["Binds"] == ["/h:/c:ro"] and b["Volumes"] == {"/anon": {}}
    assert b["HostConfig"]["Mounts"] == [
        {"Type": "bind", "Source": "/s", "Target": "/d", "ReadOnly": True}
    ]
    assert b["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "9000/tcp": {}}
    assert b["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}],
    }


def test_health_restart_signal_entrypoint() -> None:
    b = body("--health-cmd", "true", "--health-interval", "1m30s", "--health-retries", "2",
             "--restart", "on-failure:3", "--stop-signal", "SIGINT", "--entrypoint", "",
             "busybox")  # fmt: skip
    assert b["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 90 * 10**9, "Retries": 2}
    assert b["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert b["StopSignal"] == "SIGINT" and b["Entrypoint"] == [""]


@pytest.mark.parametrize(
    "argv",
    [["--restart", "sometimes", "busybox"], ["--memory", "lots", "busybox"],
     ["-p", "1:2:3:4", "busybox"], ["--mount", "type=bind,src=/x", "busybox"],
     ["--health-cmd", "x", "--health-interval", "soon", "busybox"]],
)  # fmt: skip
def test_bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        body(*argv)


def test_ram_and_duration() -> None:
    assert options.ram_in_bytes("1024") == 1024
    assert options.ram_in_bytes("2k") == 2048
    assert options.ram_in_bytes("1GB") == 1 << 30
    assert options.duration_ns("500ms") == 500_000_000
