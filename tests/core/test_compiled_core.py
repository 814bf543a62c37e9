"""The optional compiled core, and the pure-Python twin that is its reference.

The twin is complete: every program gives the same trace on both.  Both
drivers live in one process (the twin's ``reset``, ``shift`` and
continuation class can be used even where the compiled core is loaded), so
hypothesis feeds the same generated programs to each, as the twin tests of
yarl, multidict and frozenlist do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dneio
import dneio.lowlevel
from dneio._core import _driver, _driver_py, _impl

PURE = bool(os.environ.get("DNEIO_PURE_PYTHON"))


def test_the_expected_path_is_in_use() -> None:
    if PURE:
        assert _impl.compiled is None and _impl.CORE == "python"
        assert _driver.NativeContinuation is _driver_py.NativeContinuation
        assert dneio.reset is _driver_py.reset
    else:
        compiled = pytest.importorskip("dneio._core._driver_c")
        assert _impl.CORE == "compiled"
        assert dneio.shift is compiled.shift
        assert issubclass(_driver.NativeContinuation, compiled.NativeCore)
        assert isinstance(_impl.current_state(), compiled.ThreadState)
    assert dneio.lowlevel.CORE == _impl.CORE


def _package_classes_with_a_compiled_base() -> list[type]:
    import importlib

    found = []
    for name, attr in (
        ("dneio._core._driver", "NativeContinuation"),
        ("dneio._primitives._request_queue", "RequestQueue"),
        ("dneio._primitives._request_queue", "Reply"),
        ("dneio._primitives._waiters", "Waiters"),
        ("dneio._hosts._asyncio._runner", "AsyncioSlot"),
        ("dneio._hosts._asyncio._runner", "AsyncioContinuation"),
        ("dneio._hosts._trio._runner", "TrioSlot"),
        ("dneio._hosts._trio._runner", "TrioContinuation"),
        ("dneio._hosts._trio._runner", "NativeHosting"),
        ("dneio._hosts._twisted._runner", "TwistedSlot"),
        ("dneio._hosts._twisted._runner", "TwistedContinuation"),
    ):
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional host that is not installed
            continue
        found.append(getattr(module, attr))
    return found


@pytest.mark.skipif(PURE, reason="the pure-Python path has no compiled methods")
def test_the_classes_own_the_compiled_methods_they_inherit() -> None:
    # The interpreter calls a compiled method directly only for instances of
    # the exact class it was made for; each class whose instances the hot
    # paths meet has its own copy of every compiled method it inherits.
    method = types.MethodDescriptorType
    classes = _package_classes_with_a_compiled_base()
    # The engine's, the primitives' and asyncio's are always there.
    assert {"NativeContinuation", "RequestQueue", "Reply", "Waiters", "AsyncioSlot",
            "AsyncioContinuation"} <= {cls.__name__ for cls in classes}
    for cls in classes:
        for name in dir(cls):
            found = getattr(cls, name, None)  # (some names dir() lists do not resolve)
            if type(found) is method and found.__objclass__.__module__.startswith("dneio"):
                assert found.__objclass__ is cls, f"{cls.__name__}.{name}"


@pytest.mark.skipif(PURE, reason="own_methods is the compiled core's")
def test_own_methods_copies_only_what_the_class_inherits_and_keeps_behaviour() -> None:
    compiled = _impl.compiled

    class Sub(compiled.NativeCore):  # type: ignore[misc]
        __slots__ = ()

        def is_cancelled(self) -> bool:  # a Python override stays
            return True

    base_send = compiled.NativeCore.send
    compiled.own_methods(Sub)
    assert Sub.send is not base_send and Sub.send.__objclass__ is Sub
    assert Sub.send.__name__ == "send" and Sub.send.__doc__ == base_send.__doc__
    assert Sub.on_cancel.__objclass__ is Sub
    assert Sub.__dict__["is_cancelled"].__qualname__.endswith("Sub.is_cancelled")
    assert Sub().is_cancelled() is True
    # Running it twice changes nothing.
    own_send = Sub.send
    compiled.own_methods(Sub)
    assert Sub.send is own_send
    # A copy made for Sub checks its instance as the original does.
    with pytest.raises(TypeError):
        Sub.send(compiled.NativeCore(), 1)
    with pytest.raises(TypeError, match="takes a class"):
        compiled.own_methods(Sub())
    # A continuation made by the package still resumes through its own copy,
    # and through a plain call.
    got = []

    async def body() -> None:
        got.append(await dneio.shift(lambda k: k))
        got.append(await dneio.shift(lambda k: k))

    k = dneio.reset(body())
    assert type(k).send.__objclass__ is type(k)
    k = k.send("sent")
    assert k("called") is None and got == ["sent", "called"]
    with pytest.raises(TypeError, match="no keyword arguments"):
        dneio.reset(body())(value=1)


@pytest.mark.skipif(PURE, reason="own_methods is the compiled core's")
def test_a_continuation_called_from_python_honours_the_call_its_class_has() -> None:
    """k(value) goes through the continuation's vectorcall; its class's call decides."""
    compiled = _impl.compiled
    resumed = []

    class Slot:
        def resume(self, k: Any, is_exc: bool, value: Any) -> bool:
            resumed.append((is_exc, value))
            return True

    class Sub(compiled.HostCore):  # type: ignore[misc]
        __slots__ = ()

    compiled.own_methods(Sub)
    k = Sub(Slot())
    assert k("v") is None and resumed == [(False, "v")]
    for args, kwargs in (((), {}), ((1, 2), {}), ((), {"value": 1})):
        with pytest.raises(TypeError):
            k(*args, **kwargs)
    assert resumed == [(False, "v")]
    # A __call__ given to the class later (after own_methods) is what runs,
    # with every argument as passed.
    calls = []
    Sub.__call__ = lambda self, *a, **kw: calls.append((a, kw)) or "python"
    assert k(1) == "python" and k(1, 2, x=3) == "python"
    assert calls == [((1,), {}), ((1, 2), {"x": 3})]
    del Sub.__call__
    assert k("w") is None and resumed[-1] == (False, "w")
    # The native continuation alike, also through a call with a tuple (map).
    got = []

    async def body() -> None:
        got.append(await dneio.shift(lambda k: k))
        got.append(await dneio.shift(lambda k: k))

    nk = dneio.reset(body())
    (answer,) = map(nk, ["mapped"])  # the continuation of the second shift
    assert got == ["mapped"] and answer("called") is None
    with pytest.raises(TypeError):
        dneio.reset(body())()
    assert got == ["mapped", "called"]


@pytest.mark.skipif(PURE, reason="own_methods is the compiled core's")
def test_subclasses_given_their_own_deallocation_release_everything() -> None:
    import gc
    import weakref

    compiled = _impl.compiled

    class Marker:
        pass

    class Plain(compiled.HostCore):  # type: ignore[misc]
        __slots__ = ()

    class Finalised(compiled.HostCore):  # type: ignore[misc]
        __slots__ = ()
        ran: ClassVar[list[Any]] = []
        keep: ClassVar[list[Any]] = []

        def __del__(self) -> None:
            Finalised.ran.append(self._callbacks)
            if self._callbacks == "resurrect":
                Finalised.keep.append(self)

    class WithSlot(compiled.HostCore):  # type: ignore[misc]
        __slots__ = ("extra",)

    class WithDict(compiled.HostCore):  # type: ignore[misc]
        pass

    for cls in (Plain, Finalised, WithSlot, WithDict):
        compiled.own_methods(cls)

    class Later(Plain):  # a subclass made afterwards, with the generic deallocation
        __slots__ = ("more",)

    def released(make: Callable[[], Any], *attrs: str) -> None:
        gc.collect()
        counts = (sys.getrefcount(Plain), sys.getrefcount(type(make())))
        for _ in range(1000):
            obj = make()
            marker = Marker()
            ref = weakref.ref(marker)
            obj._callbacks = marker
            for attr in attrs:
                setattr(obj, attr, Marker())
            held = [weakref.ref(getattr(obj, attr)) for attr in attrs]
            called = []
            wr = weakref.ref(obj, called.append)
            del obj, marker
            assert ref() is None and all(h() is None for h in held)
            assert wr() is None and called == [wr]
        assert (sys.getrefcount(Plain), sys.getrefcount(type(make()))) == counts

    released(lambda: Plain(None))
    released(lambda: Later(None), "more")
    released(lambda: WithSlot(None), "extra")
    released(lambda: WithDict(None), "extra")
    # The finaliser runs once, before the fields are cleared, and may
    # resurrect the object, which is then released later without running it again.
    Finalised(None)._callbacks = "once"
    assert Finalised.ran == ["once"]
    k = Finalised(None)
    k._callbacks = "resurrect"
    del k
    assert Finalised.ran == ["once", "resurrect"] and len(Finalised.keep) == 1
    wr = weakref.ref(Finalised.keep[0])
    Finalised.keep.clear()
    assert wr() is None and Finalised.ran == ["once", "resurrect"]


def test_package_continuations_keep_their_class_assignable() -> None:
    """__class__ may change between a package class, its subclasses and its siblings,
    as between any classes of the same layout, and a finaliser may change it."""
    import gc

    from dneio._hosts._parking import HostContinuation

    aio = pytest.importorskip("dneio._hosts._asyncio._runner")
    kind = aio.AsyncioContinuation

    class Sibling(HostContinuation):
        __slots__ = ()

    class Later(kind):  # type: ignore[misc,valid-type]
        __slots__ = ()

    slot = aio.AsyncioSlot(_impl.current_state(), None, None)
    for src, dst in ((kind, Later), (Later, kind), (kind, Sibling), (Sibling, kind)):
        k = src(slot)
        k.__class__ = dst
        assert type(k) is dst
        del k

    class Renamed(HostContinuation):
        __slots__ = ()

    class Renaming(HostContinuation):
        __slots__ = ()

        def __del__(self) -> None:
            self.__class__ = Renamed

    if not PURE:
        _impl.compiled.own_methods(Renaming)
        _impl.compiled.own_methods(Renamed)
    gc.collect()
    before = (sys.getrefcount(Renaming), sys.getrefcount(Renamed))
    for _ in range(200):
        Renaming(slot)
    gc.collect()
    assert (sys.getrefcount(Renaming), sys.getrefcount(Renamed)) == before


@pytest.mark.skipif(PURE, reason="own_methods is the compiled core's")
def test_a_long_chain_through_subclasses_with_their_own_deallocation_does_not_overflow() -> None:
    code = """
