"""The cases: each a dneio operation, its baseline, and the goal for their ratio."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dneio

from ..._core import _impl
from .operations import fresh, native, on_asyncio, on_trio, on_twisted


@dataclass(frozen=True)
class Variant:
    """One side of a comparison."""

    label: str
    run: Callable[[int], float]
    #: "dneio", "baseline" (the ratio's denominator) or "reference" (shown only).
    role: str
    #: Why the variant cannot run here, or None if it can.
    missing: Callable[[], str | None] = lambda: None


@dataclass(frozen=True)
class Case:
    """A dneio operation, what it is compared with, and the goal for their ratio."""

    name: str
    title: str
    unit: str  # "ns/op" or "bytes"
    #: The goal holds when dneio figure / baseline figure <= max_ratio.
    max_ratio: float
    goal: str
    size: int
    quick_size: int
    scaling_sizes: tuple[int, ...]
    variants: tuple[Variant, ...]
    #: Why the case cannot run here (a missing dneio name or library), or None.
    missing: Callable[[], str | None] = lambda: None


def _needs(*names: str, modules: Sequence[str] = ()) -> Callable[[], str | None]:
    def missing() -> str | None:
        for name in names:
            if not hasattr(dneio, name):
                return f"dneio.{name} is not available"
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:
                return f"{module} is not installed"
        return None

    return missing


_DECADES = (1_000, 10_000, 100_000, 1_000_000)

# The native goals are tighter with the compiled core than on the pure-Python path.
COMPILED = _impl.compiled is not None
_SHIFT_GOAL = 4.0 if COMPILED else 12.0
_REQUEST_GOAL = 12.0 if COMPILED else 25.0

CASES: tuple[Case, ...] = (
    Case(
        name="shift-resume",
        title="native shift + resume round trip",
        unit="ns/op",
        max_ratio=_SHIFT_GOAL,
        goal=f"<= {_SHIFT_GOAL:g}x",
        size=300_000,
        quick_size=500,
        scaling_sizes=_DECADES,
        variants=(
            Variant("dneio shift+send", native.shift_resume, "dneio"),
            Variant("generator send", native.generator_send, "baseline"),
            Variant(
                "greenlet switch", native.greenlet_switch, "reference",
                _needs(modules=["greenlet"]),
            ),
        ),
    ),
    Case(
        name="request-native",
        title="native RequestQueue request/reply",
        unit="ns/op",
        max_ratio=_REQUEST_GOAL,
        goal=f"<= {_REQUEST_GOAL:g}x",
        size=200_000,
        quick_size=500,
        scaling_sizes=_DECADES,
        variants=(
            Variant("dneio request", native.request, "dneio"),
            Variant("generator send", native.generator_send, "baseline"),
        ),
        missing=_needs("RequestQueue"),
    ),
    Case(
        name="request-trio",
        title="RequestQueue request/reply from a trio task",
        unit="ns/op",
        max_ratio=0.1,
        goal=">= 10x faster",
        size=50_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio request", on_trio.request, "dneio"),
            Variant("trio channel ping-pong", on_trio.channel_ping_pong, "baseline"),
        ),
        missing=_needs("RequestQueue", modules=["trio"]),
    ),
    Case(
        name="request-asyncio",
        title="RequestQueue request/reply from an asyncio task",
        unit="ns/op",
        max_ratio=0.2,
        goal=">= 5x faster",
        size=50_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio request", on_asyncio.request, "dneio"),
            Variant("asyncio.Queue ping-pong", on_asyncio.queue_ping_pong, "baseline"),
        ),
        missing=_needs("RequestQueue"),
    ),
    Case(
        name="event-trio",
        title="Event.set fan-out per waiter, trio tasks",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=20_000,
        quick_size=100,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio Event", on_trio.fan_out(on_trio.dneio_event), "dneio"),
            Variant("trio.Event", on_trio.fan_out(on_trio.trio_event), "baseline"),
        ),
        missing=_needs("Event", modules=["trio"]),
    ),
    Case(
        name="event-asyncio",
        title="Event.set fan-out per waiter, asyncio tasks",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=20_000,
        quick_size=100,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio Event", on_asyncio.fan_out(on_asyncio.dneio_event), "dneio"),
            Variant("asyncio.Event", on_asyncio.fan_out(on_asyncio.asyncio_event), "baseline"),
        ),
        missing=_needs("Event"),
    ),
    Case(
        name="parallel",
        title="make_n_in_parallel per coroutine, in an asyncio task",
        unit="ns/op",
        max_ratio=0.25,
        goal=">= 4x faster",
        size=50_000,
        quick_size=100,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio make_n_in_parallel", on_asyncio.dneio_parallel, "dneio"),
            Variant("asyncio.gather", on_asyncio.gather, "baseline"),
        ),
        missing=_needs("make_n_in_parallel"),
    ),
    Case(
        name="memory",
        title="memory of one parked coroutine",
        unit="bytes",
        max_ratio=0.5,
        goal="<= 0.5x",
        size=20_000,
        quick_size=100,
        scaling_sizes=_DECADES[:3],
        variants=(
            # Each round in a new interpreter, both variants in the same one
            # (see fresh.py: asyncio's registry of tasks never shrinks).
            Variant("dneio parked in shift", fresh.dneio_parked, "dneio"),
            Variant("parked asyncio task", fresh.asyncio_parked, "baseline"),
        ),
    ),
    # What a user writes instead of dneio: a callback API made awaitable (or,
    # natively, direct style with greenlets), the callback called by another
    # task later ("later") or by the API at once ("now").
    Case(
        name="callback-native",
        title="callback API in direct style, callback called later by the main loop",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=200_000,
        quick_size=500,
        scaling_sizes=_DECADES,
        variants=(
            Variant("dneio await shift", native.callbacks_shift, "dneio"),
            Variant("greenlet switch per read", native.callbacks_greenlet, "baseline"),
        ),
        missing=_needs(modules=["greenlet"]),
    ),
    Case(
        name="callback-asyncio-later",
        title="callback API made awaitable in an asyncio task, called later by another task",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=50_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio await shift", on_asyncio.callbacks_later(on_asyncio.read_shift),
                    "dneio"),
            Variant("create_future + set_result",
                    on_asyncio.callbacks_later(on_asyncio.read_future), "baseline"),
        ),
    ),
    Case(
        name="callback-asyncio-now",
        title="callback API made awaitable in an asyncio task, called at once",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=100_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio await shift", on_asyncio.callbacks_now(on_asyncio.read_shift),
                    "dneio"),
            Variant("create_future + set_result",
                    on_asyncio.callbacks_now(on_asyncio.read_future), "baseline"),
        ),
    ),
    Case(
        name="callback-trio-later",
        title="callback API made awaitable in a trio task, called later by another task",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=50_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio await shift", on_trio.callbacks_later(on_trio.read_shift), "dneio"),
            Variant("wait_task_rescheduled", on_trio.callbacks_later(on_trio.read_rescheduled),
                    "baseline"),
            Variant("trio.Event per read", on_trio.callbacks_later(on_trio.read_event),
                    "reference"),
        ),
        missing=_needs(modules=["trio"]),
    ),
    Case(
        name="callback-trio-now",
        title="callback API made awaitable in a trio task, called at once",
        unit="ns/op",
        max_ratio=0.5,
        goal=">= 2x faster",
        size=100_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio await shift", on_trio.callbacks_now(on_trio.read_shift), "dneio"),
            Variant("wait_task_rescheduled", on_trio.callbacks_now(on_trio.read_rescheduled),
                    "baseline"),
            Variant("trio.Event per read", on_trio.callbacks_now(on_trio.read_event),
                    "reference"),
        ),
        missing=_needs(modules=["trio"]),
    ),
    # Last: once Twisted is loaded, a shift in an asyncio task also checks the
    # stack for a Twisted coroutine stepped inside it (docs/guarantees.md).
    Case(
        name="request-twisted",
        title="RequestQueue request/reply from a Twisted coroutine",
        unit="ns/op",
        max_ratio=1.0,
        goal="no slower",
        size=50_000,
        quick_size=200,
        scaling_sizes=_DECADES[:3],
        variants=(
            Variant("dneio request", on_twisted.request, "dneio"),
            Variant("Deferred per reply", on_twisted.deferred_ping_pong, "baseline"),
        ),
        missing=_needs("RequestQueue", modules=["twisted"]),
    ),
)


CASE_NAMES = tuple(case.name for case in CASES)
