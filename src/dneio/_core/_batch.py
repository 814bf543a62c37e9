"""Resuming several continuations as one step.

Resuming a continuation runs its coroutine at once, and that coroutine may
cancel a task whose continuation the caller was about to resume as well.
Inside a ``with resumptions_held():`` block, resumptions only claim their
continuations (after which they can no longer be cancelled or withdrawn);
the coroutines run when the block ends, in the order they were resumed,
just as if each had run when it was resumed.
"""

from __future__ import annotations

from types import TracebackType
from typing import Literal

from ._impl import compiled
from ._queue import MAX_DEPTH, ThreadState, current_state, drain


class _PyResumptionsHeld:
    """Resume continuations inside the block; their coroutines run when it ends.

    Inside the block each resumption only claims its continuation (from then
    on it can no longer be cancelled or withdrawn); on leaving the block the
    claimed coroutines run in the order they were resumed.  Use it when one
    state change resumes several waiters, so that none of them runs (and
    perhaps cancels another) before the change is complete.

    If resumptions were already queued when the block began (or a runner
    holds the queue), they and the new ones run in order when whoever queued
    them drains the queue, so order is kept either way.  Leaving the block
    with an exception, errors of the coroutines run then are named in its
    notes; otherwise the first of them is raised.

    The compiled core's twin takes and gives back its hold where no signal
    handler can run in between; this one cannot promise that.
    """

    __slots__ = ("_owner", "_st")

    def __init__(self) -> None:
        self._st: ThreadState | None = None
        self._owner = False

    def __enter__(self) -> None:
        if self._st is not None:
            raise RuntimeError("this resumptions_held() block is entered already; use a new one")
        st = current_state()
        self._owner = not st.queue and not st.hold
        st.hold += 1
        self._st = st

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        st = self._st
        if st is None:
            raise RuntimeError("this resumptions_held() block was not entered")
        self._st = None
        st.hold -= 1
        run = self._owner and not st.hold and st.depth < MAX_DEPTH
        if not run and not st.hold and not st.depth:
            # Queued before the block (or held by a runner meanwhile): whoever
            # queued them drains them, unless no one is left to.
            run = bool(st.queue)
        if run:
            # Run the claimed coroutines here, nested like ordinary synchronous
            # resumptions; what they resume queues behind them and runs here too.
            drain(st, exc if exc is not None else True)
        return False


#: ``with resumptions_held():`` (see :class:`_PyResumptionsHeld`).
resumptions_held: type[_PyResumptionsHeld] = (
    _PyResumptionsHeld if compiled is None else compiled.resumptions_held
)
