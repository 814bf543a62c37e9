"""The guards around private internals, and the public-API fallback modes (SPEC section 4)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Any

import pytest

from dneio import shift
from dneio._core._registry import get_runner
from dneio._hosts._asyncio import _internals as _asyncio_internals
from dneio._hosts._trio import _internals as _trio_internals
from dneio.testing import Harness

HAVE_TRIO = importlib.util.find_spec("trio") is not None
needs_trio = pytest.mark.skipif(not HAVE_TRIO, reason="trio is not installed")


def test_installed_asyncio_passes_its_guard() -> None:
    assert _asyncio_internals.check(), _asyncio_internals.problem
    assert get_runner("asyncio").mode() == "synchronous"


@needs_trio
def test_installed_trio_passes_its_guard() -> None:
    assert _trio_internals.check(), _trio_internals.problem
    assert get_runner("trio").mode() == "synchronous"


@pytest.mark.skipif(HAVE_TRIO, reason="trio is installed")
def test_without_trio_the_trio_host_says_how_to_get_it() -> None:
    with pytest.raises(RuntimeError, match=r"pip install 'dneio\[trio\]'"):
        get_runner("trio")


@needs_trio
def test_trio_guard_notices_a_changed_run_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from dneio._hosts._trio._runner import TrioRunner

    monkeypatch.setattr(
        _trio_internals,
        "_EXPECTED_RUN_LOOP",
        (*_trio_internals._EXPECTED_RUN_LOOP, "a statement no trio release has"),
    )
    runner = TrioRunner()
    assert runner.mode() == "deferred"
    assert "no longer contains" in _trio_internals.problem
    with pytest.raises(RuntimeError, match="only the deferred mode is available"):
        runner.set_mode("synchronous")


@needs_trio
def test_trio_guard_notices_missing_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    def no_source(obj: Any) -> str:
        raise OSError("no source")

    monkeypatch.setattr(inspect, "getsource", no_source)
    assert not _trio_internals.check()
    assert "cannot read" in _trio_internals.problem


@needs_trio
def test_trio_guard_notices_missing_task_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _trio_internals,
        "_EXPECTED_TASK_ATTRS",
        (*_trio_internals._EXPECTED_TASK_ATTRS, "_field_from_the_future"),
    )
    assert not _trio_internals.check()
    assert "_field_from_the_future" in _trio_internals.problem


def test_asyncio_guard_notices_missing_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    from dneio._hosts._asyncio._runner import AsyncioRunner

    monkeypatch.setattr(_asyncio_internals, "_enter_task", None)
    runner = AsyncioRunner()
    assert runner.mode() == "deferred"
    assert "_enter_task" in _asyncio_internals.problem


def test_asyncio_guard_notices_misbehaving_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_asyncio_internals, "_enter_task", lambda loop, task: None)
    assert not _asyncio_internals.check()
    assert "_enter_task" in _asyncio_internals.problem


def test_set_mode_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="synchronous' or 'deferred"):
        get_runner("asyncio").set_mode("fast")
    with pytest.raises(ValueError, match="unknown runner"):
        get_runner("curio")


@pytest.mark.parametrize("name", [pytest.param("trio", marks=needs_trio), "asyncio"])
def test_environment_variable_forces_deferred_mode(name: str) -> None:
    env = dict(os.environ, **{f"DNEIO_{name.upper()}_MODE": "deferred"})
    code = f"from dneio._core._registry import get_runner; print(get_runner({name!r}).mode())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "deferred"


@pytest.mark.dneio_runners("trio-deferred", "asyncio-deferred")
def test_deferred_mode_resumes_later_but_in_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: list[Any] = []
        log: list[int] = []

        async def waiter(i: int) -> None:
            log.append(await shift(box.append))

        for i in range(20):
            h.spawn(waiter, i)
        await h.settle()
        for i, k in enumerate(reversed(box)):
            k.send(i)
        ran_inside_send = list(log)
        await h.settle()
        return ran_inside_send, log

    ran_inside_send, log = dneio_runner.run(main)
    assert ran_inside_send == []
    assert log == list(range(20))


@needs_trio
def test_lowlevel_reports_and_sets_modes() -> None:
    from dneio import lowlevel

    for name in ("trio", "asyncio"):
        assert lowlevel.runner_mode(name) == "synchronous"
        assert lowlevel.runner_problem(name) == ""
        lowlevel.set_runner_mode(name, "deferred")
        try:
            assert lowlevel.runner_mode(name) == "deferred"
        finally:
            lowlevel.set_runner_mode(name, "synchronous")
        assert lowlevel.runner_mode(name) == "synchronous"
    with pytest.raises(ValueError, match="unknown runner"):
        lowlevel.runner_mode("curio")


def test_fast_current_task_read_falls_back_to_the_public_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    fast = _asyncio_internals.current_task_getter()
    assert fast is not asyncio.current_task  # the checked dict lookup

    async def main() -> bool:
        loop = asyncio.get_running_loop()
        return fast(loop) is asyncio.current_task()

    assert asyncio.run(main())
    monkeypatch.setattr(_asyncio_internals, "_current_tasks", None)
    assert _asyncio_internals.current_task_getter() is asyncio.current_task
    monkeypatch.setattr(_asyncio_internals, "_current_tasks", {})
    assert _asyncio_internals.current_task_getter() is asyncio.current_task
