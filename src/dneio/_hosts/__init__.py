"""The host runners: event loops whose tasks can ``shift``.

Each host lives in its own package and implements ``_base.HostRunner``;
this module registers them with the engine's registry without importing
their libraries.  trio comes first: a trio guest run inside an asyncio
loop is trio's task, not asyncio's.  Twisted comes last among loops (on
the asyncio reactor, what is not a Deferred is asyncio's to adopt) but is
asked first whose coroutine is running (see ``_registry.NestingHost``).
"""

from __future__ import annotations

from typing import Any

from .._core import _driver, _registry


def _trio() -> Any:
    try:
        import trio  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "the trio host needs trio, which is not installed: pip install 'dneio[trio]'"
        ) from exc
    from ._trio._runner import RUNNER

    return RUNNER


def _asyncio() -> Any:
    from ._asyncio._runner import RUNNER

    return RUNNER


def _twisted() -> Any:
    from ._twisted._runner import RUNNER

    return RUNNER


def _probe() -> None:
    # reset() found trio or asyncio loaded and no entry hook set: native code
    # inside a trio run or an asyncio loop runs with a host task of its own
    # current (see _entry).
    from ._entry import HOSTING

    _driver.set_entry_probe(("trio", "asyncio"), HOSTING.start_if_running)
    HOSTING.start_if_running()


_registry.register("trio", "trio", _trio)
_registry.register("asyncio", "asyncio", _asyncio)
# Loaded once Deferreds are (no coroutine can be Twisted's before); asked
# first, from the stack, since Twisted coroutines can be stepped inside
# asyncio (and trio) tasks.
_registry.register("twisted", "twisted.internet.defer", _twisted, nests=True)
_driver.set_entry_probe(("trio", "asyncio"), _probe)
