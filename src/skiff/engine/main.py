"""Entry point of `skiffd` (placeholder until its issue lands)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiffd: not implemented yet (see issue 5)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
