"""The architecture the folders show holds in the imports, and the public names are public."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "dneio"
PUBLIC = ["dneio", "dneio.core", "dneio.concur", "dneio.io", "dneio.lowlevel"]
HOST_LIBRARIES = {"trio", "asyncio", "anyio", "uvloop", "twisted", "sniffio"}

# What each layer may import from dneio (besides itself).
ALLOWED = {
    "_core": {"dneio._core"},
    "_primitives": {"dneio._core", "dneio._primitives"},
    "_io": {"dneio._core", "dneio._primitives", "dneio._io"},
    "_hosts": {
        "dneio._core",
        "dneio._hosts",
        "dneio._io._fd",
        "dneio._io._shift_io",
        "dneio._primitives._waiters",
    },
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, at any depth in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _layer_files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def test_the_import_reader_resolves_relative_imports() -> None:
    found = _imports(PACKAGE / "_hosts" / "_trio" / "_runner.py")
    assert "dneio._core._queue" in found and "trio" in found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_is_below_it(layer: str) -> None:
    files = _layer_files(layer)
    assert files, f"no modules in {layer}"
    bad = []
    for path in files:
        for module in _imports(path):
            top = module.split(".")[0]
            if layer != "_hosts" and top in HOST_LIBRARIES:
                bad.append(f"{path.relative_to(PACKAGE)} imports the host library {module}")
            if top == "dneio" and module != "dneio":
                if not any(module == a or module.startswith(a + ".") for a in ALLOWED[layer]):
                    bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
            if module == "dneio":
                bad.append(f"{path.relative_to(PACKAGE)} imports the public package")
    assert not bad, "\n".join(bad)


def test_the_engine_never_names_a_host() -> None:
    """Hosts plug in through the registry and the entry hook; the engine names none."""
    for path in [*_layer_files("_core"), PACKAGE / "_core" / "_driver_c.c"]:
        code = path.read_text()
        if path.suffix == ".py":
            code = "\n".join(
                line for line in code.splitlines() if not line.lstrip().startswith(("#", '"'))
            )
        assert not re.search(r"\btrio_\w+|\bset_trio\w*|\"trio\"|'trio'", code), path


def test_one_module_picks_the_compiled_core() -> None:
    readers = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "DNEIO_PURE_PYTHON" in path.read_text() or "_driver_c import" in path.read_text()
    ]
    assert readers == ["_core/_impl.py"]


@pytest.mark.parametrize("module", PUBLIC)
def test_reexported_names_report_the_public_module(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        obj = getattr(mod, name)
        owner = getattr(obj, "__module__", None)
        if isinstance(owner, str) and owner.startswith("dneio"):
            assert not owner.startswith("dneio._"), f"{module}.{name} says {owner}"


def test_public_names_in_tracebacks() -> None:
    import dneio

    assert dneio.reset.__module__ == "dneio"
    assert dneio.shift.__module__ == "dneio"
    assert dneio.RequestQueue.__module__ == "dneio"
    assert repr(dneio.Event).startswith("<class 'dneio.Event'")


@pytest.mark.parametrize("module", [*PUBLIC, "dneio.testing"])
def test_every_public_name_is_documented(module: str) -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    mod = importlib.import_module(module)
    missing = [n for n in mod.__all__ if not re.search(rf"`[^`\n]*\b{n}\b[^`\n]*`", api)]
    assert not missing, f"docs/api.md does not document {module}: {missing}"


def test_tests_mirror_the_packages() -> None:
    tests = ROOT / "tests"
    for layer in ("core", "hosts", "primitives", "io", "tools"):
        assert (PACKAGE / f"_{layer}").is_dir()
        assert list((tests / layer).glob("test_*.py")), f"tests/{layer} is empty"


def test_import_dneio_loads_no_host_library() -> None:
    import subprocess

    code = (
        "import sys, dneio, dneio.io, dneio.lowlevel;"
        "print(sorted(m for m in {mods} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code.format(mods=sorted(HOST_LIBRARIES - {"asyncio"}))],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "[]"


def test_tests_named_in_the_docs_exist() -> None:
    """Every ``tests/...py::name`` the docs point to is a real test (``*`` matches many)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    refs = set()
    for page in pages:
        refs.update(re.findall(r"(tests/[\w/]+\.py)(?:::([\w*]+))?", page.read_text()))
    assert refs
    for path, name in sorted(refs):
        source = ROOT / path
        assert source.exists(), f"{path} (named in the docs) does not exist"
        if name:
            pattern = name.replace("*", r"\w*")
            assert re.search(rf"def {pattern}\b", source.read_text()), f"{path}::{name}"


def test_every_stub_and_header_ships_with_the_package() -> None:
    """The compiled parts' stubs (for type checkers) and headers (for a build
    from the sdist) are package data of their own package."""
    import fnmatch
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = data["tool"]["setuptools"]["package-data"]
    for path in sorted([*PACKAGE.rglob("*.pyi"), *PACKAGE.rglob("*.h")]):
        package = ".".join(path.parent.relative_to(ROOT / "src").parts)
        patterns = shipped.get(package, [])
        assert any(fnmatch.fnmatch(path.name, p) for p in patterns), (
            f"{path.relative_to(ROOT)} is not package data of {package}"
        )
