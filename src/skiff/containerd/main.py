"""Entry point of `skiff-containerd` (placeholder until its issue lands)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiff-containerd: not implemented yet (see issue 4)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
