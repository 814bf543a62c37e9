"""The host registry: which host runner serves the task running now.

The engine never imports a host.  Each host registers here by name, with
the module whose presence in ``sys.modules`` means it may be in use and a
loader that imports it (``dneio._hosts`` does that for trio and asyncio).
A host is loaded only once its library has been imported by the program, so
``import dneio`` costs nothing and every host library stays optional.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from contextvars import Context
from types import FrameType
from typing import Any, Protocol, TypeVar, cast

_getframe = sys._getframe


class Host(Protocol):
    """What the engine needs from a host runner (see ``dneio._hosts._base.HostRunner``)."""

    name: str
    problem: str

    def in_task(self) -> bool:
        """True if one of this host's tasks is running on this thread now."""

    def is_running(self) -> bool:
        """True if this host's loop is running on this thread (in a task or not)."""

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any] | tuple[Any]:
        """Suspend the current task in ``shift(func)``; the body of ``await shift``.

        Returns the generator to run, or ``(value,)`` if ``func`` resumed
        the task with ``value`` before it had to suspend.
        """

    def shift_if_in_task(
        self, func: Callable[[Any], Any]
    ) -> Generator[Any, Any, Any] | tuple[Any] | None:
        """``shift(func)`` if one of this host's tasks is running here, else None."""

    def task_here(self) -> object | None:
        """What ``shift_for`` needs to know of the task running here; None if there is none."""

    def shift_for(
        self, func: Callable[[Any], Any], found: object
    ) -> Generator[Any, Any, Any] | tuple[Any]:
        """``shift(func)`` in the task ``task_here()`` found."""

    def adopt(self, coro: Any, first_yield: Any, context: Context) -> None:
        """Carry on running ``coro``, suspended at ``first_yield``, as a task of this host.

        The coroutine goes on in ``context``: its own.
        """

    def mode(self) -> str:
        """``"synchronous"`` or ``"deferred"``."""

    def set_mode(self, mode: str) -> None:
        """Force a mode (see ``dneio.lowlevel.set_runner_mode``)."""


class NestingHost(Host, Protocol):
    """A host whose coroutines can be stepped inside another host's task.

    Twisted: an asyncio task that calls ``Deferred.fromCoroutine``, or fires
    a Deferred a Twisted coroutine waits on, steps that coroutine on its own
    stack.  Such a host answers from the stack (``frame`` is the frame of
    the code asking) and says which awaitables are its own to adopt.
    """

    def in_task_at(self, frame: FrameType) -> bool:
        """``in_task()``, for the code running in ``frame`` (asked after the other hosts)."""

    def inside_other_task(self, frame: FrameType) -> bool:
        """True if the code in ``frame`` is this host's, though another host's task is current."""

    def adopts(self, yielded: object) -> bool:
        """True if a native coroutine that yielded ``yielded`` is this host's to carry on."""


# name -> (library module, loader), in the order hosts are asked.
_registered: dict[str, tuple[str, Callable[[], Host]]] = {}
_loaded: dict[str, Host] = {}
# (library module, name) pairs, in order: what task_runner() walks.
_probes: list[tuple[str, str]] = []


# (library module, name) of the nesting hosts (see NestingHost).
_nesting: list[tuple[str, str]] = []


def register(name: str, module: str, loader: Callable[[], Host], *, nests: bool = False) -> None:
    """Make host ``name`` available once ``module`` is imported; ``loader()`` builds it.

    Hosts registered earlier are asked first which task is running: a host
    that can run inside another one's loop (a trio guest run inside asyncio)
    must be registered before it.  A host registered with ``nests=True``
    implements :class:`NestingHost`: it is asked before the others whether
    the code is its own, even when another host's task is current.
    """
    _registered[name] = (module, loader)
    _probes[:] = [(m, n) for n, (m, _) in _registered.items()]
    if nests and (module, name) not in _nesting:
        _nesting.append((module, name))
    _refresh(load=False)


def _load(name: str) -> Host:
    runner = _loaded.get(name)
    if runner is None:
        runner = _loaded[name] = _registered[name][1]()
        _refresh()
    return runner


def task_runner(skip: int = 0) -> Host | None:
    """The host runner whose task is running on this thread, if any.

    A nesting host's coroutine (Twisted's) can be stepped inside another
    host's task, so once its library is loaded it is asked first, from the
    stack: from the caller's caller up, after ``skip`` more frames (dneio's
    own, on the hot path: a frame looked at costs more than one skipped).
    ``shift_in_task`` asks the same questions for ``shift``: keep the two
    in step.
    """
    modules = sys.modules
    nesting: list[NestingHost] = []
    for module, name in _nesting:
        if module in modules:
            nesting.append(cast(NestingHost, _loaded.get(name) or _load(name)))
    for module, name in _probes:
        if module in modules:
            runner = _loaded.get(name) or _load(name)
            if nesting and runner in nesting:
                if runner.in_task_at(_getframe(2 + skip)):
                    return runner
            elif runner.in_task():
                for host in nesting:
                    if host.inside_other_task(_getframe(2 + skip)):
                        return host
                return runner
    return None


