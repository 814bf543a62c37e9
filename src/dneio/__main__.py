"""``python -m dneio demo`` and ``python -m dneio bench``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m dneio {demo,bench} [options]")
        print("  demo   a line-echo protocol over loopback TCP: natively, on asyncio, on trio")
        print("  bench  measure dneio against its baselines (see --help)")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from ._tools._demo import main as demo

        return int(demo(rest))
    if command == "bench":
        from ._tools._bench import main as bench

        return int(bench(rest))
    print(f"unknown command {command!r}; expected 'demo' or 'bench'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
