"""``dneio.lowlevel.resumptions_held``: claims inside the block, coroutines run as it ends.

Both implementations are checked: the compiled core's (where it is built)
and the pure-Python one, which must behave the same.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from dneio import lowlevel, reset, shift
from dneio._core import _batch
from dneio._core._impl import compiled, current_state

IMPLEMENTATIONS = [pytest.param(_batch._PyResumptionsHeld, id="python")]
if compiled is not None:
    IMPLEMENTATIONS.append(pytest.param(compiled.resumptions_held, id="compiled"))


def test_the_public_name_is_the_core_in_use() -> None:
    expected = _batch._PyResumptionsHeld if compiled is None else compiled.resumptions_held
    assert lowlevel.resumptions_held is expected


def _parked(log: list[Any], name: str, ks: list[Any]) -> None:
    async def waiter() -> None:
        log.append((name, await shift(ks.append)))

    reset(waiter())


def _parked_then_failing(ks: list[Any]) -> None:
    """A coroutine parked in shift that raises KeyError("queued") once resumed."""

    async def failing() -> None:
        await shift(ks.append)
        raise KeyError("queued")

    reset(failing())


@pytest.mark.parametrize("held", IMPLEMENTATIONS)
def test_resumed_coroutines_run_in_order_when_the_block_ends(held: Any) -> None:
    log: list[Any] = []
    ks: list[Any] = []
    for name in "abc":
        _parked(log, name, ks)
    with held():
        for i, k in enumerate(ks):
            k.send(i)
            log.append(("sent", i))
    assert log == [("sent", 0), ("sent", 1), ("sent", 2), ("a", 0), ("b", 1), ("c", 2)]
    st = current_state()
    assert (st.hold, st.depth, len(st.queue)) == (0, 0, 0)


@pytest.mark.parametrize("held", IMPLEMENTATIONS)
def test_nested_blocks_run_everything_when_the_outer_one_ends(held: Any) -> None:
    log: list[Any] = []
    ks: list[Any] = []
    for name in "ab":
        _parked(log, name, ks)
    with held():
        with held():
            ks[0].send(0)
        log.append("inner ended")
        ks[1].send(1)
    assert log == ["inner ended", ("a", 0), ("b", 1)]


@pytest.mark.parametrize("held", IMPLEMENTATIONS)
def test_leaving_with_an_error_runs_the_claimed_and_notes_their_errors(held: Any) -> None:
    ks: list[Any] = []
    _parked_then_failing(ks)
    with pytest.raises(ValueError) as info:
        with held():
            ks[0].send(None)
            raise ValueError("in the block")
    assert info.value.__notes__ == ["a queued resumption raised too: KeyError('queued')"]
    st = current_state()
    assert (st.hold, st.depth, len(st.queue)) == (0, 0, 0)


@pytest.mark.parametrize("held", IMPLEMENTATIONS)
def test_an_error_of_a_claimed_coroutine_is_raised_at_the_end_of_the_block(held: Any) -> None:
    ks: list[Any] = []
    _parked_then_failing(ks)
    with pytest.raises(KeyError, match="queued"):
        with held():
            ks[0].send(None)
    assert current_state().hold == 0


@pytest.mark.parametrize("held", IMPLEMENTATIONS)
def test_misuse_is_a_clear_error_and_leaves_no_hold(held: Any) -> None:
    block = held()
    with pytest.raises(RuntimeError, match="not entered"):
        block.__exit__(None, None, None)
    with block:
        with pytest.raises(RuntimeError, match="entered already"):
            block.__enter__()
    assert current_state().hold == 0
    with pytest.raises(TypeError):
        held(1)
    # Entered by hand and dropped: the hold is given back, not kept for ever.
    if held is not _batch._PyResumptionsHeld:
        block = held()
        block.__enter__()
        assert current_state().hold == 1
        del block
        gc.collect()
        assert current_state().hold == 0