def shift_in_task(
    func: Callable[[Any], Any], skip: int = 0
) -> Generator[Any, Any, Any] | tuple[Any] | None:
    """``shift(func)`` served by the host whose task is running here; None if there is none.

    What ``task_runner(skip).shift(func)`` does (the same hosts asked in the
    same order: keep the two in step), but each host finds its current task
    once instead of twice: on CPython 3.11 asyncio's look-up of the running
    loop is a system call.  ``shift_if_in_task`` calls ``func`` at once, so
    once a nesting host is loaded each host is asked first and the shift
    made only by the one that serves it.

    The hot path: until a nesting host is loaded, the hosts already loaded
    are asked in order, with no look-up in ``sys.modules`` for them (a host
    once loaded stays loaded; one whose task is not running says so).
    """
    modules = sys.modules
    for module, _ in _unloaded:
        if module in modules:
            _refresh()
            break
    nesting: tuple[NestingHost, ...] = ()
    if _nesting_loaded:
        nesting = tuple(h for m, h in _nesting_loaded if m in modules)
    if not nesting:
        for runner in _active:
            body = runner.shift_if_in_task(func)
            if body is not None:
                return body
        return None
    for runner in _active:
        if runner in nesting:
            if runner.in_task_at(_getframe(2 + skip)):
                return runner.shift(func)
            continue
        found = runner.task_here()
        if found is not None:
            # Asked before the runner's shift runs func: a nesting host may overrule it.
            for host in nesting:
                if host.inside_other_task(_getframe(2 + skip)):
                    return host.shift(func)
            return runner.shift_for(func, found)
    return None


# For shift_in_task: the hosts whose library is loaded (each loaded itself),
# in the order they are asked; the nesting hosts among them; the others.
_active: tuple[Host, ...] = ()
_nesting_loaded: tuple[tuple[str, NestingHost], ...] = ()
_unloaded: tuple[tuple[str, str], ...] = ()


def _refresh(load: bool = True) -> None:
    """Recompute what shift_in_task asks, loading the hosts whose library is loaded."""
    global _active, _nesting_loaded, _unloaded
    modules = sys.modules
    for module, name in _probes:
        if load and name not in _loaded and module in modules:
            _loaded[name] = _registered[name][1]()
    active = tuple(_loaded[name] for _, name in _probes if name in _loaded)
    _nesting_loaded = tuple(
        (module, cast(NestingHost, _loaded[name])) for module, name in _nesting if name in _loaded
    )
    _unloaded = tuple((m, n) for m, n in _probes if n not in _loaded)
    _active = active
    if on_refresh is not None:
        on_refresh()


def refresh_hot_path() -> None:
    """A loaded host changed its ``shift_if_in_task``: hand the hot path over again."""
    if on_refresh is not None:
        on_refresh()


#: Called after every change of what shift_in_task asks (the driver hands
#: the compiled core its hot path).
on_refresh: Callable[[], object] | None = None


def hot_path() -> tuple[tuple[Callable[[Any], Any], ...], tuple[str, ...]] | None:
    """What shift_in_task asks while nothing it watches for is loaded.

    The ``shift_if_in_task`` of each loaded host, in order; and the modules
    whose appearance in ``sys.modules`` sends a shift to shift_in_task
    (a host not loaded yet, a nesting host).  None while a nesting host is
    loaded: then shift_in_task always decides.
    """
    if any(m in sys.modules for m, _ in _nesting_loaded):
        return None
    watch = tuple(m for m, _ in _unloaded) + tuple(m for m, _ in _nesting_loaded)
    return tuple(runner.shift_if_in_task for runner in _active), watch


def adopter(yielded: object) -> Host | None:
    """The host whose own awaitable ``yielded`` is (a Twisted Deferred), if any."""
    modules = sys.modules
    for module, name in _nesting:
        if module in modules:
            host = cast(NestingHost, _loaded.get(name) or _load(name))
            if host.adopts(yielded):
                return host
    return None


def loop_runner() -> Host | None:
    """The host runner whose loop is running on this thread, if any.

    A host whose task is running comes first: a guest run inside another
    host's loop is running all the time, but the code of the other host's
    task is that host's.  (Nesting hosts adopt only their own awaitables,
    see ``adopter``.)
    """
    modules = sys.modules
    for module, name in _probes:
        if module in modules and (module, name) not in _nesting:
            runner = _loaded.get(name) or _load(name)
            if runner.in_task():
                return runner
    for module, name in _probes:
        if module in modules:
            runner = _load(name)
            if runner.is_running():
                return runner
    return None


def get_runner(name: str) -> Host:
    """The host runner called ``name`` (``"trio"``, ``"asyncio"``, ...), importing it."""
    if name not in _registered:
        known = ", ".join(repr(n) for n in _registered)
        raise ValueError(f"unknown runner {name!r}; expected one of {known}")
    return _load(name)


def names() -> list[str]:
    """The registered host names, in the order they are asked."""
    return list(_registered)


# -- code a Ctrl-C must not cut in two ------------------------------------------
#
# A primitive's ``func`` registers the continuation it is given and returns.
# A KeyboardInterrupt raised half way leaves it registered while the task's
# ``await`` raises: the continuation is spent, and the next hand-over finds
# it and fails.  A host that can hold a Ctrl-C back to a safe point (trio, at
# the main task's next checkpoint) is given these functions to protect.

_F = TypeVar("_F", bound=Callable[..., Any])
_ki_sensitive: list[Callable[..., Any]] = []
_ki_protectors: list[Callable[[Callable[..., Any]], None]] = []


def ki_sensitive(fn: _F) -> _F:
    """Declare ``fn`` as code a Ctrl-C must not interrupt (a decorator)."""
    _ki_sensitive.append(fn)
    for protect in _ki_protectors:
        protect(fn)
    return fn


def add_ki_protector(protect: Callable[[Callable[..., Any]], None]) -> None:
    """A host's way to protect the functions declared, now and later."""
    _ki_protectors.append(protect)
    for fn in _ki_sensitive:
        protect(fn)
