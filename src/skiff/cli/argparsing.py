"""argparse with docker's usage-error status (125) and wording.

Part of the CLI (DESIGN.md: skiff CLI); a module of its own so that commands
that parse nothing (`skiff version`) do not import argparse.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from skiff.cli.common import StatusError, UsageError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\nSee '{self.prog} --help'.")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise StatusError(status)
