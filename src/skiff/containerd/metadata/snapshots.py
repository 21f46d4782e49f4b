"""Namespaced views of skiff-containerd's snapshotters.

Each namespace sees its own snapshot keys: the backend snapshotter (one per
name, overlayfs or native, below in containerd/snapshots) stores key
`<ns>/<key>`, and this layer adds and strips the prefix. Parents stay inside
the namespace, as in containerd.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TypeVar

from skiff.containerd.snapshots import Info, Mount, Snapshotter, Usage
from skiff.errors import InvalidArgument, NotFound, SkiffError

T = TypeVar("T")


def backend_key(ns: str, key: str) -> str:
    return f"{ns}/{key}" if key else ""


class NamespacedSnapshotter:
    """One backend snapshotter seen through namespaces."""

    def __init__(self, name: str, backend: Snapshotter) -> None:
        self.name = name
        self.backend = backend

    def _strip(self, ns: str, info: Info) -> Info:
        prefix = ns + "/"
        parent = info.parent[len(prefix) :] if info.parent.startswith(prefix) else info.parent
        return replace(info, name=info.name[len(prefix) :], parent=parent)

    def _key(self, ns: str, key: str) -> str:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        return backend_key(ns, key)

    def prepare(
        self, ns: str, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._rename_errors(
            ns, lambda: self.backend.prepare(self._key(ns, key), backend_key(ns, parent), labels)
        )

    def view(
        self, ns: str, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._rename_errors(
            ns, lambda: self.backend.view(self._key(ns, key), backend_key(ns, parent), labels)
        )

    def mounts(self, ns: str, key: str) -> list[Mount]:
        return self._rename_errors(ns, lambda: self.backend.mounts(self._key(ns, key)))

    def commit(self, ns: str, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        self._rename_errors(
            ns, lambda: self.backend.commit(self._key(ns, name), self._key(ns, key), labels)
        )

    def remove(self, ns: str, key: str) -> None:
        self._rename_errors(ns, lambda: self.backend.remove(self._key(ns, key)))

    def stat(self, ns: str, key: str) -> Info:
        return self._strip(
            ns, self._rename_errors(ns, lambda: self.backend.stat(self._key(ns, key)))
        )

    def update(self, ns: str, key: str, labels: Mapping[str, str]) -> Info:
        return self._strip(
            ns, self._rename_errors(ns, lambda: self.backend.update(self._key(ns, key), labels))
        )

    def usage(self, ns: str, key: str) -> Usage:
        return self._rename_errors(ns, lambda: self.backend.usage(self._key(ns, key)))

    def walk(self, ns: str) -> Iterator[Info]:
        prefix = ns + "/"
        for info in self.backend.walk():
            if info.name.startswith(prefix):
                yield self._strip(ns, info)

    def _rename_errors(self, ns: str, call: Callable[[], T]) -> T:
        # backend messages name "<ns>/<key>"; the client knows only "<key>"
        try:
            return call()
        except Exception as exc:
            msg = str(exc).replace(ns + "/", "")
            if msg != str(exc) and isinstance(exc, SkiffError):
                raise type(exc)(msg) from None
            raise


__all__ = ["NamespacedSnapshotter", "NotFound", "backend_key"]
