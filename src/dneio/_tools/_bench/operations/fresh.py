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
same flags, ``sys.path`` and environment (the pure-Python switch
included), which warms both variants up (with at most a tenth as many
coroutines, and no more than a hundred) and then measures them, one
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
from typing import Any

#: role -> "module:function" of the measurement run in the child.
MEASURES = {
    "dneio": "native:parked_memory",
    "baseline": "on_asyncio:parked_memory",
}

# Figures measured in a child for the other role of the same round, not yet
# handed out: (role, n) -> bytes.
_pending: dict[tuple[str, int], float] = {}
_rounds = 0


def _interpreter_flags() -> list[str]:
    """The command-line flags of this interpreter (-X dev, -O, ...), to pass on."""
    try:
        # What the standard library's own test and multiprocessing helpers use.
        flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    except AttributeError:
        flags = []
    return flags


def _this_dneio() -> dict[str, str]:
    """Which dneio this process runs: its package file and its core."""
    import dneio

    from ...._core import _impl

    return {"file": str(Path(dneio.__file__).resolve()), "core": _impl.CORE}


def measure_both(n: int, first: str) -> dict[str, float]:
    """Both roles' bytes for ``n`` parked coroutines, measured in a new interpreter.

    The child runs with this interpreter's flags and its ``sys.path``
    exactly (``-P``: not the working directory in front of it), and checks
    that it imports the same dneio with the same core.
    """
    order = [first] + [role for role in MEASURES if role != first]
    setup = {"path": sys.path, "dneio": _this_dneio(), "n": n, "order": order}
    code = (
        "import json, sys; setup = json.loads(sys.argv[1]); sys.path[:] = setup['path']; "
        f"from {__name__} import child; child(setup)"
    )
    done = subprocess.run(
        [sys.executable, "-P", *_interpreter_flags(), "-c", code, json.dumps(setup)],
        env=dict(os.environ), capture_output=True, text=True, timeout=600,
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


def child(setup: dict[str, Any]) -> None:
    """In the new interpreter: measure each role in order and print the figures."""
    import importlib

    mine = _this_dneio()
    if mine != setup["dneio"]:
        raise RuntimeError(
            f"the memory measurement's process imported another dneio: {mine}, "
            f"not {setup['dneio']}"
        )
    n: int = setup["n"]
    order: list[str] = setup["order"]
    runs: dict[str, Callable[[int], float]] = {}
    for role in order:
        module_name, function = MEASURES[role].split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        runs[role] = getattr(module, function)
    # Warm up as every case does (imports done on first use, caches), with
    # few enough coroutines that asyncio's registry stays far smaller than n
    # (a tenth of it at most); twice, since what one side loads can change
    # what the other does on its next run (dneio looks for the hosts whose
    # modules are loaded).
    for _ in range(2):
        for role in order:
            runs[role](max(1, min(n // 10, 100)))
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
