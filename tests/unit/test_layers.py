"""The house rules: each package imports only the layers below it, and the wheel ships only
``fleetimage``.

    cli  →  engine  →  journal · output · aws  →  config  →  core        (mock → config, core)
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fleetimage"

# What each package may import of fleetimage's (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "config": frozenset({"core"}),
    "aws": frozenset({"config", "core"}),
    "journal": frozenset({"core"}),
    "output": frozenset({"core"}),
    "mock": frozenset({"config", "core"}),
    "engine": frozenset({"aws", "config", "core", "journal", "output"}),
    "cli": frozenset({"engine", "aws", "config", "core", "journal", "output", "mock"}),
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "fleetimage" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "fleetimage":  # `from fleetimage import x` names a subpackage
                found += [(node.lineno, f"fleetimage.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def test_every_module_lives_in_a_layer() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "modules belong in a package that names their role"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_imports_only_point_down() -> None:
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if len(rel.parts) == 2:  # fleetimage/__init__.py: the public API re-exports anything
            continue
        own = rel.parts[1]
        for line, module in _imports(path):
            target = _layer(module)
            if target is None or target == own:
                continue
            if target not in ALLOWED[own]:
                wrong.append(f"{rel}:{line}: {own} imports {module}")
    assert wrong == []


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for name in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text("utf-8")))
        assert doc and "import" in doc.lower(), f"fleetimage/{name}/__init__.py needs its two lines"


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text("utf-8").splitlines())) > 400
    }
    assert long == {}


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_the_wheel_holds_only_fleetimage(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("fleetimage-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fleetimage"}
    assert "fleetimage/config/limits.yaml" in names
    assert "fleetimage/py.typed" in names
