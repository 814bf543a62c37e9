"""The one place that picks the driver: the compiled core, or its pure-Python twin.

The compiled extension ``_driver_c`` (built by ``setup.py`` where a C
compiler is at hand) covers the hot paths of ``shift``, ``reset`` and native
resumption, and hands every unusual case back to the Python functions of
``_driver_py``, which remain the complete reference.  Set the environment
variable ``DNEIO_PURE_PYTHON=1`` to use the twin even where the extension is
built.  Every other module asks this one.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from ._run_context import ThreadState as PyThreadState

#: The version of the compiled core's interface this Python code expects.
CORE_API = 6

compiled: Any
try:
    if os.environ.get("DNEIO_PURE_PYTHON"):
        raise ImportError("DNEIO_PURE_PYTHON is set")
    from . import _driver_c as compiled
except ImportError:
    compiled = None
if compiled is not None and getattr(compiled, "API", None) != CORE_API:
    # A build left from another version of dneio (an in-place build not
    # redone): its functions may not match these, so it is not used.
    warnings.warn(
        f"dneio: the compiled core at {compiled.__file__} was built for another version "
        "of dneio and is not used; rebuild it (pip install -e . or python setup.py "
        "build_ext --inplace) to use it",
        RuntimeWarning,
        stacklevel=2,
    )
    compiled = None

#: ``"compiled"`` or ``"python"``: which driver is in use.
CORE = "python" if compiled is None else "compiled"

#: The per-thread state type: the compiled core's (the same fields, readable
#: from C) or the pure-Python class.
ThreadState: type[PyThreadState] = PyThreadState if compiled is None else compiled.ThreadState


class _Local(threading.local):
    def __init__(self) -> None:
        self.state = ThreadState()


#: ``local.state`` is this thread's :class:`ThreadState`.
local = _Local()


#: This thread's :class:`ThreadState`: a C call either way (the compiled
#: core caches it per thread; else ``getattr(local, "state")`` bound).
current_state: Callable[[], PyThreadState] = (
    partial(getattr, local, "state") if compiled is None else compiled.current_state
)


_C = TypeVar("_C", bound=type)


def own_methods(cls: _C) -> _C:
    """Class decorator for a Python subclass of a compiled type.

    It gives the class its own copy of each compiled method it inherits (and
    does not override), so that the interpreter's specialised call of such a
    method (``k.send(value)``), which holds only for the exact type the
    method was made for, holds for the subclass's instances too.  Without
    the compiled core it does nothing.

    The copies are taken once: a method assigned later to a class between
    ``cls`` and the compiled one does not reach ``cls``, whose own copy
    comes first (assign it to ``cls`` itself).
    """
    if compiled is not None:
        compiled.own_methods(cls)
    return cls
