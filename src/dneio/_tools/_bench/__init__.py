"""``python -m dneio bench``: dneio against its baselines, measured in one process.

Each case pairs a dneio operation with the plain-Python, trio, asyncio or
Twisted operation it stands in for.  The variants of a case run interleaved, round
after round, and each keeps its best (lowest) figure, so a noisy machine
slows both sides of a ratio alike.  The goals are those of the project's
specification; they are reported here, never asserted by the test suite.

The package: ``operations`` holds the measured loops (natively, on trio, on
asyncio, on Twisted), ``cases`` the table of cases with their baselines and goals,
``measure`` the interleaved rounds, ``report`` the table, JSON and plot,
and ``cli`` the command line.
"""

from __future__ import annotations

from .cases import CASE_NAMES, CASES, Case, Variant
from .cli import main
from .measure import Figure, Result, measure

__all__ = ["CASES", "CASE_NAMES", "Case", "Figure", "Result", "Variant", "main", "measure"]
