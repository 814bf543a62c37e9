"""Per-thread bookkeeping for synchronous, ordered resumption.

Resuming a continuation normally runs its coroutine right away, on the
resumer's stack.  Two things can stop that:

* depth: every synchronous resumption nests on the Python stack, so beyond
  ``MAX_DEPTH`` nested resumptions new ones are queued and run by the
  outermost resumption once it unwinds (a trampoline);
* holds: while a host runner is delivering a cancellation (its data
  structures are mid-update), resumptions are queued and run once it is safe.

Once anything is queued, every later resumption on the thread queues behind
it, so the order in which continuations were resumed is the order in which
their coroutines run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from ._impl import compiled, current_state, local
from ._run_context import MAX_DEPTH, ThreadState

__all__ = ["MAX_DEPTH", "Deliverable", "ThreadState", "current_state", "drain", "local",
           "release_hold", "resume"]


class Deliverable(Protocol):
    """Something the queue can run later: a claimed continuation."""

    def _deliver(self, st: ThreadState, is_exc: bool, value: Any) -> Any: ...


def _py_resume(st: ThreadState, k: Deliverable, is_exc: bool, value: Any) -> Any:
    """Run claimed continuation ``k`` now, or queue it behind earlier ones."""
    if st.depth >= MAX_DEPTH or st.queue or st.hold:
        st.queue.append((k, is_exc, value))
        if not st.depth and not st.hold:
            drain(st)
        return None
    st.depth += 1
    try:
        answer = k._deliver(st, is_exc, value)
    except BaseException:
        st.depth -= 1
        if not st.depth and st.queue and not st.hold:
            drain(st, False)
        raise
    st.depth -= 1
    if not st.depth and st.queue and not st.hold:
        drain(st)
    return answer


def _py_drain(st: ThreadState, reraise: bool | BaseException = True) -> None:
    """Run queued resumptions in order, each nested one level below the caller.

    An exception escaping a queued native coroutine has no resumer left to
    receive it.  The first one is raised here once the queue is empty (so
    none of the others is starved), with the later ones named in its notes.
    When the caller is already propagating an exception, it passes that
    exception as ``reraise`` (or False, for the one being handled), and they
    are all named in its notes instead.
    """
    first: BaseException | None = None
    if isinstance(reraise, BaseException):
        first = reraise
        reraise = False
    elif not reraise:
        first = sys.exc_info()[1]
    more = 0
    queue = st.queue
    while queue and not st.hold:
        k, is_exc, value = queue.popleft()
        st.depth += 1
        try:
            k._deliver(st, is_exc, value)
        except BaseException as exc:
            if first is None:
                first = exc
            elif more < _NOTED_ERRORS:
                more += 1
                first.add_note(f"a queued resumption raised too: {exc!r}")
            else:
                more += 1
        finally:
            st.depth -= 1
    if more > _NOTED_ERRORS and first is not None:
        first.add_note(f"... and {more - _NOTED_ERRORS} more queued resumptions raised")
    if first is not None and reraise:
        raise first


#: How many further errors of queued resumptions are named in notes.
_NOTED_ERRORS = 10

# The compiled core has both, the same but for one thing: no signal handler
# (Ctrl-C) can run in the middle of their bookkeeping (see _driver_c.c).
resume: Callable[[ThreadState, Deliverable, bool, Any], Any] = (
    _py_resume if compiled is None else compiled.resume
)
drain: Callable[..., None] = _py_drain if compiled is None else compiled.drain


def release_hold(st: ThreadState, schedule_pump: Callable[[Callable[[], None]], None]) -> None:
    """End a hold; if nothing on the stack will drain the queue, have the host do it."""
    st.hold -= 1
    if st.hold or not st.queue or st.depth or st.pump_pending:
        return
    st.pump_pending = True

    def pump() -> None:
        st.pump_pending = False
        if not st.depth and not st.hold:
            drain(st)

    schedule_pump(pump)
