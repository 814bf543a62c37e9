"""``python -m dneio bench``: dneio against its baselines, measured in one process.

Each case pairs a dneio operation with the plain-Python, trio, asyncio or
Twisted operation it stands in for.  The variants of a case run interleaved, round
after round, and each keeps its best (lowest) figure, so a noisy machine
slows both sides of a ratio alike.  The goals are those of the project's
specification; they are reported here, never asserted by the test suite.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dneio

from ._core import _impl
from ._core._driver import reset
from ._core._registry import get_runner
from ._core._shift import shift

# -- the operations measured ---------------------------------------------------
#
# Every timed function takes a size ``n`` and returns the total seconds spent
# on ``n`` operations (set-up excluded); memory functions return total bytes.


def _api(name: str) -> Any:
    """A public dneio name, looked up when a case runs (cases report missing names)."""
    return getattr(dneio, name)


def _identity(k: Any) -> Any:
    return k


async def _shift_loop(n: int) -> None:
    for _ in range(n):
        await shift(_identity)


def _native_shift_resume(n: int) -> float:
    # ``shift(_identity)`` makes each resumption return the next continuation.
    k = reset(_shift_loop(n))
    start = time.perf_counter()
    for _ in range(n):
        k = k.send(None)
    elapsed = time.perf_counter() - start
    if k is not None:
        raise RuntimeError("the shift loop did not finish")
    return elapsed


def _gen_loop() -> Any:
    while True:
        yield


def _generator_send(n: int) -> float:
    gen = _gen_loop()
    send = gen.send
    send(None)
    start = time.perf_counter()
    for _ in range(n):
        send(None)
    elapsed = time.perf_counter() - start
    gen.close()
    return elapsed


def _greenlet_switch(n: int) -> float:
    greenlet: Any = importlib.import_module("greenlet")
    main = greenlet.getcurrent()

    def body() -> None:
        switch = main.switch
        while True:
            switch()

    child = greenlet.greenlet(body)
    switch = child.switch
    switch()
    start = time.perf_counter()
    for _ in range(n):
        switch()
    elapsed = time.perf_counter() - start
    child.throw(greenlet.GreenletExit)
    return elapsed


async def _echo_server(queue: Any) -> None:
    while True:
        value, k = await queue.get_one()
        k.send(value)


async def _requester(queue: Any, n: int, done: list[int] | None = None) -> None:
    request = queue.request
    for i in range(n):
        await request(i)
    if done is not None:
        done.append(n)


def _native_request(n: int) -> float:
    queue = _api("RequestQueue")()
    reset(_echo_server(queue))
    done: list[int] = []
    start = time.perf_counter()
    # Natively ``reset`` returns once every request has been served: deep
    # chains of resumptions are trampolined, but within the call.
    reset(_requester(queue, n, done))
    elapsed = time.perf_counter() - start
    if done != [n]:
        raise RuntimeError("the native requester did not finish")
    return elapsed


def _trio_request(n: int) -> float:
    import trio

    async def main() -> float:
        queue = _api("RequestQueue")()
        reset(_echo_server(queue))
        start = time.perf_counter()
        await _requester(queue, n)
        return time.perf_counter() - start

    return trio.run(main)


def _trio_channel_ping_pong(n: int) -> float:
    import trio
    import trio.testing

    async def main() -> float:
        to_server, server_inbox = trio.open_memory_channel[int](1)
        to_client, client_inbox = trio.open_memory_channel[int](1)

        async def server() -> None:
            async for value in server_inbox:
                await to_client.send(value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            for i in range(n):
                await to_server.send(i)
                await client_inbox.receive()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return elapsed

    return trio.run(main)


def _run_asyncio(main: Callable[[], Any]) -> Any:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def _asyncio_request(n: int) -> float:
    async def main() -> float:
        queue = _api("RequestQueue")()
        reset(_echo_server(queue))
        start = time.perf_counter()
        await _requester(queue, n)
        return time.perf_counter() - start

    result: float = _run_asyncio(main)
    return result


def _asyncio_queue_ping_pong(n: int) -> float:
    import asyncio

    async def main() -> float:
        to_server: asyncio.Queue[int] = asyncio.Queue()
        to_client: asyncio.Queue[int] = asyncio.Queue()

        async def server() -> None:
            while True:
                to_client.put_nowait(await to_server.get())

        task = asyncio.get_running_loop().create_task(server())
        await asyncio.sleep(0)
        start = time.perf_counter()
        for i in range(n):
            to_server.put_nowait(i)
            await to_client.get()
        elapsed = time.perf_counter() - start
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return elapsed

    result: float = _run_asyncio(main)
    return result


def _run_reactor(main: Callable[[], float]) -> float:
    """Run ``main`` inside a fresh Twisted reactor (installed for the run) and return its result."""
    from .testing import fresh_reactor

    out: list[float] = []
    with fresh_reactor() as reactor:

        def go() -> None:
            try:
                out.append(main())
            finally:
                reactor.stop()

        reactor.callWhenRunning(go)
        reactor.run(installSignalHandlers=False)
    if not out:
        raise RuntimeError("the Twisted case did not run")
    return out[0]


def _twisted_request(n: int) -> float:
    from twisted.internet.defer import Deferred

    def main() -> float:
        queue = _api("RequestQueue")()
        reset(_echo_server(queue))
        start = time.perf_counter()
        done = Deferred.fromCoroutine(_requester(queue, n))
        elapsed = time.perf_counter() - start
        if not done.called:
            raise RuntimeError("the Twisted requester did not finish")
        return elapsed

    return _run_reactor(main)


def _twisted_deferred_ping_pong(n: int) -> float:
    """What a Twisted user writes instead: a DeferredQueue of requests, a Deferred per reply."""
    from twisted.internet.defer import Deferred, DeferredQueue

    def main() -> float:
        requests: DeferredQueue[tuple[int, Deferred[int]]] = DeferredQueue()

        async def server() -> None:
            while True:
                value, reply = await requests.get()
                reply.callback(value)

        async def client() -> None:
            for i in range(n):
                reply: Deferred[int] = Deferred()
                requests.put((i, reply))
                await reply

        Deferred.fromCoroutine(server())
        start = time.perf_counter()
        done = Deferred.fromCoroutine(client())
        elapsed = time.perf_counter() - start
        if not done.called:
            raise RuntimeError("the Twisted client did not finish")
        return elapsed

    return _run_reactor(main)


def _trio_fan_out(make_event: Callable[[], Any]) -> Callable[[int], float]:
    """Time ``event.set()`` until all ``n`` parked trio tasks have run on to their next wait."""

    def run(n: int) -> float:
        import trio
        import trio.testing

        async def main() -> float:
            event = make_event()
            all_woken = trio.Event()
            finish = trio.Event()
            remaining = n

            async def waiter() -> None:
                nonlocal remaining
                await event.wait()
                remaining -= 1
                if not remaining:
                    all_woken.set()
                await finish.wait()

            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                start = time.perf_counter()
                event.set()
                await all_woken.wait()
                elapsed = time.perf_counter() - start
                finish.set()
            return elapsed

        result: float = trio.run(main)
        return result

    return run


def _asyncio_fan_out(make_event: Callable[[], Any]) -> Callable[[int], float]:
    """Time ``event.set()`` until all ``n`` parked asyncio tasks have run on to their next wait."""

    def run(n: int) -> float:
        import asyncio

        async def main() -> float:
            loop = asyncio.get_running_loop()
            event = make_event()
            all_woken = asyncio.Event()
            finish = asyncio.Event()
            started = 0
            remaining = n

            async def waiter() -> None:
                nonlocal started, remaining
                started += 1
                await event.wait()
                remaining -= 1
                if not remaining:
                    all_woken.set()
                await finish.wait()

            tasks = [loop.create_task(waiter()) for _ in range(n)]
            while started < n:
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            start = time.perf_counter()
            event.set()
            await all_woken.wait()
            elapsed = time.perf_counter() - start
            finish.set()
            await asyncio.gather(*tasks)
            return elapsed

        result: float = _run_asyncio(main)
        return result

    return run


def _dneio_event() -> Any:
    return _api("Event")()


def _trio_event() -> Any:
    import trio

    return trio.Event()


def _asyncio_event() -> Any:
    import asyncio

    return asyncio.Event()


async def _trivial() -> int:
    return 1


def _dneio_parallel(n: int) -> float:
    make_n_in_parallel = _api("make_n_in_parallel")

    async def main() -> float:
        start = time.perf_counter()
        results = await make_n_in_parallel(_trivial, n)
        elapsed = time.perf_counter() - start
        if len(results) != n:
            raise RuntimeError("make_n_in_parallel returned the wrong number of results")
        return elapsed

    result: float = _run_asyncio(main)
    return result


def _asyncio_gather(n: int) -> float:
    import asyncio

    async def main() -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*[_trivial() for _ in range(n)])
        elapsed = time.perf_counter() - start
        if len(results) != n:
            raise RuntimeError("asyncio.gather returned the wrong number of results")
        return elapsed

    result: float = _run_asyncio(main)
    return result


def _traced_bytes(make: Callable[[], object]) -> int:
    """Bytes still allocated by ``make()`` while what it returns is alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def _native_parked_memory(n: int) -> float:
    async def parked(park: Callable[[Any], None]) -> None:
        await shift(park)

    def make() -> object:
        continuations: list[Any] = []
        park = continuations.append
        for _ in range(n):
            reset(parked(park))
        return continuations

    return float(_traced_bytes(make))


