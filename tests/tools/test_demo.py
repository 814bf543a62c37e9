"""``python -m dneio demo`` and the examples run, and check what they claim."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dneio._tools._demo as demo
from dneio.io import IO

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_demo_runs_on_every_runner() -> None:
    result = run("-m", "dneio", "demo", "--clients", "4", "--messages", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("line echo over 127.0.0.1: 1 server, 4 clients x 30 lines")
    for name in ("native", "asyncio", "trio", "uvloop", "twisted"):
        (line,) = [ln for ln in lines if re.match(rf"\s+\S+\s+{name}\b", ln)]
        if name in ("trio", "uvloop", "twisted") and importlib.util.find_spec(name) is None:
            assert "skip" in line
        else:
            assert re.match(rf"\s+ok\s+{name}\s+120 lines echoed, in order, ", line), line
    assert lines[-1] == "all runners agree"


def test_demo_reports_failures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = demo.send_all

    async def garbling_send_all(io: IO, sock: object, data: bytes) -> None:
        await real(io, sock, data.replace(b"line 3\n", b"line 4\n"))  # type: ignore[arg-type]

    monkeypatch.setattr(demo, "send_all", garbling_send_all)
    assert demo.main(["--runners", "native,asyncio", "--clients", "2", "--messages", "5"]) == 1
    out = capsys.readouterr().out
    assert "FAIL native" in out and "FAIL asyncio" in out and "OUT OF ORDER" in out
    assert out.splitlines()[-1] == "FAILED"


def test_demo_reports_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken_accept(io: IO, listener: object) -> object:
        raise ConnectionResetError("no connections today")

    monkeypatch.setattr(demo, "accept", broken_accept)
    monkeypatch.setattr(demo, "TIME_LIMIT", 0.5)  # the clients wait for a server in vain
    assert demo.main(["--runners", "native", "--clients", "1", "--messages", "1"]) == 1
    out = capsys.readouterr().out
    assert "error: ConnectionResetError: no connections today" in out


def test_demo_rejects_bad_arguments() -> None:
    result = run("-m", "dneio", "demo", "--runners", "native,nonesuch")
    assert result.returncode == 2 and "unknown runner 'nonesuch'" in result.stderr


def test_echo_example() -> None:
    result = run("examples/echo.py")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("native", "asyncio", "trio"):
        if name == "trio" and importlib.util.find_spec("trio") is None:
            assert re.search(r"^trio\s+skipped: trio is not installed", result.stdout, re.M)
            continue
        assert re.search(rf"^{name}\s+200 lines echoed, in order, ", result.stdout, re.M)


def test_threads_futures_example() -> None:
    result = run("examples/threads_futures.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "native: got 49 on worker" in result.stdout
    assert "asyncio: got 49 on MainThread" in result.stdout
    assert "withdrew its job: True" in result.stdout
