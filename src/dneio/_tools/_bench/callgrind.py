"""``--callgrind``: instructions per operation, counted under valgrind's callgrind.

Timings on a busy machine vary by tens of percent; instruction counts do
not.  The cases are run once more, in one child process under
``valgrind --tool=callgrind``, each variant at ``n`` and at ``2n``
operations.  The timed part of a run (see ``operations.start_clock``)
begins with a call of ``os.getppid()`` and ends with one of
``os.getpgrp()``, two C library functions nothing else in the benchmark
calls: callgrind zeroes its counters on entering the first
(``--zero-before=getppid``) and writes them out on entering the second
(``--dump-before=getpgrp``), so each run leaves one file with the
instructions of exactly its timed part.  The cost of one operation is the
difference between the two runs divided by ``n``, which also cancels what
a run spends once (the markers themselves, first calls).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import operations
from .cases import CASES, Case
from .measure import timed

INSTALL_HINT = (
    "--callgrind needs valgrind, which is not installed: "
    "apt-get install valgrind (or dnf install valgrind, brew install valgrind on Intel macOS)"
)

#: Operations per counted run by default (and the double of it).
DEFAULT_SIZE = 1_000
QUICK_SIZE = 100

_START, _STOP = "getppid", "getpgrp"


def valgrind() -> str | None:
    """The valgrind executable, or None if it is not installed."""
    return shutil.which("valgrind")


def countable(case: Case) -> bool:
    """Instructions per operation mean something for timed cases only (not bytes)."""
    return case.unit == "ns/op"


@dataclass
class Counts:
    """Instructions per operation, per case and variant label; and what went wrong."""

    per_op: dict[tuple[str, str], float]
    error: str = ""


# -- in the parent ---------------------------------------------------------------------


def count(cases: Sequence[Case], size: int, python: str = sys.executable) -> Counts:
    """Run ``cases`` under callgrind in one child process; instructions per operation."""
    exe = valgrind()
    if exe is None:
        return Counts({}, INSTALL_HINT)
    names = [case.name for case in cases if countable(case)]
    if not names:
        return Counts({})
    with tempfile.TemporaryDirectory(prefix="dneio-callgrind-") as tmp:
        out = Path(tmp)
        cmd = [
            exe,
            "--tool=callgrind",
            f"--callgrind-out-file={out}/cg.out",
            f"--zero-before={_START}",
            f"--dump-before={_STOP}",
            python,
            "-m",
            __name__,
            "--size",
            str(size),
            *names,
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return Counts({}, f"the run under callgrind failed:\n{tail}")
        runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        dumps = _dumps(out)
        if len(dumps) != len(runs):
            return Counts(
                {},
                f"expected {len(runs)} callgrind dumps, found {len(dumps)}: something "
                f"else called {_START}() or {_STOP}() during the runs",
            )
        totals: dict[tuple[str, str, int], int] = {}
        for run, dump in zip(runs, dumps, strict=True):
            totals[run["case"], run["label"], run["size"]] = _instructions(dump)
    per_op = {}
    for (case, label, n), small in totals.items():
        large = totals.get((case, label, 2 * n))
        if large is not None:
            per_op[case, label] = (large - small) / n
    return Counts(per_op)


def _dumps(out: Path) -> list[Path]:
    """The files written at each ``--dump-before``, in order (not the one at exit)."""
    numbered = []
    for path in out.iterdir():
        match = re.fullmatch(r"cg\.out\.(\d+)", path.name)
        if match:
            numbered.append((int(match.group(1)), path))
    return [path for _, path in sorted(numbered)]


def _instructions(dump: Path) -> int:
    with dump.open() as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {dump}")


# -- in the child, under callgrind ------------------------------------------------------


def _child(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("cases", nargs="+")
    args = parser.parse_args(argv)
    chosen = [case for case in CASES if case.name in args.cases]
    n = args.size
    for case in chosen:
        if case.missing() is not None:
            continue
        for variant in case.variants:
            if variant.missing() is not None:
                continue
            operations.markers = None
            timed(variant.run, min(n, 100))  # warm up, uncounted
            for size in (n, 2 * n):
                # One dump per counted run: say which run it belongs to first.
                print(json.dumps({"case": case.name, "label": variant.label, "size": size}),
                      flush=True)
                operations.markers = (os.getppid, os.getpgrp)
                try:
                    timed(variant.run, size)
                finally:
                    operations.markers = None
                gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