def _asyncio_parked_memory(n: int) -> float:
    import asyncio

    async def main() -> float:
        loop = asyncio.get_running_loop()
        gate = loop.create_future()

        async def parked() -> None:
            await gate

        def make() -> object:
            return [loop.create_task(parked()) for _ in range(n)]

        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tasks = make()
            await asyncio.sleep(0)  # every task runs once and parks on the gate
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        gate.set_result(None)
        await asyncio.sleep(0)
        del tasks
        return float(after - before)

    result: float = _run_asyncio(main)
    return result


# -- cases -----------------------------------------------------------------------


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
            Variant("dneio shift+send", _native_shift_resume, "dneio"),
            Variant("generator send", _generator_send, "baseline"),
            Variant("greenlet switch", _greenlet_switch, "reference", _needs(modules=["greenlet"])),
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
            Variant("dneio request", _native_request, "dneio"),
            Variant("generator send", _generator_send, "baseline"),
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
            Variant("dneio request", _trio_request, "dneio"),
            Variant("trio channel ping-pong", _trio_channel_ping_pong, "baseline"),
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
            Variant("dneio request", _asyncio_request, "dneio"),
            Variant("asyncio.Queue ping-pong", _asyncio_queue_ping_pong, "baseline"),
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
            Variant("dneio Event", _trio_fan_out(_dneio_event), "dneio"),
            Variant("trio.Event", _trio_fan_out(_trio_event), "baseline"),
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
            Variant("dneio Event", _asyncio_fan_out(_dneio_event), "dneio"),
            Variant("asyncio.Event", _asyncio_fan_out(_asyncio_event), "baseline"),
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
            Variant("dneio make_n_in_parallel", _dneio_parallel, "dneio"),
            Variant("asyncio.gather", _asyncio_gather, "baseline"),
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
            Variant("dneio parked in shift", _native_parked_memory, "dneio"),
            Variant("parked asyncio task", _asyncio_parked_memory, "baseline"),
        ),
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
            Variant("dneio request", _twisted_request, "dneio"),
            Variant("Deferred per reply", _twisted_deferred_ping_pong, "baseline"),
        ),
        missing=_needs("RequestQueue", modules=["twisted"]),
    ),
)

