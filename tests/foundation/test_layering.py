"""The import rule of SPEC.md, checked on the source: serve_app -> actors -> sandbox -> quadracode_ray.

Imports point down only, and graphs, tools and providers in the core never import Ray, so a
graph runs unchanged in a plain test, a notebook or an actor.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["quadracode_ray", "sandbox", "actors", "serve_app"]  # bottom to top
RAY_FREE = ["quadracode_ray/graphs", "quadracode_ray/tools", "quadracode_ray/llm", "quadracode_ray/interfaces",
            "quadracode_ray/testing", "quadracode_ray/envelope.py", "quadracode_ray/config.py",
            "quadracode_ray/metrics.py", "quadracode_ray/persistence"]


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(relative: str) -> list[Path]:
    target = ROOT / relative
    if target.is_file():
        return [target]
    return sorted(target.rglob("*.py")) if target.exists() else []


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_down_only(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1:])
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & above)
        for path in python_files(layer)
        if imported_top_levels(path) & above
    }
    assert not offenders, f"{layer} imports layers above it: {offenders}"


def test_graphs_tools_and_providers_never_import_ray_or_actors() -> None:
    forbidden = {"ray", "actors", "sandbox", "serve_app"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & forbidden)
        for relative in RAY_FREE
        for path in python_files(relative)
        if imported_top_levels(path) & forbidden
    }
    assert not offenders, f"core modules that must stay Ray-free import: {offenders}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import ray\nfrom serve_app.app import build_app\nfrom . import sibling\n")
    assert imported_top_levels(bad) == {"ray", "serve_app"}
