"""Memory measured in a fresh process: both sides of a round in one new interpreter.

What a process holds for N parked coroutines depends on what it held
before.  asyncio keeps every task in a registry (a weak set) whose table
grows with the number of tasks alive and never shrinks: a process that
has already had 20,000 tasks at once parks 20,000 more without growing it,
and ``tracemalloc`` then misses about a hundred bytes a task that the
first 20,000 cost.  The benchmark's earlier cases run many asyncio tasks,
so measured in its own process the baseline's figure would depend on
which cases ran before it, and on which round (the best is kept).

Here each round starts one new interpreter, with the same Python and the
same environment (the pure-Python switch included), which warms both
variants up (with at most a hundred coroutines) and then measures them, one
after the other, in an order that alternates from round to round; the
parent hands each variant its figure from the same child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: role -> "module:function" of the measurement run in the child.
MEASURES = {
    "dneio": "native:parked_memory",
    "baseline": "on_asyncio:parked_memory",
}

# Figures measured in a child for the other role of the same round, not yet
# handed out: (role, n) -> bytes.
_pending: dict[tuple[str, int], float] = {}
_rounds = 0


def _package_root() -> str:
    # .../src/dneio/_tools/_bench/operations/fresh.py -> .../src (or site-packages)
    return str(Path(__file__).resolve().parents[4])


def measure_both(n: int, first: str) -> dict[str, float]:
    """Both roles' bytes for ``n`` parked coroutines, measured in a new interpreter."""
    order = [first] + [role for role in MEASURES if role != first]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_package_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    done = subprocess.run(
        [sys.executable, "-c", f"from {__name__} import child; child({n}, {order!r})"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"the memory measurement's own process failed (exit {done.returncode}):\n"
            f"{done.stderr.strip()}"
        )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("the memory measurement's own process printed nothing")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


def child(n: int, order: list[str]) -> None:
    """In the new interpreter: measure each role in ``order`` and print the figures."""
    import importlib

    runs: dict[str, Callable[[int], float]] = {}
    for role in order:
        module_name, function = MEASURES[role].split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        runs[role] = getattr(module, function)
    # Warm up as every case does (imports done on first use, caches), with
    # few enough coroutines that asyncio's registry stays far smaller than n;
    # twice, since what one side loads can change what the other does on
    # its next run (dneio looks for the hosts whose modules are loaded).
    for _ in range(2):
        for role in order:
            runs[role](min(n, 100))
    figures = {role: runs[role](n) for role in order}
    print(json.dumps(figures))


def figure(role: str, n: int) -> float:
    """``role``'s bytes for ``n`` parked coroutines, from the same child as the other role's."""
    global _rounds
    kept = _pending.pop((role, n), None)
    if kept is not None:
        return kept
    # Alternate which role a child measures first: dneio in even rounds.
    roles = list(MEASURES)
    first = roles[_rounds % 2]
    _rounds += 1
    figures = measure_both(n, first)
    for other, value in figures.items():
        if other != role:
            _pending[(other, n)] = value
    return figures[role]


def dneio_parked(n: int) -> float:
    """dneio's bytes for ``n`` coroutines parked in ``shift``, in a fresh process."""
    return figure("dneio", n)


def asyncio_parked(n: int) -> float:
    """The bytes of ``n`` parked asyncio tasks, in a fresh process."""
    return figure("baseline", n)