import gc
from dneio._core import _impl
compiled = _impl.compiled

class Plain(compiled.HostCore):
    __slots__ = ()

class Finalised(compiled.HostCore):
    __slots__ = ()
    count = 0
    def __del__(self):
        Finalised.count += 1

for cls in (Plain, Finalised):
    compiled.own_methods(cls)

class Later(Plain):
    __slots__ = ()

for kinds in ((Plain,), (Plain, Later), (Finalised, Plain, Later)):
    head = None
    for i in range(300_000):
        k = kinds[i % len(kinds)](None)
        k._callbacks = head
        head = k
    k = None
    del head
    gc.collect()
print("released", Finalised.count)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["released", "100000"]


def test_pure_python_path_can_be_forced() -> None:
    code = (
        "import dneio, dneio._core._driver as d, dneio._core._impl as i;"
        "print(i.compiled is None, d.NativeContinuation is d._py.NativeContinuation)"
    )
    env = dict(os.environ, DNEIO_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


@contextmanager
def _twin() -> Iterator[tuple[Callable[..., Any], Callable[..., Any]]]:
    """The pure-Python twin's reset and shift, its own continuations in use."""
    saved = _driver_py.continuation_type
    _driver_py.continuation_type = _driver_py.NativeContinuation
    try:
        yield _driver_py.reset, _driver_py.shift
    finally:
        _driver_py.continuation_type = saved


# A program: workers, each a list of steps, then a schedule of resumptions.
#   ("park", a)      shift(func) where func stores k and answers a
#   ("early", v)     shift(func) where func resumes k with v at once
#   ("fail",)        shift(func) where func raises before resuming k
#   ("reset", j)     start worker j (if not started) from inside this one
#   ("raise",)       raise an error out of the worker
# The schedule resumes stored continuations: (worker, "send"/"throw"/"twice").
_step = st.one_of(
    st.tuples(st.just("park"), st.integers(0, 9)),
    st.tuples(st.just("early"), st.integers(0, 9)),
    st.tuples(st.just("fail")),
    st.tuples(st.just("reset"), st.integers(0, 4)),
    st.tuples(st.just("raise")),
)
_program = st.tuples(
    st.lists(st.lists(_step, max_size=6), min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["send", "throw", "twice"])),
             max_size=25),
)


