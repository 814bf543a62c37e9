"""Resuming several continuations as one step.

Resuming a continuation runs its coroutine at once, and that coroutine may
cancel a task whose continuation the caller was about to resume as well.
Between :func:`begin` and :func:`end`, resumptions only claim their
continuations (after which they can no longer be cancelled or withdrawn);
the coroutines run at :func:`end`, in the order they were resumed, just as
if each had run when it was resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._queue import MAX_DEPTH, ThreadState, current_state, drain


def begin() -> tuple[ThreadState, bool]:
    """Start claiming instead of running; pass the result to :func:`end`."""
    st = current_state()
    owner = not st.queue and not st.hold
    st.hold += 1
    return st, owner


def end(token: tuple[ThreadState, bool]) -> None:
    """Run what was claimed since :func:`begin`.

    If resumptions were already queued before :func:`begin` (or a runner
    holds the queue), they and the new ones run in order when whoever queued
    them drains the queue, so order is kept either way.
    """
    st, owner = token
    st.hold -= 1
    if not owner or st.hold or st.depth >= MAX_DEPTH:
        if not st.hold and not st.depth and st.queue:
            drain(st)
        return
    # Run the claimed coroutines here, nested like ordinary synchronous
    # resumptions; what they resume queues behind them and runs here too.
    drain(st)


@contextmanager
def resumptions_held() -> Iterator[None]:
    """Resume continuations inside the block; their coroutines run when it ends.

    Inside the block each resumption only claims its continuation (from then
    on it can no longer be cancelled or withdrawn); on leaving the block the
    claimed coroutines run in the order they were resumed.  Use it when one
    state change resumes several waiters, so that none of them runs (and
    perhaps cancels another) before the change is complete.
    """
    token = begin()
    try:
        yield
    finally:
        end(token)
