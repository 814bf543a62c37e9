#!/usr/bin/env python3
"""Set up and run dneio's jobs, each in a local virtual environment.

    python3 tasks.py demo    # the demo: one protocol, natively, on asyncio and on trio
    python3 tasks.py test    # the whole test suite, newest and oldest supported releases,
                             # then mypy --strict and ruff
    python3 tasks.py bench   # the benchmark (extra arguments are passed on)

Environments: .venv holds the newest releases of everything, .venv-oldest
the oldest releases dneio supports (ci/oldest-constraints.txt). Each is
created on first use and refreshed when pyproject.toml, setup.py or the
constraints change. The test job runs the suite with the compiled core on
the newest releases, and on the pure-Python path (DNEIO_PURE_PYTHON=1) on
the oldest ones. Extra arguments after ``test`` go to pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NEWEST = ROOT / ".venv"
OLDEST = ROOT / ".venv-oldest"
CONSTRAINTS = ROOT / "ci" / "oldest-constraints.txt"


def _python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _ensure(env: Path, constraints: Path | None = None) -> Path:
    """Create or refresh ``env`` with dneio and its test extras installed."""
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "setup.py").read_bytes()
    if constraints is not None:
        inputs += constraints.read_bytes()
    stamp = env / ".dneio-installed"
    digest = hashlib.sha256(inputs).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return _python(env)
    print(f"setting up {env.name} ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    py = str(_python(env))
    _run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    cmd = [py, "-m", "pip", "install", "-q", "-e", ".[test,trio,uvloop]"]
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    _run(cmd)
    stamp.write_text(digest)
    return _python(env)


def _run(cmd: list[str]) -> int:
    print("+", " ".join(os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd),
          flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def _check(code: int, what: str) -> None:
    if code == 5:
        sys.exit(f"{what}: pytest collected no tests")
    if code != 0:
        sys.exit(f"{what} failed (exit code {code})")


def demo(args: list[str]) -> None:
    _check(_run([str(_ensure(NEWEST)), "-m", "dneio", "demo", *args]), "demo")


def bench(args: list[str]) -> None:
    _check(_run([str(_ensure(NEWEST)), "-m", "dneio", "bench", *args]), "bench")


def test(args: list[str]) -> None:
    newest = str(_ensure(NEWEST))
    oldest = str(_ensure(OLDEST, CONSTRAINTS))
    # The newest releases with the compiled core; the oldest ones on the
    # pure-Python path, so that both are tested in full.
    if shutil.which("cc") or shutil.which("gcc"):
        # With a compiler at hand the compiled core must build: test it.
        _check(_run([newest, "-c", "import dneio._cnative"]), "the compiled core did not build")
    else:
        print("no C compiler found: both runs use the pure-Python path")
    _check(_run([newest, "-m", "pytest", *args]), "tests (newest releases, compiled core)")
    os.environ["DNEIO_PURE_PYTHON"] = "1"
    try:
        _check(_run([oldest, "-m", "pytest", "-q", *args]), "tests (oldest releases, pure Python)")
    finally:
        del os.environ["DNEIO_PURE_PYTHON"]
    _check(_run([newest, "-m", "mypy", "--strict", "src"]), "mypy --strict")
    _check(_run([newest, "-m", "ruff", "check", "src", "tests"]), "ruff")
    print("all checks passed")


def main() -> None:
    jobs = {"demo": demo, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in jobs:
        sys.exit(f"usage: python3 tasks.py {{{','.join(jobs)}}} [args...]")
    jobs[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