def _run(program: Any, reset: Callable[..., Any], shift: Callable[..., Any]) -> list[Any]:
    workers, schedule = program
    log: list[Any] = []
    ks: dict[int, Any] = {}
    started: set[int] = set()

    def start(j: int) -> None:
        if j < len(workers) and j not in started:
            started.add(j)
            try:
                log.append(("reset", j, reset(worker(j))))
            except Exception as exc:
                log.append(("reset raised", j, repr(exc)))

    async def worker(i: int) -> int:
        for n, step in enumerate(workers[i]):
            try:
                if step[0] == "park":
                    got = await shift(lambda k, a=step[1]: (ks.__setitem__(i, k), a)[1])
                elif step[0] == "early":
                    got = await shift(lambda k, v=step[1]: k.send(v))
                elif step[0] == "fail":
                    got = await shift(lambda k: 1 / 0)
                elif step[0] == "reset":
                    start(step[1])
                    got = "started"
                else:
                    raise KeyError(i)
                log.append((i, n, got))
            except ZeroDivisionError:
                log.append((i, n, "func failed"))
            except ValueError as exc:
                log.append((i, n, "thrown", str(exc)))
        return i

    start(0)
    for j in range(len(workers)):
        start(j)
    for i, how in schedule:
        k = ks.pop(i, None)
        if k is None:
            continue
        try:
            if how == "throw":
                log.append(("answer", i, k.throw(ValueError(f"to {i}"))))
            else:
                log.append(("answer", i, k.send(("v", i))))
                if how == "twice":
                    k.send("again")
        except dneio.ContinuationSpentError:
            log.append(("spent", i))
        except Exception as exc:
            log.append(("resume raised", i, repr(exc)))
    return log


