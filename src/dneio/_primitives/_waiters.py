"""A first-in, first-out line of parked continuations that forgets cancelled ones."""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

from .._core._continuation import AnsweringContinuation
from .._core._driver import NativeContinuation, is_live_native
from .._core._impl import compiled, own_methods
from .._core._registry import ki_sensitive

_P = TypeVar("_P")

#: Cancelled entries tolerated before the line is compacted (see ``_forget``).
_COMPACT_AFTER = 16

# Where the compiled core is in use, the three fields are held in C
# (``_queue_c.WaitersCore``), where the compiled RequestQueue reads them.
_queue_c: Any = None
if compiled is not None:
    try:
        from . import _queue_c
    except ImportError:  # not built: plain slots
        _queue_c = None


class _NoCore:
    __slots__ = ()


_WaitersBase: Any = _NoCore if _queue_c is None else _queue_c.WaitersCore


@own_methods
class Waiters(_WaitersBase, Generic[_P]):  # type: ignore[misc]
    """Continuations waiting their turn, each with a payload.

    A continuation whose task is cancelled while it waits (natively: whose
    coroutine is closed) is skipped when its turn comes, so it never
    receives (and never swallows) what was meant for it.  Cancelled entries
    are dropped in bulk once they make up half of the line, so a stream of
    cancelled waiters cannot grow it without bound, and cancelling ``n``
    waiters costs ``O(n)`` in total.  Native continuations are not watched
    one by one (that would cost every wait a callback): the line is swept
    of closed ones whenever it has doubled since the last sweep.
    """

    __slots__ = ("_dead", "_line", "_sweep_at") if _queue_c is None else ()

    def __init__(self) -> None:
        self._line: deque[tuple[AnsweringContinuation[Any, Any, Any], _P]] = deque()
        self._dead = 0
        self._sweep_at = _COMPACT_AFTER

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # The default for slots, written out: the compiled base holds the
        # fields where the default does not look (copy, deepcopy, pickle).
        return None, {"_dead": self._dead, "_line": self._line, "_sweep_at": self._sweep_at}

    def __bool__(self) -> bool:
        """True if some entry may be waiting (cancelled ones may still be counted)."""
        return bool(self._line)

    def __len__(self) -> int:
        return sum(1 for k, _ in self._line if not k.is_cancelled())

    @ki_sensitive
    def push(self, k: AnsweringContinuation[Any, Any, Any], payload: _P) -> None:
        """Put ``k`` at the back of the line."""
        line = self._line
        line.append((k, payload))
        if type(k) is not NativeContinuation:
            k.on_cancel(self._forget)
        elif len(line) > self._sweep_at:
            self._sweep()

    def pop(self) -> tuple[AnsweringContinuation[Any, Any, Any], _P] | None:
        """Take the first entry whose continuation is not cancelled, or None."""
        line = self._line
        while line:
            entry = line.popleft()
            k = entry[0]
            if is_live_native(k) or not k.is_cancelled():
                return entry
            if self._dead and type(k) is not NativeContinuation:
                self._dead -= 1
        return None

    def pop_all(self) -> list[tuple[AnsweringContinuation[Any, Any, Any], _P]]:
        """Take every entry that is not cancelled, in order."""
        line = self._line
        self._line = deque()
        self._dead = 0
        self._sweep_at = _COMPACT_AFTER
        return [entry for entry in line if not entry[0].is_cancelled()]

    def _forget(self) -> None:
        self._dead += 1
        if self._dead > _COMPACT_AFTER and 2 * self._dead > len(self._line):
            self._sweep()

    def _sweep(self) -> None:
        """Drop every cancelled entry."""
        line = deque(entry for entry in self._line if not entry[0].is_cancelled())
        self._line = line
        self._dead = 0
        self._sweep_at = max(_COMPACT_AFTER, 2 * len(line))


def wake_all(
    entries: list[tuple[AnsweringContinuation[Any, Any, Any], Any]],
    value: Any,
    is_exc: bool = False,
) -> None:
    """Resume each continuation in order with ``value`` (thrown if ``is_exc``).

    A native coroutine's error surfaces in whoever resumes it.  Here that
    must not stop the others from being woken, so the first such error is
    raised once all are resumed (later ones are named in its notes).  A waiter
    that merely lets the thrown ``value`` escape raises nothing here: that
    is the expected end of a waiter told the primitive is closed.

    A thrown exception is thrown into each with the traceback it had here,
    so that the waiters' frames do not pile up on it.
    """
    first: BaseException | None = None
    tb = value.__traceback__ if is_exc else None
    for k, _ in entries:
        try:
            if is_exc:
                k.throw(value.with_traceback(tb))
            else:
                k.send(value)
        except BaseException as exc:
            if is_exc and exc is value:
                continue
            if first is None:
                first = exc
            else:
                first.add_note(f"another resumed coroutine also raised {exc!r}")
    if first is not None:
        raise first


def resume_unless_cancelled(
    k: AnsweringContinuation[Any, Any, Any], is_exc: bool, value: Any
) -> tuple[bool, Any]:
    """Resume ``k`` unless it is cancelled, as one step: ``(delivered, answer)``.

    Checking ``is_cancelled()`` and then resuming leaves a gap in which
    another thread may cancel the task, and the value would vanish.  dneio's
    cancellable continuations claim and check at once; for any other kind
    the check comes first.
    """
    if is_live_native(k):  # a native one is cancelled only by closing its coroutine
        return True, (k.throw(value) if is_exc else k.send(value))
    atomic = getattr(k, "_resume_unless_cancelled", None)
    if atomic is not None:
        return atomic(is_exc, value)  # type: ignore[no-any-return]
    if k.is_cancelled():
        return False, None
    return True, (k.throw(value) if is_exc else k.send(value))
