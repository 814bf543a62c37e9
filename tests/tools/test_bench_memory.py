"""The benchmark's memory case does not depend on what its process ran before.

asyncio's registry of tasks keeps the size it grew to, so a parked task
measured in a process that has already had as many tasks looks about a
hundred bytes cheaper than in one that has not.  The memory case measures
each round in a new interpreter, both sides in the same one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dneio._tools._bench.operations import fresh, on_asyncio

N = 3_000


def _many_asyncio_tasks(n: int) -> None:
    async def main() -> None:
        gate = asyncio.get_running_loop().create_future()

        async def parked() -> None:
            await gate

        tasks = [asyncio.ensure_future(parked()) for _ in range(n)]
        await asyncio.sleep(0)
        gate.set_result(None)
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_the_baseline_measured_here_depends_on_the_past_and_the_fresh_one_does_not() -> None:
    before = fresh.measure_both(N, "baseline")
    # In this process, once it has had many tasks at once, the same
    # measurement reads lower: this is what the fresh process avoids.
    _many_asyncio_tasks(4 * N)
    here = on_asyncio.parked_memory(N) / N
    after = fresh.measure_both(N, "dneio")
    assert after["baseline"] == pytest.approx(before["baseline"], rel=0.02)
    assert after["dneio"] == pytest.approx(before["dneio"], rel=0.02)
    assert here < before["baseline"] / N - 40


def test_both_sides_of_a_round_come_from_one_child(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str]] = []

    def measure_both(n: int, first: str) -> dict[str, float]:
        calls.append((n, first))
        return {"dneio": 100.0 * len(calls), "baseline": 1000.0 * len(calls)}

    monkeypatch.setattr(fresh, "measure_both", measure_both)
    monkeypatch.setattr(fresh, "_pending", {})
    monkeypatch.setattr(fresh, "_rounds", 0)
    assert fresh.dneio_parked(7) == 100.0
    assert fresh.asyncio_parked(7) == 1000.0
    assert fresh.asyncio_parked(7) == 2000.0
    assert fresh.dneio_parked(7) == 200.0
    assert len(calls) == 2
    # The order within a child alternates.
    assert calls == [(7, "dneio"), (7, "baseline")]


def test_a_failing_child_is_reported() -> None:
    with pytest.raises(RuntimeError, match="own process failed"):
        fresh.measure_both(-1, "nonexistent-role")


def test_the_child_imports_this_dneio_whatever_the_working_directory_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "dneio"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing package was imported')\n")
    monkeypatch.chdir(tmp_path)
    figures = fresh.measure_both(200, "dneio")
    assert set(figures) == {"dneio", "baseline"}
    assert all(value > 0 for value in figures.values())


def test_a_child_with_another_dneio_refuses_to_measure() -> None:
    setup = {"dneio": {"file": "/elsewhere/dneio/__init__.py", "core": "python"},
             "n": 10, "order": ["dneio", "baseline"]}
    with pytest.raises(RuntimeError, match="another dneio"):
        fresh.child(setup)