@settings(max_examples=300, deadline=None)
@given(_program)
def test_both_drivers_agree_on_generated_programs(program: Any) -> None:
    with _twin() as (twin_reset, twin_shift):
        reference = _run(program, twin_reset, twin_shift)
    assert _run(program, dneio.reset, dneio.shift) == reference


def test_both_paths_agree_in_separate_processes() -> None:
    """One fixed program, run with the path chosen at start-up each way."""
    program = r"""
import dneio
import dneio.lowlevel
from dneio import reset, shift

log = []
ks = {}

async def worker(i):
    try:
        for r in range(3):
            v = await shift(lambda k: ks.__setitem__(i, k) or ("answer", i))
            log.append((i, r, v))
        await shift(lambda k: 1 / 0)
    except ZeroDivisionError:
        log.append((i, "caught"))
    return i * 10

for i in range(4):
    log.append(reset(worker(i)))
for r in range(3):
    for i in reversed(range(4)):
        log.append(ks.pop(i).send((r, i)))
k = None
async def once():
    global k
    await shift(lambda c: globals().__setitem__("k", c))
reset(once())
k.send(None)
try:
    k.send(None)
except RuntimeError as e:
    log.append(type(e).__name__)
print(log)
"""
    outputs = []
    for pure in ("", "1"):
        env = dict(os.environ, DNEIO_PURE_PYTHON=pure)
        out = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(out.stdout)
    assert outputs[0] == outputs[1]
    assert "ContinuationSpentError" in outputs[0]


def test_resumption_values_reach_await_and_yield_from_alike() -> None:
    """None and other values, through ``await`` and ``yield from``, with an exception in hand.

    From CPython 3.12 on, resuming an ``await`` of the compiled ``shift``
    goes through its iterator methods, where a None result finishes
    without raising StopIteration; nothing of that may show.
    """
    program = r"""
import sys, types
from dneio import reset, shift

ks = []

@types.coroutine
def via_yield_from(func):
    return (yield from shift(func))

async def reader(how):
    got = []
    for _ in range(4):
        try:
            raise KeyError("in hand")
        except KeyError:
            if how == "await":
                v = await shift(ks.append)
            else:
                v = await via_yield_from(ks.append)
            got.append((v, sys.exc_info()[0].__name__))
        got.append(sys.exc_info()[0])
    return got

for how in ("await", "yield from"):
    reset(reader(how))
    for value in (None, 0, (1, 2), None):
        answer = ks.pop().send(value)
    print(how, answer)
"""
    outputs = []
    for pure in ("", "1"):
        env = dict(os.environ, DNEIO_PURE_PYTHON=pure)
        out = subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(out.stdout)
    assert outputs[0] == outputs[1]
    expected = (
        "[(None, 'KeyError'), None, (0, 'KeyError'), None, ((1, 2), 'KeyError'), None, "
        "(None, 'KeyError'), None]"
    )
    assert outputs[0].splitlines() == [f"await {expected}", f"yield from {expected}"]


