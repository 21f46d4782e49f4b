"""Entry point of `skiff-ctr`, the debug CLI for skiff-containerd (placeholder until issue 4)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("skiff-ctr: not implemented yet (see issue 4)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
