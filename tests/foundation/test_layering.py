"""The import rule, checked on the source: serve_app -> actors -> runs -> sandbox -> quadracode_ray.

Imports point down only; graphs, tools and providers in the core never import Ray, so a graph
runs unchanged in a plain test, a notebook or an actor; and the run engine (``runs/``) never
imports Ray either: actors embed it, it does not know them.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["quadracode_ray", "sandbox", "runs", "actors", "serve_app"]  # bottom to top
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


def test_tools_never_import_graphs() -> None:
    """Graphs use tools; a tool that imported a graph module would tie the two into a knot."""
    offenders = [str(path.relative_to(ROOT)) for path in python_files("quadracode_ray/tools")
                 if any(name.startswith("quadracode_ray.graphs") for name in imported_modules(path))]
    assert not offenders, f"tools importing graphs: {offenders}"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_run_engine_never_imports_ray() -> None:
    files = python_files("runs")
    assert files, "runs/ holds no Python modules"
    offenders = {str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & {"ray", "actors", "serve_app"})
                 for path in files if imported_top_levels(path) & {"ray", "actors", "serve_app"}}
    assert not offenders, f"the run engine imports Ray or the layers above it: {offenders}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import ray\nfrom serve_app.app import build_app\nfrom . import sibling\n")
    assert imported_top_levels(bad) == {"ray", "serve_app"}


def test_the_control_panel_is_a_pure_http_client() -> None:
    """serve_app/panel talks to the system over HTTP only: no Ray, no actor, no sandbox, and none of
    the API's own modules (so it runs standalone against a remote system unchanged)."""
    offenders = {}
    for path in python_files("serve_app/panel"):
        tree = ast.parse(path.read_text(), filename=str(path))
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
        bad = sorted(m for m in modules if m.split(".")[0] in {"ray", "actors", "sandbox"}
                     or (m.startswith("serve_app") and not m.startswith("serve_app.panel")))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert python_files("serve_app/panel"), "the panel package is missing"
    assert not offenders, f"panel modules importing more than HTTP clients: {offenders}"
