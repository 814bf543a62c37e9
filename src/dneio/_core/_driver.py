"""The driver in use: the compiled core wired to its pure-Python twin, or the twin alone.

Everything else imports the driver from here.  :mod:`._impl` decides which
core is in use; this module registers the twin's functions with the
compiled core, which hands them every case its fast path does not cover.
"""

from __future__ import annotations

from typing import Any

from . import _driver_py as _py
from . import _impl, _registry
from ._continuation import AnsweringContinuation
from ._impl import compiled
from ._queue import MAX_DEPTH
from ._registry import shift_in_task

SHIFT = _py.SHIFT
drive = _py.drive

if compiled is None:
    NativeContinuation: type[_py.NativeContinuation] = _py.NativeContinuation
    reset = _py.reset
    shift_fast: Any = _py.shift
    is_live_native = _py.is_live_native
else:

    class _CompiledNativeContinuation(
        compiled.NativeCore, AnsweringContinuation[Any, Any, Any]  # type: ignore[misc]
    ):
        """A continuation of a coroutine driven by :func:`dneio.reset`.

        It runs the coroutine on whichever thread resumes it, in the
        coroutine's own ``contextvars`` context.  (``send``, ``is_cancelled``
        and ``on_cancel`` are compiled; the rest is the pure-Python twin's.)
        """

        __slots__ = ()
        __repr__ = _py.NativeContinuation.__repr__
        throw = _py.NativeContinuation.throw
        _deliver = _py.NativeContinuation._deliver
        # A call is NativeCore's own (it comes before AnsweringContinuation).
        is_cancelled = compiled.NativeCore.is_cancelled
        on_cancel = compiled.NativeCore.on_cancel

    # Its own copies of the compiled methods, which calls from Python can
    # take directly (see _impl.own_methods).
    compiled.own_methods(_CompiledNativeContinuation)

    _CompiledNativeContinuation.__name__ = "NativeContinuation"
    _CompiledNativeContinuation.__qualname__ = "NativeContinuation"
    NativeContinuation = _CompiledNativeContinuation
    _py.continuation_type = _CompiledNativeContinuation
    # The twin's slow paths meet compiled shift objects as well as park lists.
    _py.compiled_take_shift = compiled.take_shift
    is_live_native = compiled.is_live_native

    def _probe() -> None:
        if _py.entry_probe is not None:
            _py.entry_probe()

    compiled.setup(
        local=_impl.local,
        shift_mark=SHIFT,
        func_failed=_py._func_failed,
        after_foreign=_py._after_foreign,
        spent=_py._raise_spent,
        continuation_type=_CompiledNativeContinuation,
        reset=_py.reset,
        start_hosting=_probe,
        run_cancel_callbacks=_py._run_cancel_callbacks,
        fresh_coroutine=(_fresh := _py.never_run()),
        max_depth=MAX_DEPTH,
    )
    _fresh.close()
    # The compiled shift asks the registry itself: the code that awaits it
    # is the caller of shift_in_task, one frame up instead of two.
    compiled.set_host_shift(shift_in_task, -1, _py.NO_RUNNER_MESSAGE)

    def _push_hosts() -> None:
        path = _registry.hot_path()
        if path is None:
            compiled.set_hosts(None)
        else:
            compiled.set_hosts(*path)

    _registry.on_refresh = _push_hosts
    _push_hosts()
    reset = compiled.reset
    shift_fast = compiled.shift


def set_entry_hook(hook: Any) -> None:
    """Install (or, with None, remove) the entry hook; see ``_driver_py.entry_hook``."""
    _py.entry_hook = hook
    if compiled is not None:
        compiled.set_entry_hook(hook)


def entry_hook() -> Any:
    """The entry hook installed now, or None."""
    return _py.entry_hook


def set_entry_probe(modules: tuple[str, ...], probe: Any) -> None:
    """``reset`` calls ``probe()`` while no entry hook is set and one of ``modules`` is loaded."""
    _py.entry_probe = probe
    _py.entry_probe_modules = modules
    if compiled is not None:
        compiled.set_entry_probe_module(modules)
