"""Reporting: the table (plain or Markdown), the environment, the JSON file and the plot."""

from __future__ import annotations

import importlib
import json
import math
import platform
from collections.abc import Sequence
from typing import Any

import dneio

from ..._core._registry import get_runner
from .cases import COMPILED
from .measure import Result


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value:,.0f} B"
    if value >= 100:
        return f"{value:,.0f} ns"
    return f"{value:.1f} ns"


def _ratio(ratio: float | None, unit: str) -> str:
    if ratio is None:
        return "-"
    text = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"
    if ratio < 1:
        text += f" ({1 / ratio:.1f}x {'smaller' if unit == 'bytes' else 'faster'})"
    return text


def _met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def _instructions(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _verdict(result: Result) -> str:
    text = _met(result.met)
    on_time, on_instructions = result.met_on_time, result.met_on_instructions
    if on_instructions is not None and on_time is not None and on_time != on_instructions:
        text += f" (time: {_met(on_time)})"
    return text


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    """The table as rows of cells, header first.

    Where instructions were counted (``--callgrind``), two more columns show
    them and their ratio, and the verdict is judged on that ratio.
    """
    counted = any(f.instructions is not None for r in results for f in r.figures)
    header = ["case", "size", "dneio", "baseline", "ratio", "goal", "met"]
    if counted:
        header[5:5] = ["instructions/op", "instr ratio"]
    rows = [header]

    def row(*cells: str, instructions: tuple[str, str] = ("", "")) -> list[str]:
        out = list(cells)
        if counted:
            out[5:5] = list(instructions)
        return out

    for result in results:
        case = result.case
        if result.status != "ok":
            rows.append(row(case.name, f"{result.size:,}", result.status, result.note, "", "", ""))
            continue
        mine, theirs = result.figure("dneio"), result.figure("baseline")
        counts = ("", "")
        if mine is not None and theirs is not None and mine.instructions is not None:
            counts = (
                f"{_instructions(mine.instructions)} vs {_instructions(theirs.instructions)}",
                _ratio(result.instructions_ratio, case.unit),
            )
        rows.append(
            row(
                case.name,
                f"{result.size:,}",
                _number(mine.value if mine else None, case.unit),
                f"{_number(theirs.value if theirs else None, case.unit)} "
                f"{theirs.label if theirs else ''}".rstrip(),
                _ratio(result.ratio, case.unit),
                case.goal,
                _verdict(result),
                instructions=counts,
            )
        )
        for figure in result.figures:
            if figure.role != "reference":
                continue
            if figure.value is None:
                rows.append(
                    row("", "", "", f"{figure.label}: skipped ({figure.note})", "", "", "")
                )
                continue
            ratio = mine.value / figure.value if mine and mine.value and figure.value else None
            counts = ("", "")
            if mine is not None and mine.instructions and figure.instructions:
                counts = (
                    _instructions(figure.instructions),
                    _ratio(mine.instructions / figure.instructions, case.unit),
                )
            rows.append(
                row("", "", "", f"{_number(figure.value, case.unit)} {figure.label}",
                    _ratio(ratio, case.unit), "(reference)", "", instructions=counts)
            )
    return rows


def format_table(rows: list[list[str]], markdown: bool = False) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if markdown:
            lines.append("| " + " | ".join(cells) + " |")
            if index == 0:
                lines.append("| " + " | ".join("-" * w for w in widths) + " |")
        else:
            lines.append("  ".join(cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """What the figures depend on: interpreter, libraries, runner modes."""
    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "dneio": getattr(dneio, "__version__", None) or _version("dneio"),
        "core": "compiled" if COMPILED else "pure Python",
    }
    for name in ("trio", "greenlet"):
        info[name] = _version(name)
    for name in ("trio", "asyncio"):
        if name == "trio" and info["trio"] is None:
            continue
        info[f"{name} mode"] = get_runner(name).mode()
    return info


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def write_json(
    path: str,
    info: dict[str, Any],
    rounds: int,
    results: Sequence[Result],
    scaling: Sequence[Result],
) -> None:
    """Every figure, ratio and verdict, as JSON."""
    with open(path, "w") as f:
        json.dump(
            {
                "environment": info,
                "rounds": rounds,
                "results": [r.to_json() for r in results],
                "scaling": [r.to_json() for r in scaling],
            },
            f,
            indent=2,
        )


def plot(scaling: Sequence[Result], path: str) -> None:
    """Save a PNG of per-operation cost against size, one panel per case."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    cases: dict[str, list[Result]] = {}
    for result in scaling:
        if result.status == "ok":
            cases.setdefault(result.case.name, []).append(result)
    if not cases:
        raise RuntimeError("no case produced figures to plot")
    columns = min(len(cases), 2)
    rows = math.ceil(len(cases) / columns)
    fig, axes = pyplot.subplots(
        rows, columns, figsize=(6.4 * columns, 3.6 * rows), squeeze=False
    )
    for ax, (name, results) in zip(axes.flat, cases.items(), strict=False):
        case = results[0].case
        for variant in case.variants:
            points = [
                (r.size, f.value)
                for r in results
                for f in r.figures
                if f.label == variant.label and f.value is not None
            ]
            if points:
                sizes, values = zip(*points, strict=True)
                ax.plot(sizes, values, marker="o", label=variant.label)
        # Linear from zero, so that a flat line looks flat and noise looks small.
        ax.set_xscale("log")
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
        ax.set_title(f"{name}: {case.title}", fontsize=9)
        ax.set_xlabel("size (operations, waiters or coroutines)")
        ax.set_ylabel("bytes per coroutine" if case.unit == "bytes" else "ns per operation")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(cases):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)
