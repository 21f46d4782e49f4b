"""Suite-wide clean-up of the cgroup directories the tests' containers leave behind.

Runtimes (ours and runc alike) remove a container's own cgroup but not the
parents its cgroupsPath named (`/skiff/<id>` leaves `skiff`, containerd's
`/<namespace>/<id>` leaves `default`, dockerd's leaves `docker`). Whatever
top-level cgroup directory appeared during the session is removed at its
end, deepest first and only while empty, so a run that fails midway leaves
no directories behind and nothing anyone else made is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

CGROUP_ROOT = "/sys/fs/cgroup"


def _hierarchies() -> list[str]:
    try:
        names = os.listdir(CGROUP_ROOT)
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(CGROUP_ROOT, name)
        if os.path.exists(os.path.join(path, "cgroup.procs")):
            found.append(path)
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.procs")):
        found.append(CGROUP_ROOT)  # a pure cgroup2 host
    return found


def _top_dirs() -> set[str]:
    dirs = set()
    for hierarchy in _hierarchies():
        try:
            for entry in os.scandir(hierarchy):
                if entry.is_dir(follow_symlinks=False):
                    dirs.add(entry.path)
        except OSError:
            continue
    return dirs


def _remove_empty_tree(top: str) -> None:
    for current, _subdirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(current)
        except OSError:
            pass  # still holds processes: not ours to end


@pytest.fixture(scope="session", autouse=True)
def _cgroups_left_by_the_session() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    before = _top_dirs()
    try:
        yield
    finally:
        for top in sorted(_top_dirs() - before):
            _remove_empty_tree(top)
