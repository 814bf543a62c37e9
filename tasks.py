#!/usr/bin/env python3
"""Set up and run dneio's jobs, each in a local virtual environment.

    python3 tasks.py demo    # the demo: one protocol, natively, on asyncio and on trio
    python3 tasks.py test    # the whole test suite on the matrix below, then mypy and ruff
    python3 tasks.py bench   # the benchmark (extra arguments are passed on)

The test job looks for CPython 3.11, 3.12 and 3.13: the python3 running this
script, ``python3.X`` on PATH, or ``$(pyenv root)/versions/3.X*/bin/python3``
(``~/.pyenv`` without pyenv). It runs the whole suite once per line below,
on the Pythons it found, with the compiled core or on the pure-Python path
(DNEIO_PURE_PYTHON=1), against the newest releases of trio, anyio, outcome
and uvloop or the oldest ones dneio supports (ci/oldest-constraints.txt):

    run                          on Python           in
    3.X-compiled-newest          each one found      .venv for the python3 running this
                                                     script (demo and bench use it too),
                                                     .venv-3.X for the others
    3.X-pure-newest              the newest found    the same
    3.X-pure-oldest              the oldest found    .venv-oldest
    3.X-compiled-oldest          the oldest found    .venv-oldest
    3.X-compiled-newest-no-trio  python3             .venv-notrio: the ``test-core`` extra,
                                                     without trio (asyncio only)

The oldest releases run only on Python 3.12 or older: trio 0.22.2 installs
on 3.13 but fails on import. A Python that is not found, and a run that
cannot be done, is announced before the runs and in the summary at the end;
it does not fail the job (whoever has one Python gets a full run on it).

The environments are set up one after the other, newest Python first;
each is created on first use and refreshed when pyproject.toml, setup.py,
the C sources, the constraints or its Python change. Meanwhile the runs
go two at a time (a pass keeps a core busy less than half of the time),
each as soon as every environment of its Python is set up, each one's
output shown whole when it ends; every run is done even when another
fails. mypy --strict and ruff run once, in .venv, and a summary says what
passed. The job fails if anything
failed, a pytest pass that collected no tests included.

Options, before any argument for pytest (all others go on to each pytest run):

    --quick        one run only: python3, compiled core, newest releases
    --only A,B     only the runs whose name contains A or B (3.13, oldest, no-trio, ...)
    --jobs N       N runs at a time (default 2); with 1, the output is shown as it comes
    --list         show the Pythons found and the runs planned, and stop
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = ROOT / "ci" / "oldest-constraints.txt"
MATRIX = ("3.11", "3.12", "3.13")
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"  # the python3 running this script
# The newest Python that the oldest releases run on, and why not on newer ones.
OLDEST_RELEASES_UP_TO = "3.12"
OLDEST_RELEASES_WHY = (
    "trio 0.22.2 (ci/oldest-constraints.txt) installs on Python 3.13 but fails on import "
    "(TypeError in trio/_path.py)"
)


class Failed(Exception):
    """A step failed; the message says which and why."""


@dataclass(frozen=True)
class Python:
    version: str  # "3.12"
    exe: str
    full: str  # "3.12.1"


@dataclass(frozen=True)
class Env:
    path: Path
    python: Python
    extras: str = "test,trio,uvloop"
    constraints: Path | None = None


@dataclass(frozen=True)
class Run:
    name: str
    env: Env
    pure: bool
    no_trio: bool = False


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def _rel(path: str) -> str:
    return os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else path


def _run(cmd: list[str], env: dict[str, str] | None = None, out: IO[str] | None = None) -> int:
    """Run ``cmd`` in the project folder, its output to ``out`` (default: ours)."""
    print("+", " ".join(_rel(c) for c in cmd), file=out or sys.stdout, flush=True)
    stderr = None if out is None else subprocess.STDOUT
    return subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=stderr).returncode


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


# --- the Pythons and the runs -----------------------------------------------------------

_PROBE = (
    "import ensurepip, platform, sysconfig, venv; "
    "print(platform.python_implementation(), platform.python_version(), "
    "sysconfig.get_config_var('Py_GIL_DISABLED') or 0)"
)


def _probe(exe: str, version: str) -> str | None:
    """The full version of ``exe`` if it runs as CPython ``version`` and can make venvs."""
    try:
        out = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = out.stdout.split()
    if out.returncode != 0 or len(words) != 3:
        return None  # e.g. a pyenv shim of a version not selected, or no venv/ensurepip
    impl, full, free_threaded = words
    if impl != "CPython" or free_threaded != "0" or _key(full)[:2] != _key(version):
        return None
    return full


def _pyenv_root() -> Path:
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path.home() / ".pyenv"


def find_pythons() -> tuple[dict[str, Python], dict[str, str]]:
    """The Pythons found, by version; for those not found, where they were looked for."""
    found: dict[str, Python] = {}
    missing: dict[str, str] = {}
    pattern = str(_pyenv_root() / "versions" / "{}*" / "bin" / "python3")
    for version in sorted({*MATRIX, HERE}, key=_key):
        candidates = [sys.executable] if version == HERE else []
        on_path = shutil.which(f"python{version}")
        if on_path:
            candidates.append(on_path)
        candidates += sorted(glob.glob(pattern.format(version)), key=_key, reverse=True)
        for exe in candidates:
            full = _probe(exe, version)
            if full is not None:
                found[version] = Python(version, exe, full)
                break
        else:
            missing[version] = (
                f"no working python{version} on PATH, nothing under {pattern.format(version)}"
            )
    return found, missing


def plan(found: dict[str, Python]) -> tuple[list[Run], dict[str, str]]:
    """The runs to do, and why each of the others cannot be done."""
    runs: list[Run] = []
    not_run: dict[str, str] = {}

    def newest_env(version: str) -> Env:
        return Env(ROOT / (".venv" if version == HERE else f".venv-{version}"), found[version])

    for version in sorted({*MATRIX, HERE}, key=_key):
        if version in found:
            runs.append(Run(f"{version}-compiled-newest", newest_env(version), pure=False))
        else:
            not_run[f"{version}-compiled-newest"] = f"Python {version} not found"
    newest = max(found, key=_key)
    runs.append(Run(f"{newest}-pure-newest", newest_env(newest), pure=True))
    able = [v for v in found if _key(v) <= _key(OLDEST_RELEASES_UP_TO)]
    if able:
        oldest = min(able, key=_key)
        env = Env(ROOT / ".venv-oldest", found[oldest], constraints=CONSTRAINTS)
        runs.append(Run(f"{oldest}-pure-oldest", env, pure=True))
        runs.append(Run(f"{oldest}-compiled-oldest", env, pure=False))
    else:
        for core in ("pure", "compiled"):
            not_run[f"{core}-oldest"] = f"{OLDEST_RELEASES_WHY}, and no older Python found"
    home = HERE if HERE in found else newest
    env = Env(ROOT / ".venv-notrio", found[home], extras="test-core")
    runs.append(Run(f"{home}-compiled-newest-no-trio", env, pure=False, no_trio=True))
    return runs, not_run


# --- environments -----------------------------------------------------------------------


def _python(env: Path) -> str:
    return str(env / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def _ensure(env: Env, out: IO[str] | None = None) -> str:
    """Create or refresh ``env`` with dneio and its extras installed; its python."""
    inputs = [(ROOT / "pyproject.toml").read_bytes(), (ROOT / "setup.py").read_bytes()]
    # The compiled core is built in place by the install: a changed C source
    # or header must rebuild it, or the tests would run the old one.
    inputs += [c.read_bytes() for c in sorted((ROOT / "src").rglob("*.[ch]"))]
    if env.constraints is not None:
        inputs.append(env.constraints.read_bytes())
    inputs += [env.extras.encode(), env.python.exe.encode(), env.python.full.encode()]
    digest = hashlib.sha256(b"\0".join(inputs)).hexdigest()
    stamp = env.path / ".dneio-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return _python(env.path)
    pins = f", pinned by {os.path.relpath(env.constraints, ROOT)}" if env.constraints else ""
    print(f"setting up {env.path.name}: Python {env.python.full}, dneio[{env.extras}]{pins}",
          file=out or sys.stdout, flush=True)
    if _run([env.python.exe, "-m", "venv", "--clear", str(env.path)], None, out) != 0:
        raise Failed(f"could not create {env.path.name}")
    py = _python(env.path)
    if _run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], None, out) != 0:
        raise Failed(f"could not upgrade pip in {env.path.name}")
    cmd = [py, "-m", "pip", "install", "-q", "-e", f".[{env.extras}]"]
    if env.constraints is not None:
        cmd += ["-c", str(env.constraints)]
    if _run(cmd, None, out) != 0:
        raise Failed(f"could not install dneio[{env.extras}]{pins} in {env.path.name}")
    stamp.write_text(digest)
    return py


def _here() -> Env:
    """.venv: the newest releases, on the python3 running this script."""
    return Env(ROOT / ".venv", Python(HERE, sys.executable, platform.python_version()))


def _extensions() -> list[str]:
    """The compiled modules that setup.py builds, by name."""
    return re.findall(r"""Extension\(\s*["']([\w.]+)["']""", (ROOT / "setup.py").read_text())


# --- jobs -------------------------------------------------------------------------------


def demo(args: list[str]) -> None:
    code = _run([_ensure(_here()), "-m", "dneio", "demo", *args])
    if code != 0:
        sys.exit(f"demo failed (exit code {code})")


def bench(args: list[str]) -> None:
    code = _run([_ensure(_here()), "-m", "dneio", "bench", *args])
    if code != 0:
        sys.exit(f"bench failed (exit code {code})")


def _pytest(run: Run, py: str, args: list[str], compiler: bool, out: IO[str] | None) -> None:
    """One pass of the test suite, with ``py`` of the run's environment; raises Failed."""
    env = {k: v for k, v in os.environ.items() if k != "DNEIO_PURE_PYTHON"}
    if run.pure:
        env["DNEIO_PURE_PYTHON"] = "1"
    elif compiler:
        # With a C compiler at hand the compiled core must build: test it.
        modules = _extensions()
        if not modules:
            raise Failed("found no Extension(...) in setup.py to check the compiled core by")
        for module in modules:
            if _run([py, "-c", f"import {module}"], env, out) != 0:
                raise Failed(f"the compiled core ({module}) did not build")
    extra: list[str] = []
    if run.no_trio:
        no_trio = "import importlib.util as u, sys; sys.exit(u.find_spec('trio') is not None)"
        if _run([py, "-c", no_trio], env, out) != 0:
            raise Failed("trio is installed (something in the test-core extra pulls it in)")
        if _run([py, "-c", "import dneio, dneio.io, dneio.testing"], env, out) != 0:
            raise Failed("dneio does not import without trio")
        extra = ["-rfEs"]  # failures, errors, and why each trio test was skipped
    code = _run([py, "-m", "pytest", *extra, *args], env, out)
    if code == 5:
        raise Failed("pytest collected no tests (exit code 5)")
    if code != 0:
        raise Failed(f"tests failed (pytest exit code {code})")


def _options(args: list[str]) -> tuple[bool, list[str], int, bool, list[str]]:
    """--quick, --only, --jobs and --list, then the arguments left for pytest."""
    quick, only, jobs, listing = False, [], 2, False
    while args:
        if args[0] in ("--only", "--jobs") and len(args) > 1:
            args = [f"{args[0]}={args[1]}", *args[2:]]
            continue
        if args[0] == "--quick":
            quick = True
        elif args[0] == "--list":
            listing = True
        elif args[0].startswith("--only="):
            only += [o for o in args[0].removeprefix("--only=").split(",") if o]
        elif args[0].startswith("--jobs="):
            jobs = max(1, int(args[0].removeprefix("--jobs=")))
        else:
            break
        args = args[1:]
    return quick, only, jobs, listing, args


def test(args: list[str]) -> None:
    quick, only, jobs, listing, args = _options(args)
    start = time.monotonic()
    found, missing = find_pythons()
    if not found:
        sys.exit(f"no usable Python found: {missing}")
    runs, not_run = plan(found)
    if quick:
        runs, not_run = runs[:1], {}
    if only:
        runs = [r for r in runs if any(o in r.name for o in only)]
        not_run = {n: why for n, why in not_run.items() if any(o in n for o in only)}
        if not runs:
            sys.exit(f"--only {','.join(only)}: no run has such a name (see --list)")
    compiler = bool(shutil.which("cc") or shutil.which("gcc"))

    print("Pythons:")
    for version in sorted({*MATRIX, HERE}, key=_key):
        print(f"  {version}  {found[version].exe} ({found[version].full})" if version in found
              else f"  {version}  NOT FOUND: {missing[version]}")
    if not compiler:
        print("no C compiler found: the compiled runs use the pure-Python path too")
    print("runs:")
    for run in runs:
        print(f"  {run.name:30} in {run.env.path.name}")
    for name, why in not_run.items():
        print(f"  {name:30} NOT RUN: {why}")
    if listing:
        return
    # Environments are set up one at a time, newest Python first, in a thread of their
    # own, while the runs whose environments are ready already go. pip builds the
    # compiled core in place, under src/, with one file per Python version: so no two
    # installs overlap, and no run starts on a Python before every environment of that
    # Python is set up (an install would otherwise rewrite a module a run has loaded).
    lint = _here()
    envs = sorted(dict.fromkeys([*(run.env for run in runs), lint]),
                  key=lambda e: _key(e.python.version), reverse=True)
    pythons: dict[Env, str] = {}
    broken: dict[Env, str] = {}
    ready = {env.python.version: threading.Event() for env in envs}
    printing = threading.Lock()
    set_up_took: list[float] = []

    def show(out: IO[str], header: str | None = None) -> None:
        """What a step wrote to ``out``, shown whole (after ``header``)."""
        out.seek(0)
        with printing:
            if header is not None:
                print(header, flush=True)
            shutil.copyfileobj(out, sys.stdout)
            sys.stdout.flush()

    stop = threading.Event()  # set when the job is interrupted (Ctrl-C)

    def set_up() -> None:
        t0 = time.monotonic()
        try:
            for i, env in enumerate(envs):
                if stop.is_set():
                    break
                with tempfile.TemporaryFile("w+") as out:
                    try:
                        pythons[env] = _ensure(env, out)
                    except Failed as e:
                        print(e, file=out, flush=True)
                        broken[env] = str(e)
                    show(out)
                if all(later.python.version != env.python.version for later in envs[i + 1:]):
                    ready[env.python.version].set()
        finally:
            for env in envs:  # after an unexpected error, what is not set up is broken
                if env not in pythons:
                    broken.setdefault(env, "not set up (see the error above)")
                ready[env.python.version].set()
            set_up_took.append(time.monotonic() - t0)

    def one(run: Run) -> tuple[str, str, str]:
        ready[run.env.python.version].wait()
        if stop.is_set():
            return ("not run", run.name, "interrupted")
        header = (f"\n=== {run.name} ({run.env.path.name}, Python {run.env.python.full}, "
                  f"{'pure Python' if run.pure else 'compiled core'}) ===")
        t0 = time.monotonic()
        # With several runs at a time, each one's output goes to a file, shown at its end.
        capture = tempfile.TemporaryFile("w+") if jobs > 1 else contextlib.nullcontext()
        with capture as out:
            if out is None:
                print(header, flush=True)
            try:
                if run.env in broken:
                    raise Failed(broken[run.env])
                _pytest(run, pythons[run.env], args, compiler, out)
                result = ("passed", run.name, _minutes(time.monotonic() - t0))
            except Failed as e:
                result = ("FAILED", run.name, f"{_minutes(time.monotonic() - t0)}  {e}")
            if out is not None:
                show(out, header)
        return result

    def lint_checks() -> list[tuple[str, str, str]]:
        ready[lint.python.version].wait()
        if stop.is_set():
            return [("not run", "mypy --strict and ruff", "interrupted")]
        if lint in broken:
            return [("FAILED", "mypy --strict and ruff", broken[lint])]
        py = pythons[lint]
        checks = {"mypy --strict": [py, "-m", "mypy", "--strict", "src"],
                  "ruff": [py, "-m", "ruff", "check", "src", "tests"]}
        results = []
        with tempfile.TemporaryFile("w+") as out:
            for name, cmd in checks.items():
                code = _run(cmd, None, out)
                results.append(("passed", name, "") if code == 0
                               else ("FAILED", name, f"exit code {code}"))
            show(out, "\n=== mypy --strict and ruff (.venv) ===")
        return results

    # The runs start in the order their Python is ready, the longest first (a run on
    # the pure-Python path takes longest, one without trio the least), so that the two
    # at a time end close together.
    order = {env.python.version: i for i, env in enumerate(envs)}
    weight = {run: (2 if run.pure else 0) - (1 if run.no_trio else 0) for run in runs}
    started = sorted(runs, key=lambda r: (order[r.env.python.version], -weight[r]))
    setter = threading.Thread(target=set_up, name="set-up")
    pool = ThreadPoolExecutor(jobs)
    try:
        setter.start()
        if jobs == 1:
            setter.join()  # the output of each run is shown as it comes: nothing in between
        futures = {run: pool.submit(one, run) for run in started}
        linting = pool.submit(lint_checks)
        results = [futures[run].result() for run in runs]
        results += [("not run", name, why) for name, why in not_run.items()]
        results += linting.result()
    except BaseException:
        # Interrupted: nothing more starts; the runs going now end with their
        # own interruption (Ctrl-C reaches their processes too).
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    setter.join()

    print(f"\n=== summary: {_minutes(time.monotonic() - start)} in all; setting up the "
          f"environments took {_minutes(set_up_took[0])}, alongside the first runs ===")
    for outcome, name, detail in results:
        print(f"  {outcome:8} {name:30} {detail}")
    failed = [name for outcome, name, _ in results if outcome == "FAILED"]
    if failed:
        sys.exit(f"FAILED: {', '.join(failed)}")
    print("all checks passed" + (f"; {len(not_run)} runs could not be done" if not_run else ""))


def main() -> None:
    jobs = {"demo": demo, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in jobs:
        sys.exit(f"usage: python3 tasks.py {{{','.join(jobs)}}} [args...]")
    jobs[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
