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
    #: Instructions per operation, when counted under callgrind.
    instructions: float | None = None


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
    def instructions_ratio(self) -> float | None:
        """dneio's instructions per operation divided by the baseline's (with --callgrind)."""
        mine, theirs = self.figure("dneio"), self.figure("baseline")
        if mine is None or theirs is None or not theirs.instructions:
            return None
        if mine.instructions is None:
            return None
        return mine.instructions / theirs.instructions

    @property
    def met_on_time(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio <= self.case.max_ratio

    @property
    def met_on_instructions(self) -> bool | None:
        ratio = self.instructions_ratio
        return None if ratio is None else ratio <= self.case.max_ratio

    @property
    def met(self) -> bool | None:
        """The verdict: on the instruction ratio where there is one, else on the timings.

        Instruction counts do not change with the load of the machine, so
        where they and the timings disagree, the counts decide.
        """
        on_instructions = self.met_on_instructions
        return self.met_on_time if on_instructions is None else on_instructions

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "title": self.case.title,
            "unit": self.case.unit,
            "size": self.size,
            "status": self.status,
            "note": self.note,
            "figures": [
                {
                    "label": f.label,
                    "role": f.role,
                    "value": f.value,
                    "note": f.note,
                    "instructions": f.instructions,
                }
                for f in self.figures
            ],
            "ratio": self.ratio,
            "instructions_ratio": self.instructions_ratio,
            "goal": self.case.goal,
            "max_ratio": self.case.max_ratio,
            "met": self.met,
            "met_on_time": self.met_on_time,
            "met_on_instructions": self.met_on_instructions,
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