CASE_NAMES = tuple(case.name for case in CASES)


# -- measuring -------------------------------------------------------------------


@dataclass
class Figure:
    """The best per-operation figure of one variant at one size."""

    label: str
    role: str
    value: float | None  # ns/op or bytes per coroutine; None when skipped
    note: str = ""


@dataclass
class Result:
    """One case measured at one size."""

    case: Case
    size: int
    status: str  # "ok", "unavailable" or "error"
    note: str = ""
    figures: list[Figure] = field(default_factory=list)

    def figure(self, role: str) -> Figure | None:
        for figure in self.figures:
            if figure.role == role and figure.value is not None:
                return figure
        return None

    @property
    def ratio(self) -> float | None:
        mine, theirs = self.figure("dneio"), self.figure("baseline")
        if mine is None or theirs is None or not theirs.value:
            return None
        assert mine.value is not None
        return mine.value / theirs.value

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        return None if ratio is None else ratio <= self.case.max_ratio

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case.name,
            "title": self.case.title,
            "unit": self.case.unit,
            "size": self.size,
            "status": self.status,
            "note": self.note,
            "figures": [
                {"label": f.label, "role": f.role, "value": f.value, "note": f.note}
                for f in self.figures
            ],
            "ratio": self.ratio,
            "goal": self.case.goal,
            "max_ratio": self.case.max_ratio,
            "met": self.met,
        }


