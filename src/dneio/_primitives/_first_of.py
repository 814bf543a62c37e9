"""``first_of``: wait for whichever of several operations completes first."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, overload

from .._core._batch import resumptions_held
from .._core._continuation import (
    AnsweringContinuation,
    report_unraisable,
    run_cancel_callbacks,
    spent_error,
)
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._waiters import resume_unless_cancelled

# Claims and withdrawals of branches are atomic across threads.
_lock = threading.Lock()

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")

#: An operation: a function that starts something and later resumes the
#: continuation it is given; exactly what :func:`dneio.shift` takes, such as
#: ``channel.receive_cb`` or ``partial(channel.send_cb, item)``.
Operation = Callable[[AnsweringContinuation[Any, T, Any]], object]

# Life of a branch.
_LIVE = 0  # registered with its operation; the race is undecided
_COMMITTED = 1  # shielded: the race waits for this branch alone
_WON = 2  # resumed first: its outcome went to the waiting task
_WITHDRAWN = 3  # another branch won, or the waiting task was cancelled


class _Race:
    """One ``first_of`` call: its branches, and the continuation waiting on them."""

    __slots__ = ("branches", "decided", "k")

    def __init__(self, k: AnsweringContinuation[Any, tuple[int, Any], Any]) -> None:
        self.k = k
        self.branches: list[Branch[Any]] = []
        self.decided = False

    def start(self, operations: tuple[Operation[Any], ...]) -> None:
        self.k.on_cancel(self.withdraw_all)
        # Starting an operation may resume other coroutines.  They run only
        # once every operation has been started, so none of them can decide
        # the race (or cancel anything) half way through.
        with resumptions_held():
            try:
                for i, operation in enumerate(operations):
                    if self.decided:
                        break
                    branch: Branch[Any] = Branch(self, i)
                    self.branches.append(branch)
                    operation(branch)
            except BaseException:
                self.withdraw_all()
                raise

    def withdraw_others(self, winner: Branch[Any] | None) -> BaseException | None:
        """Withdraw every other branch, even if callbacks of one of them fail.

        Returns the first ``KeyboardInterrupt`` or ``SystemExit`` a callback
        raised, for the caller to raise once the race is settled.
        """
        stop: BaseException | None = None
        for branch in self.branches:
            if branch is not winner:
                raised = branch.withdraw()
                if stop is None:
                    stop = raised
        return stop

    def withdraw_all(self) -> None:
        with _lock:
            if self.decided:
                return
            self.decided = True
        stop = self.withdraw_others(None)
        if stop is not None:
            raise stop


class Branch(AnsweringContinuation[Any, T, Any]):
    """The continuation each operation of :func:`first_of` is given.

    The first branch to be resumed wins: the task waiting in ``first_of``
    continues with the branch's index and value (or its exception).  Every
    other branch is withdrawn at that moment: it reports ``is_cancelled()``
    and runs its ``on_cancel`` callbacks, exactly like the continuation of a
    cancelled task, so the operation behind it forgets it and keeps what it
    would have delivered.  Resuming a withdrawn branch does nothing, as with
    a cancelled task.  Cancelling the waiting task withdraws every branch.

    :meth:`shield` commits the race to this branch (trio's ``Abort.FAILED``
    idea): an operation calls it once it has started something that cannot
    be undone.  The other branches are withdrawn at once, and the waiting
    task can no longer be cancelled until this branch is resumed.
    """

    __slots__ = ("_callbacks", "_race", "_state", "index")

    def __init__(self, race: _Race, index: int) -> None:
        self._race = race
        self.index = index
        self._state = _LIVE
        self._callbacks: list[Callable[[], object]] | None = None

    def __repr__(self) -> str:
        return f"<first_of branch #{self.index} of {self._race.k!r}>"

    def send(self, value: T) -> Any:
        return self._resume_unless_cancelled(False, value)[1]

    def throw(self, exc: BaseException) -> Any:
        if not isinstance(exc, BaseException):
            raise TypeError(f"throw() takes an exception instance, not {exc!r}")
        return self._resume_unless_cancelled(True, exc)[1]

    __call__ = send

    def _resume_unless_cancelled(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
        claimed, stop = self._claim()
        if not claimed:
            return False, None
        k = self._race.k
        try:
            if is_exc:
                return resume_unless_cancelled(k, True, value)
            return resume_unless_cancelled(k, False, (self.index, value))
        finally:
            # A withdrawn branch's callback stopped the program: the winner
            # is delivered first, then the stop goes to whoever resumed it.
            if stop is not None:
                raise stop

    def _claim(self) -> tuple[bool, BaseException | None]:
        race = self._race
        # Atomic across threads: one branch wins, and a withdrawn one never does.
        with _lock:
            state = self._state
            if state == _WITHDRAWN:
                return False, None
            if state == _WON:
                raise spent_error(self)
            if state == _LIVE:
                if race.decided:
                    return False, None  # another branch won; it is withdrawing this one
                race.decided = True
            self._state = _WON
        if state == _LIVE:
            return True, race.withdraw_others(self)
        return True, None

    def is_cancelled(self) -> bool:
        return self._state == _WITHDRAWN

    def on_cancel(self, callback: Callable[[], object]) -> None:
        if not callable(callback):
            raise TypeError(f"on_cancel() takes a callable, not {callback!r}")
        with _lock:
            withdrawn = self._state == _WITHDRAWN
            if not withdrawn:
                if self._callbacks is None:
                    self._callbacks = [callback]
                else:
                    self._callbacks.append(callback)
        if withdrawn:
            callback()

    def shield(self) -> None:
        race = self._race
        with _lock:
            if self._state != _LIVE or race.decided:
                return
            race.decided = True
            self._state = _COMMITTED
        stop = race.withdraw_others(self)
        try:
            race.k.shield()
        finally:
            if stop is not None:
                raise stop

    def withdraw(self) -> BaseException | None:
        """Withdraw this branch: like the cancellation of a task, its callbacks'
        errors are reported and do not stop the others.  Returns the first
        ``KeyboardInterrupt`` or ``SystemExit`` one raised, for the caller."""
        with _lock:
            if self._state != _LIVE:
                return None
            self._state = _WITHDRAWN
            callbacks, self._callbacks = self._callbacks, None
        if not callbacks:
            return None
        k = self._race.k
        return run_cancel_callbacks(
            callbacks, lambda exc, what: _report(k, exc, f"{what} (withdrawn {self!r})")
        )


def same_first_of(a: Any, b: Any) -> bool:
    """Are ``a`` and ``b`` branches of one ``first_of`` (or of first_ofs nested in one)?

    Resuming either would withdraw the other: an operation that meets its
    own task's other operation must not hand anything over through it.
    """
    if type(a) is not Branch or type(b) is not Branch:
        return False
    races = set()
    while type(a) is Branch:
        races.add(id(a._race))
        a = a._race.k
    while type(b) is Branch:
        if id(b._race) in races:
            return True
        b = b._race.k
    return False


def _report(k: Any, exc: BaseException, what: str) -> None:
    """Report an error of a withdrawn branch's callback the way ``k``'s host would."""
    while isinstance(k, Branch):
        k = k._race.k
    report = getattr(k, "_report_error", None)
    if report is not None:
        report(exc, what)  # a host continuation: its host's own way
    else:
        report_unraisable(exc, what)


@ki_sensitive
def _start(
    operations: tuple[Operation[Any], ...], k: AnsweringContinuation[Any, tuple[int, Any], Any]
) -> None:
    _Race(k).start(operations)


@overload
async def first_of(op1: Operation[T1], op2: Operation[T2], /) -> tuple[int, T1 | T2]: ...
@overload
async def first_of(
    op1: Operation[T1], op2: Operation[T2], op3: Operation[T3], /
) -> tuple[int, T1 | T2 | T3]: ...
@overload
async def first_of(*operations: Operation[T]) -> tuple[int, T]: ...
async def first_of(*operations: Operation[Any]) -> tuple[int, Any]:
    """Start every operation, wait for the first to complete, withdraw the rest.

    An operation is a function that takes a continuation and resumes it
    when done: what you would pass to :func:`dneio.shift`, such as
    ``channel.receive_cb``, ``event.wait_cb`` or ``partial(queue.request_cb,
    value)``.  Returns ``(index, value)`` for the first one to complete, or
    raises the exception it completed with.

    The operations are started in order; if one completes while being
    started, the later ones are not started at all.  The others are
    withdrawn the moment one completes, the way a cancelled task withdraws:
    a withdrawn receive takes no item, a withdrawn send puts none in, a
    withdrawn request is taken back (or, if a server already took it, the
    server's reply is refused with :class:`RequestCancelledError`).  So
    nothing an operation would have delivered is lost.
    """
    if not operations:
        raise ValueError("first_of() needs at least one operation")
    for operation in operations:
        if not callable(operation):
            raise TypeError(
                f"first_of() takes operations (functions that accept a continuation, "
                f"like channel.receive_cb), not {operation!r}"
            )
    return await shift(partial(_start, operations))
