"""The network layer's state file: every network and endpoint skiffd knows.

One JSON document under the engine's state dir, replaced atomically (temp file,
fsync, rename) on every change, so a daemon killed at any point restarts from
either the old or the new state, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from skiff.engine.network.model import Endpoint, Network, to_json

FORMAT = 1


class NetworkStore:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "network.json"
        self.networks: dict[str, Network] = {}
        self.endpoints: dict[str, Endpoint] = {}

    def load(self) -> None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        self.networks = {n["id"]: Network.from_json(n) for n in raw.get("networks", [])}
        self.endpoints = {e["id"]: Endpoint.from_json(e) for e in raw.get("endpoints", [])}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": FORMAT,
            "networks": [to_json(n) for n in self.networks.values()],
            "endpoints": [to_json(e) for e in self.endpoints.values()],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