# -- objects kept for reuse ---------------------------------------------------------
#
# The compiled core keeps released shifts and continuations for the next
# shift (a few dozen of each).  These hold on both paths: nothing is kept
# beyond that, and a long chain of continuations is released without
# exhausting the C stack.


def test_released_shifts_and_continuations_are_not_leaked() -> None:
    import gc

    from dneio import reset, shift

    kind = _driver.NativeContinuation

    async def loop(n: int) -> None:
        for _ in range(n):
            await shift(lambda k: k)

    def run(n: int) -> None:
        k = reset(loop(n))
        while k is not None:
            k = k.send(None)

    run(100)  # fill whatever is kept for reuse
    gc.collect()
    types_before = sys.getrefcount(kind)
    objects_before = len(gc.get_objects())
    run(20_000)
    gc.collect()
    # A leaked continuation would keep a reference to its type, and a leaked
    # shift or continuation an object the collector tracks.
    assert sys.getrefcount(kind) - types_before <= 64
    assert len(gc.get_objects()) - objects_before <= 64


def test_a_long_chain_of_continuations_is_released_without_overflowing_the_stack() -> None:
    """Each coroutine holds the continuation of the next: dropping the head frees them all."""
    code = """
import gc, sys
import dneio

box = []
async def link(inner):
    await dneio.shift(box.append)
    return inner

head = None
for _ in range(200_000):
    dneio.reset(link(head))
    head = box.pop()
gc.collect()
del head
gc.collect()
print("released")
"""
    for pure in (False, True):
        env = dict(os.environ)
        env.pop("DNEIO_PURE_PYTHON", None)
        if pure or PURE:
            env["DNEIO_PURE_PYTHON"] = "1"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split() == ["released"]


def test_a_value_a_coroutine_is_resumed_with_is_not_kept_alive() -> None:
    """Once the coroutine has dropped it, nothing of dneio's holds the value."""
    import weakref

    from dneio import reset, shift

    class Value:
        pass

    parked: list[Any] = []
    seen: list[str] = []

    async def taker() -> None:
        while True:
            value = await shift(parked.append)
            seen.append(type(value).__name__)
            del value

    reset(taker())
    for _ in range(3):
        value = Value()
        ref = weakref.ref(value)
        parked.pop().send(value)
        del value
        assert ref() is None
    # A plain value after an object, and the object still not kept.
    parked.pop().send(5)
    assert seen == ["Value", "Value", "Value", "int"]


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="sys.monitoring, and a StopIteration per resumption, are 3.12 and later",
)
def test_a_stop_iteration_or_its_args_someone_keeps_stay_as_they_were() -> None:
    """From CPython 3.12 on, each resumption with a value finishes the shift
    with a StopIteration, which the compiled core reuses while no one else
    holds it or its args. A tool that sees it raised (sys.monitoring) and
    keeps it, or its args, has them as they were: later resumptions do not
    touch them. And a value that refers back to its StopIteration is
    collected with it: the refilled args stay visible to the collector."""
    import gc
    import weakref

    from dneio import reset, shift

    monitoring = sys.monitoring
    tool = next(i for i in range(6) if monitoring.get_tool(i) is None)
    kept: list[Any] = []

    class Box:
        back: Any = None

    def on_raise(code: Any, offset: int, exc: BaseException) -> Any:
        if type(exc) is StopIteration and exc.__traceback__ is None:
            value = exc.value
            if value in ("b", "d"):
                kept.append(exc)
            elif value in ("c", "e"):
                kept.append(exc.args)
            elif isinstance(value, Box):
                value.back = exc
        return None

    parked: list[Any] = []

    async def reader() -> None:
        while True:
            await shift(parked.append)

    reset(reader())
    parked.pop().send("a")
    monitoring.use_tool_id(tool, "dneio test")
    try:
        monitoring.register_callback(tool, monitoring.events.RAISE, on_raise)
        monitoring.set_events(tool, monitoring.events.RAISE)
        for value in ("b", "c", "d", "e", "f", "g"):
            parked.pop().send(value)
        gc.collect()  # a tuple of atomic items only is no longer tracked after this
        box = Box()
        ref = weakref.ref(box)
        parked.pop().send(box)
    finally:
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, monitoring.events.RAISE, None)
        monitoring.free_tool_id(tool)
    del box
    parked.pop().send("h")
    parked.pop().send("i")
    gc.collect()
    assert ref() is None, "a cycle through a refilled StopIteration was not collected"
    if _impl.CORE == "compiled":  # it raises them where a tool sees them
        assert [(s.value, s.args) for s in kept[0::2]] == [("b", ("b",)), ("d", ("d",))]
        assert kept[1::2] == [("c",), ("e",)]


