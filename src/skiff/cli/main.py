"""Entry point of `skiff` (placeholder until its issue lands)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiff: not implemented yet (see issue 6)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
