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
from typing import Any, Protocol


class Host(Protocol):
    """What the engine needs from a host runner (see ``dneio._hosts._base.HostRunner``)."""

    name: str
    problem: str

    def in_task(self) -> bool:
        """True if one of this host's tasks is running on this thread now."""

    def is_running(self) -> bool:
        """True if this host's loop is running on this thread (in a task or not)."""

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
        """Suspend the current task in ``shift(func)``; the body of ``await shift``."""

    def adopt(self, coro: Any, first_yield: Any) -> None:
        """Carry on running ``coro``, suspended at ``first_yield``, as a task of this host."""

    def mode(self) -> str:
        """``"synchronous"`` or ``"deferred"``."""

    def set_mode(self, mode: str) -> None:
        """Force a mode (see ``dneio.lowlevel.set_runner_mode``)."""


# name -> (library module, loader), in the order hosts are asked.
_registered: dict[str, tuple[str, Callable[[], Host]]] = {}
_loaded: dict[str, Host] = {}
# (library module, name) pairs, in order: what task_runner() walks.
_probes: list[tuple[str, str]] = []


def register(name: str, module: str, loader: Callable[[], Host]) -> None:
    """Make host ``name`` available once ``module`` is imported; ``loader()`` builds it.

    Hosts registered earlier are asked first which task is running: a host
    that can run inside another one's loop (a trio guest run inside asyncio)
    must be registered before it.
    """
    _registered[name] = (module, loader)
    _probes[:] = [(m, n) for n, (m, _) in _registered.items()]


def _load(name: str) -> Host:
    runner = _loaded.get(name)
    if runner is None:
        runner = _loaded[name] = _registered[name][1]()
    return runner


def task_runner() -> Host | None:
    """The host runner whose task is running on this thread, if any."""
    modules = sys.modules
    for module, name in _probes:
        if module in modules:
            runner = _loaded.get(name) or _load(name)
            if runner.in_task():
                return runner
    return None


def loop_runner() -> Host | None:
    """The host runner whose loop is running on this thread, if any."""
    modules = sys.modules
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
