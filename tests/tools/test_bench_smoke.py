"""``python -m dneio bench`` runs every case at tiny sizes and reports sane figures.

Nothing here looks at how fast anything is: timings on a shared machine
prove nothing, so only the structure of the report is checked.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from dneio._tools import _bench
from dneio._tools._bench import callgrind


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    assert _bench.main(["--quick", "--rounds", "1", "--json", str(out), *args]) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _check(result: dict[str, Any]) -> None:
    case = next(c for c in _bench.CASES if c.name == result["case"])
    if result["status"] == "unavailable":
        # Only a genuinely missing name or library may keep a case from running.
        assert case.missing() == result["note"]
        return
    assert result["status"] == "ok", result["note"]
    roles = [f["role"] for f in result["figures"]]
    assert roles.count("dneio") == 1
    assert roles.count("baseline") == 1
    for figure in result["figures"]:
        if figure["role"] == "reference" and figure["value"] is None:
            assert figure["note"]  # says why it was skipped
            continue
        assert isinstance(figure["value"], float)
        assert figure["value"] > 0 and math.isfinite(figure["value"])
    dneio_figure = next(f["value"] for f in result["figures"] if f["role"] == "dneio")
    baseline = next(f["value"] for f in result["figures"] if f["role"] == "baseline")
    assert result["ratio"] == pytest.approx(dneio_figure / baseline)
    assert result["met_on_time"] is (result["ratio"] <= result["max_ratio"])
    # Instruction counts, where there are some, decide the verdict.
    judged_on = result["instructions_ratio"] or result["ratio"]
    assert result["met"] is (judged_on <= result["max_ratio"])


def test_every_case_reports_figures_and_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _run(tmp_path, "--size", "30")
    assert [r["case"] for r in data["results"]] == list(_bench.CASE_NAMES)
    assert data["rounds"] == 1
    assert data["environment"]["python"]
    for result in data["results"]:
        assert result["size"] == 30
        _check(result)
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("case"))
    assert header.split() == ["case", "size", "dneio", "baseline", "ratio", "goal", "met"]
    for name in _bench.CASE_NAMES:
        assert any(line.startswith(name) for line in table.splitlines())


def test_chosen_cases_at_growing_sizes(tmp_path: Path) -> None:
    data = _run(tmp_path, "--case", "shift-resume", "--case", "memory", "--scaling")
    assert [r["case"] for r in data["results"]] == ["shift-resume", "memory"]
    sizes = [(r["case"], r["size"]) for r in data["scaling"]]
    assert sizes == [
        ("shift-resume", 10), ("shift-resume", 100), ("shift-resume", 1000),
        ("memory", 10), ("memory", 100), ("memory", 1000),
    ]
    for result in data["results"] + data["scaling"]:
        _check(result)


def test_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "scaling.png"
    _run(tmp_path, "--case", "shift-resume", "--plot", str(png))
    assert png.read_bytes().startswith(b"\x89PNG")


def test_plot_without_matplotlib_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert _bench.main(["--quick", "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install" in capsys.readouterr().err


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench.main(["--size", "0"]) == 2
    with pytest.raises(SystemExit):
        _bench.main(["--case", "no-such-case"])
    assert "invalid choice" in capsys.readouterr().err


def test_callgrind_without_valgrind_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(callgrind.shutil, "which", lambda name: None)
    assert _bench.main(["--quick", "--callgrind", "--case", "shift-resume"]) == 2
    assert "apt-get install valgrind" in capsys.readouterr().err


@pytest.mark.skipif(callgrind.valgrind() is None, reason="valgrind is not installed")
def test_callgrind_counts_instructions_per_operation(tmp_path: Path) -> None:
    data = _run(
        tmp_path, "--case", "shift-resume", "--case", "memory",
        "--callgrind", "--callgrind-size", "20",
    )
    shift_resume, memory = data["results"]
    _check(shift_resume)
    counted = {f["label"]: f["instructions"] for f in shift_resume["figures"]}
    for label, count in counted.items():
        if label == "greenlet switch" and count is None:
            continue  # greenlet is not installed
        # A generator send takes at least a few dozen instructions, no round trip millions.
        assert isinstance(count, float) and 20 < count < 1e6, (label, count)
    assert shift_resume["instructions_ratio"] == pytest.approx(
        counted["dneio shift+send"] / counted["generator send"]
    )
    assert shift_resume["met"] is shift_resume["met_on_instructions"]
    assert shift_resume["met_on_instructions"] is (
        shift_resume["instructions_ratio"] <= shift_resume["max_ratio"]
    )
    # Bytes are not counted in instructions.
    assert memory["instructions_ratio"] is None
    assert all(f["instructions"] is None for f in memory["figures"])
    assert memory["met"] is memory["met_on_time"]


def test_every_case_is_measured_at_all_its_sizes_before_the_next_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case that loads something into the process (request-twisted loads
    Twisted, which every later shift in a host task then looks for) runs
    last at every size: no other case is measured after it."""
    from dneio._tools._bench import cli

    order: list[str] = []
    real = cli.measure

    def recording(case: Any, size: int, rounds: int) -> Any:
        order.append(case.name)
        return real(case, size, rounds)

    monkeypatch.setattr(cli, "measure", recording)
    _run(tmp_path, "--case", "request-asyncio", "--case", "request-twisted",
         "--case", "shift-resume", "--scaling")
    names = [c.name for c in _bench.CASES if c.name in order]
    assert order == [name for name in names for _ in range(4)]  # its size, then 3 more
    assert names[-1] == "request-twisted"