def test_a_compiled_core_built_for_another_version_is_not_used() -> None:
    """An in-place build left from another version: pure Python, and a warning that says so."""
    code = """
import sys, types, warnings
stale = types.ModuleType("dneio._core._driver_c")
stale.API = 0
stale.__file__ = "/old/_driver_c.so"
sys.modules["dneio._core._driver_c"] = stale
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import dneio, dneio.lowlevel
print(dneio.lowlevel.CORE)
print([str(w.message) for w in caught if "another version" in str(w.message)])
async def f():
    return await dneio.shift(lambda k: k.send(5))
try:
    dneio.reset(f())
except StopIteration:
    pass
print("ok")
"""
    env = dict(os.environ)
    env.pop("DNEIO_PURE_PYTHON", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "python"
    assert "/old/_driver_c.so" in lines[1] and "rebuild" in lines[1]
    assert lines[2] == "ok"


def test_a_chain_through_fields_that_share_an_object_is_released_without_overflowing() -> None:
    """Two fields of a continuation holding the same object count as two
    references to it: a long chain through such objects is still released
    with CPython's bound on the depth of deallocation."""
    code = """
import types
from dneio._core import _driver

kind = _driver.NativeContinuation
head = None
for _ in range(1_000_000):
    k = kind(None)
    cell = types.CellType(head)
    k._coro = cell
    k._ctx = cell
    del cell
    head = k
del k
del head
print("released")
"""
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["released"]


@pytest.mark.skipif(PURE, reason="the compiled continuation's layout")
def test_a_continuation_holds_its_coroutine_or_a_claimed_one() -> None:
    """The compiled continuation keeps the two in one field: each reads as the twin's."""
    kind = _driver.NativeContinuation

    async def body() -> None:
        pass

    coro = body()
    k = kind(None)
    assert k._coro is None and k._claimed is None
    k._claimed = coro
    assert k._claimed is coro and k._coro is None
    k._coro = None  # clearing the other one changes nothing
    assert k._claimed is coro
    with pytest.raises(dneio.ContinuationSpentError):  # spent to its callers while claimed
        k.send(1)
    assert k._claimed is coro
    k._claimed = None
    assert k._claimed is None and k._coro is None
    k._coro = coro
    assert k._coro is coro and k._claimed is None
    other = body()
    with pytest.raises(RuntimeError, match="never both"):
        k._claimed = other
    assert k._coro is coro and k._claimed is None
    coro.close()
    other.close()


def test_a_host_imported_after_shifts_in_another_is_served() -> None:
    """The compiled core remembers that none of the hosts it watches for is
    imported yet, until sys.modules changes; then it looks again."""
    pytest.importorskip("trio")
    program = r"""
import asyncio
import sys

import dneio

assert "trio" not in sys.modules
async def main():
    total = 0
    for i in range(50):
        total += await dneio.shift(lambda k, i=i: k.send(i))
    return total

assert asyncio.run(main()) == sum(range(50))
import trio

async def in_trio():
    return await dneio.shift(lambda k: k.send("served"))

print(trio.run(in_trio), asyncio.run(main()))
"""
    for pure in ("", "1"):
        env = {k: v for k, v in os.environ.items() if k != "DNEIO_PURE_PYTHON"}
        if pure:
            env["DNEIO_PURE_PYTHON"] = pure
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["served", str(sum(range(50)))]
