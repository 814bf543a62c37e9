"""The command line: ``python -m dneio bench [options]``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import callgrind
from .cases import CASE_NAMES, CASES
from .measure import Result, measure
from .report import environment, format_table, plot, table_rows, write_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dneio bench",
        description="Measure dneio against its baselines in one process and print the ratios.",
    )
    parser.add_argument(
        "--case", action="append", choices=CASE_NAMES, metavar="NAME",
        help=f"run only this case (repeatable); one of: {', '.join(CASE_NAMES)}",
    )
    parser.add_argument("--size", type=int, help="operations (or waiters, coroutines) per run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 rounds: seconds")
    parser.add_argument("--rounds", type=int, help="rounds per variant, best kept (default 5)")
    parser.add_argument(
        "--scaling", action="store_true",
        help="also run each case at growing sizes (10^3 up to 10^5 or 10^6)",
    )
    parser.add_argument(
        "--max-size", type=int, help="with --scaling: leave out sizes above this"
    )
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument(
        "--plot", metavar="FILE",
        help="save per-operation cost against size as a PNG (implies --scaling; "
        "needs matplotlib: pip install 'dneio[plot]')",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables in Markdown"
    )
    parser.add_argument(
        "--callgrind", action="store_true",
        help="also count instructions per operation under valgrind's callgrind, and judge "
        "the goals on their ratios (needs valgrind: apt-get install valgrind)",
    )
    parser.add_argument(
        "--callgrind-size", type=int, metavar="N",
        help=f"with --callgrind: count runs of N and 2N operations "
        f"(default {callgrind.DEFAULT_SIZE:,}; {callgrind.QUICK_SIZE} with --quick)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.size is not None and args.size < 1:
        print("--size must be at least 1", file=sys.stderr)
        return 2
    rounds = args.rounds or (2 if args.quick else 5)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    if args.callgrind_size is not None and args.callgrind_size < 1:
        print("--callgrind-size must be at least 1", file=sys.stderr)
        return 2
    if args.callgrind and callgrind.valgrind() is None:
        print(callgrind.INSTALL_HINT, file=sys.stderr)
        return 2
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print(
                "--plot needs matplotlib, which is not installed: "
                "pip install 'dneio[plot]' (or pip install matplotlib), or leave out --plot",
                file=sys.stderr,
            )
            return 2
    chosen = [c for c in CASES if not args.case or c.name in args.case]
    out = sys.stdout
    info = environment()
    print(", ".join(f"{k}: {v}" for k, v in info.items() if v is not None), file=out)
    print(f"best of {rounds} rounds, variants interleaved; ratio = dneio / baseline", file=out)
    print(file=out, flush=True)

    # Each case at its growing sizes right after its own run, so that every
    # case is measured in the same state of the process at every size: a
    # case that loads something (request-twisted, last, loads Twisted) does
    # so after every other case's figures.
    results: list[Result] = []
    scaling: list[Result] = []
    for case in chosen:
        size = args.size or (case.quick_size if args.quick else case.size)
        results.append(measure(case, size, rounds))
        if args.scaling or args.plot:
            sizes = case.scaling_sizes
            if args.quick:
                sizes = tuple(s // 100 for s in sizes[:3])
            if args.max_size:
                sizes = tuple(s for s in sizes if s <= args.max_size)
            for scaled in sizes:
                scaling.append(measure(case, scaled, rounds))
    failed = False
    if args.callgrind:
        n = args.callgrind_size or (callgrind.QUICK_SIZE if args.quick else callgrind.DEFAULT_SIZE)
        print(
            f"counting instructions under callgrind: runs of {n:,} and {2 * n:,} operations "
            "in one child process (ten minutes or so for every case) ...",
            file=out, flush=True,
        )
        counts = callgrind.count([r.case for r in results if r.status == "ok"], n)
        if counts.error:
            print(counts.error, file=sys.stderr)
            failed = True
        for result in results:
            for figure in result.figures:
                figure.instructions = counts.per_op.get((result.case.name, figure.label))
        print(
            "instructions/op: dneio vs baseline, from callgrind; met is judged on the "
            "instruction ratio where there is one",
            file=out,
        )
        print(file=out)
    print(format_table(table_rows(results), args.markdown), file=out, flush=True)

    if args.scaling or args.plot:
        print(file=out)
        print("scaling: per-operation cost at growing sizes", file=out)
        print(format_table(table_rows(scaling), args.markdown), file=out, flush=True)

    if args.json:
        write_json(args.json, info, rounds, results, scaling)
    if args.plot:
        plot(scaling, args.plot)
        print(f"\nplot saved to {args.plot}", file=out)
    return 1 if failed or any(r.status == "error" for r in results + scaling) else 0
