"""Modules imported on first attribute access, to keep `skiff` quick to start.

Part of the CLI (DESIGN.md: skiff CLI); see the start-up budget in the issue.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


def module(name: str) -> Any:
    return LazyModule(name)
