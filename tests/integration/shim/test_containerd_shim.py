"""Debian's containerd 1.6 drives skiff-shim (runtime io.containerd.skiff.v1) through ctr."""

from __future__ import annotations

import time

import pytest
from shim_containerd import IMAGE, Containerd

pytestmark = pytest.mark.root


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def task_status(cd: Containerd, container_id: str) -> str:
    for line in cd.ctr("task", "ls", check=False).stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return fields[-1]
    return ""


def test_run_rm_prints_output(containerd: Containerd) -> None:
    result = containerd.ctr(*containerd.run_args("--rm", IMAGE, "echo1", "echo", "hi"))
    assert result.stdout == "hi\n"
    assert containerd.ctr("container", "ls", "-q").stdout.strip() == ""