def _timed(run: Callable[[int], float], n: int) -> float:
    # As timeit does: collect first, and keep the collector out of the timing.
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return run(n)
    finally:
        if was_enabled:
            gc.enable()


def measure(case: Case, size: int, rounds: int) -> Result:
    """Run the variants of ``case`` interleaved, ``rounds`` times, keeping each one's best."""
    why = case.missing()
    if why is not None:
        return Result(case, size, "unavailable", why)
    scale = 1e9 if case.unit == "ns/op" else 1.0
    runnable: list[Variant] = []
    figures: dict[str, Figure] = {}
    for variant in case.variants:
        skip = variant.missing()
        figures[variant.label] = Figure(variant.label, variant.role, None, skip or "")
        if skip is None:
            runnable.append(variant)
    try:
        for variant in runnable:  # warm up: imports, first runs, caches
            _timed(variant.run, min(size, 100))
        for _ in range(rounds):
            for variant in runnable:
                value = _timed(variant.run, size) * scale / size
                figure = figures[variant.label]
                if figure.value is None or value < figure.value:
                    figure.value = value
    except Exception as exc:
        return Result(case, size, "error", f"{type(exc).__name__}: {exc}")
    return Result(case, size, "ok", "", list(figures.values()))


# -- reporting -------------------------------------------------------------------


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value:,.0f} B"
    if value >= 100:
        return f"{value:,.0f} ns"
    return f"{value:.1f} ns"


def _ratio(ratio: float | None, unit: str) -> str:
    if ratio is None:
        return "-"
    text = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"
    if ratio < 1:
        text += f" ({1 / ratio:.1f}x {'smaller' if unit == 'bytes' else 'faster'})"
    return text


def _met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def table_rows(results: Sequence[Result]) -> list[list[str]]:
    """The table as rows of cells, header first."""
    rows = [["case", "size", "dneio", "baseline", "ratio", "goal", "met"]]
    for result in results:
        case = result.case
        if result.status != "ok":
            rows.append([case.name, f"{result.size:,}", result.status, result.note, "", "", ""])
            continue
        mine, theirs = result.figure("dneio"), result.figure("baseline")
        rows.append(
            [
                case.name,
                f"{result.size:,}",
                _number(mine.value if mine else None, case.unit),
                f"{_number(theirs.value if theirs else None, case.unit)} "
                f"{theirs.label if theirs else ''}".rstrip(),
                _ratio(result.ratio, case.unit),
                case.goal,
                _met(result.met),
            ]
        )
        for figure in result.figures:
            if figure.role != "reference":
                continue
            if figure.value is None:
                rows.append(["", "", "", f"{figure.label}: skipped ({figure.note})", "", "", ""])
                continue
            ratio = mine.value / figure.value if mine and mine.value and figure.value else None
            rows.append(
                ["", "", "", f"{_number(figure.value, case.unit)} {figure.label}",
                 _ratio(ratio, case.unit), "(reference)", ""]
            )
    return rows


