"""Running the variants of a case, interleaved, and keeping each one's best figure."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cases import Case, Variant


@dataclass
class Figure:
    """The best per-operation figure of one variant at one size."""

    label: str
    role: str
    value: float | None  # ns/op or bytes per coroutine; None when skipped
    note: str = ""


@dataclass
class Result:
    """One case measured at one size."""

    case: Case
    size: int
    status: str  # "ok", "unavailable" or "error"
    note: str = ""
    figures: list[Figure] = field(default_factory=list)

    def figure(self, role: str) -> Figure | None:
        for figure in self.figures:
            if figure.role == role and figure.value is not None:
                return figure
        return None

    @property
    def ratio(self) -> float | None:
        mine, theirs = self.figure("dneio"), self.figure("baseline")
        if mine is None or theirs is None or not theirs.value:
            return None
        assert mine.value is not None
        return mine.value / theirs.value

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio <= self.case.max_ratio

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "title": self.case.title,
            "unit": self.case.unit,
            "size": self.size,
            "status": self.status,
            "note": self.note,
            "figures": [
                {"label": f.label, "role": f.role, "value": f.value, "note": f.note}
                for f in self.figures
            ],
            "ratio": self.ratio,
            "goal": self.case.goal,
            "max_ratio": self.case.max_ratio,
            "met": self.met,
        }


def timed(run: Callable[[int], float], n: int) -> float:
    """``run(n)``, with the garbage collector collected first and paused throughout."""
    # As timeit does: collect first, and keep the collector out of the timing.
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return run(n)
    finally:
        if was_enabled:
            gc.enable()


def measure(case: Case, size: int, rounds: int) -> Result:
    """Run the variants of ``case`` interleaved, ``rounds`` times, keeping each one's best."""
    why = case.missing()
    if why is not None:
        return Result(case, size, "unavailable", why)
    scale = 1e9 if case.unit == "ns/op" else 1.0
    runnable: list[Variant] = []
    figures: dict[str, Figure] = {}
    for variant in case.variants:
        skip = variant.missing()
        figures[variant.label] = Figure(variant.label, variant.role, None, skip or "")
        if skip is None:
            runnable.append(variant)
    try:
        for variant in runnable:  # warm up: imports, first runs, caches
            timed(variant.run, min(size, 100))
        for _ in range(rounds):
            for variant in runnable:
                value = timed(variant.run, size) * scale / size
                figure = figures[variant.label]
                if figure.value is None or value < figure.value:
                    figure.value = value
    except Exception as exc:
        return Result(case, size, "error", f"{type(exc).__name__}: {exc}")
    return Result(case, size, "ok", "", list(figures.values()))
