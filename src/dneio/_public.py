"""Re-exported names report the public module they are documented in.

A name defined in a private module (``dneio._core._shift``) and re-exported
by a public one (``dneio``) gets that public module as its ``__module__``,
so tracebacks, ``help()``, reprs and docs show ``dneio.shift``.
"""

from __future__ import annotations

from typing import Any


def publish(module: str, namespace: dict[str, Any]) -> None:
    """Give every private-module object in ``namespace["__all__"]`` the ``__module__`` ``module``.

    The first public module to publish a name keeps it (``dneio`` before
    ``dneio.core``).
    """
    for name in namespace["__all__"]:
        obj = namespace[name]
        if not isinstance(getattr(obj, "__module__", None), str):
            continue
        if not obj.__module__.startswith("dneio._"):
            continue
        try:
            obj.__module__ = module
        except (AttributeError, TypeError):  # some objects do not allow it
            continue
        if isinstance(obj, type):
            for member in vars(obj).values():
                if getattr(member, "__module__", "").startswith("dneio._"):
                    try:
                        member.__module__ = module
                    except (AttributeError, TypeError):
                        pass
