"""Resuming several continuations as one step.

Resuming a continuation runs its coroutine at once, and that coroutine may
cancel a task whose continuation the caller was about to resume as well.
Between :func:`begin` and :func:`end`, resumptions only claim their
continuations (after which they can no longer be cancelled or withdrawn);
the coroutines run at :func:`end`, in the order they were resumed.
"""

from __future__ import annotations

from ._scheduling import ThreadState, current_state, drain


def begin() -> ThreadState:
    """Start claiming instead of running; pair every call with :func:`end`."""
    st = current_state()
    st.hold += 1
    return st


def end(st: ThreadState) -> None:
    """Run what was claimed since :func:`begin`, unless an enclosing resumption will."""
    st.hold -= 1
    if not st.hold and not st.depth and st.queue:
        drain(st)
