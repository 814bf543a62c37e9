"""The optional compiled core, and the pure-Python path it stands in for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import dneio
from dneio import _native, _scheduling

PURE = bool(os.environ.get("DNEIO_PURE_PYTHON"))


def test_the_expected_path_is_in_use() -> None:
    if PURE:
        assert _scheduling._cnative is None
        assert dneio.shift.__module__ == "dneio._shift"
        assert _native.NativeContinuation is _native.PyNativeContinuation
    else:
        cnative = pytest.importorskip("dneio._cnative")
        assert dneio.shift is cnative.shift
        assert issubclass(_native.NativeContinuation, cnative.NativeCore)
        assert isinstance(_scheduling.current_state(), cnative.ThreadState)


def test_pure_python_path_can_be_forced() -> None:
    code = (
        "import dneio, dneio._native as n, dneio._scheduling as s;"
        "print(s._cnative is None, n.NativeContinuation is n.PyNativeContinuation)"
    )
    env = dict(os.environ, DNEIO_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True"]


def test_both_paths_agree_on_a_workout() -> None:
    """The same program, run on each path in a subprocess, prints the same trace."""
    program = r"""
import dneio
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
try:
    ks_copy = list(ks)
except Exception as e:
    log.append(repr(e))
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