def format_table(rows: list[list[str]], markdown: bool = False) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if markdown:
            lines.append("| " + " | ".join(cells) + " |")
            if index == 0:
                lines.append("| " + " | ".join("-" * w for w in widths) + " |")
        else:
            lines.append("  ".join(cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """What the figures depend on: interpreter, libraries, runner modes."""
    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "dneio": getattr(dneio, "__version__", None) or _version("dneio"),
        "core": "compiled" if COMPILED else "pure Python",
    }
    for name in ("trio", "greenlet", "twisted"):
        info[name] = _version(name)
    for name in ("trio", "asyncio"):
        if name == "trio" and info["trio"] is None:
            continue
        info[f"{name} mode"] = get_runner(name).mode()
    return info


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def plot(scaling: Sequence[Result], path: str) -> None:
    """Save a PNG of per-operation cost against size, one panel per case."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot: Any = importlib.import_module("matplotlib.pyplot")
    cases: dict[str, list[Result]] = {}
    for result in scaling:
        if result.status == "ok":
            cases.setdefault(result.case.name, []).append(result)
    if not cases:
        raise RuntimeError("no case produced figures to plot")
    columns = min(len(cases), 2)
    rows = math.ceil(len(cases) / columns)
    fig, axes = pyplot.subplots(
        rows, columns, figsize=(6.4 * columns, 3.6 * rows), squeeze=False
    )
    for ax, (name, results) in zip(axes.flat, cases.items(), strict=False):
        case = results[0].case
        for variant in case.variants:
            points = [
                (r.size, f.value)
                for r in results
                for f in r.figures
                if f.label == variant.label and f.value is not None
            ]
            if points:
                sizes, values = zip(*points, strict=True)
                ax.plot(sizes, values, marker="o", label=variant.label)
        # Linear from zero, so that a flat line looks flat and noise looks small.
        ax.set_xscale("log")
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
        ax.set_title(f"{name}: {case.title}", fontsize=9)
        ax.set_xlabel("size (operations, waiters or coroutines)")
        ax.set_ylabel("bytes per coroutine" if case.unit == "bytes" else "ns per operation")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(cases):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)


# -- command line ----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dneio bench",
        description="Measure dneio against its baselines in one process and print the ratios.",
    )
    parser.add_argument(
        "--case", action="append", choices=CASE_NAMES, metavar="NAME",
        help=f"run only this case (repeatable); one of: {', '.join(CASE_NAMES)}",
    )
    parser.add_argument("--size", type=int, help="operations (or waiters, coroutines) per run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 rounds: seconds")
    parser.add_argument("--rounds", type=int, help="rounds per variant, best kept (default 5)")
    parser.add_argument(
        "--scaling", action="store_true",
        help="also run each case at growing sizes (10^3 up to 10^5 or 10^6)",
    )
    parser.add_argument(
        "--max-size", type=int, help="with --scaling: leave out sizes above this"
    )
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument(
        "--plot", metavar="FILE",
        help="save per-operation cost against size as a PNG (implies --scaling; "
        "needs matplotlib: pip install 'dneio[plot]')",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables in Markdown"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.size is not None and args.size < 1:
        print("--size must be at least 1", file=sys.stderr)
        return 2
    rounds = args.rounds or (2 if args.quick else 5)
    if rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print(
                "--plot needs matplotlib, which is not installed: "
                "pip install 'dneio[plot]' (or pip install matplotlib), or leave out --plot",
                file=sys.stderr,
            )
            return 2
    chosen = [c for c in CASES if not args.case or c.name in args.case]
    out = sys.stdout
    info = environment()
    print(", ".join(f"{k}: {v}" for k, v in info.items() if v is not None), file=out)
    print(f"best of {rounds} rounds, variants interleaved; ratio = dneio / baseline", file=out)
    print(file=out, flush=True)

    results = []
    for case in chosen:
        size = args.size or (case.quick_size if args.quick else case.size)
        results.append(measure(case, size, rounds))
    print(format_table(table_rows(results), args.markdown), file=out, flush=True)

    scaling: list[Result] = []
    if args.scaling or args.plot:
        for case in chosen:
            sizes = case.scaling_sizes
            if args.quick:
                sizes = tuple(s // 100 for s in sizes[:3])
            if args.max_size:
                sizes = tuple(s for s in sizes if s <= args.max_size)
            for size in sizes:
                scaling.append(measure(case, size, rounds))
        print(file=out)
        print("scaling: per-operation cost at growing sizes", file=out)
        print(format_table(table_rows(scaling), args.markdown), file=out, flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "environment": info,
                    "rounds": rounds,
                    "results": [r.to_json() for r in results],
                    "scaling": [r.to_json() for r in scaling],
                },
                f,
                indent=2,
            )
    if args.plot:
        plot(scaling, args.plot)
        print(f"\nplot saved to {args.plot}", file=out)
    return 1 if any(r.status == "error" for r in results + scaling) else 0
