"""Packages a user's graphs need survive the next ``scripts/dev up``: the graphs file's
``dependencies`` are installed after the locked sync, and that sync (``--inexact``) keeps
what a user added. The sync behaviour is checked on a real uv project in a temporary folder."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.graph_dependencies import requirements
from quadracode_ray.graph_specs import GraphSpecError

ROOT = Path(__file__).resolve().parents[2]


def _uv_binary() -> str:
    """uv as scripts/dev finds it: on PATH, else the one it installs into .tools/."""
    found = shutil.which("uv") or (str(ROOT / ".tools" / "bin" / "uv") if (ROOT / ".tools" / "bin" / "uv").exists() else None)
    if found is None:
        pytest.fail("uv is missing: scripts/dev installs it (on PATH or in .tools/bin)")
    return found


def _graphs_file(tmp_path: Path, dependencies) -> Settings:
    (tmp_path / "graph").mkdir(exist_ok=True)
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    (tools / "pyproject.toml").write_text("[project]\nname = 'tools'\nversion = '0'\n")
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"dependencies": dependencies, "graphs": {}}))
    return Settings(_env_file=None, graphs_file=path)


def test_the_graphs_files_dependencies_are_packages_and_package_folders(tmp_path: Path) -> None:
    settings = _graphs_file(tmp_path, [".", "./graph", "./tools", "langchain>=1.3", "deepagents>=0.6.2"])
    # Folders without a package definition need nothing (graph files load by path).
    assert requirements(settings) == [str(tmp_path / "tools"), "langchain>=1.3", "deepagents>=0.6.2"]
    assert requirements(Settings(_env_file=None)) == []
    with pytest.raises(GraphSpecError, match="list of strings"):
        requirements(_graphs_file(tmp_path, "langchain"))
    with pytest.raises(GraphSpecError, match="does not exist"):
        requirements(_graphs_file(tmp_path, ["./missing"]))


def test_the_dev_setup_syncs_inexactly_then_installs_the_dependencies() -> None:
    script = (ROOT / "scripts" / "dev").read_text()
    assert '"$uv" sync --frozen --inexact' in script
    assert "quadracode_ray.graph_dependencies" in script


def _uv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([_uv_binary(), *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def test_an_inexact_sync_keeps_a_package_the_user_added(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[project]\nname = 'probe'\nversion = '0'\nrequires-python = '>=3.11'\ndependencies = []\n"
        "[tool.uv]\npackage = false\n")
    extra = tmp_path / "extra"
    (extra / "extra_probe").mkdir(parents=True)
    (extra / "extra_probe" / "__init__.py").write_text("VALUE = 42\n")
    (extra / "pyproject.toml").write_text(
        "[project]\nname = 'extra-probe'\nversion = '0'\n[build-system]\nrequires = ['hatchling']\n"
        "build-backend = 'hatchling.build'\n[tool.hatch.build.targets.wheel]\npackages = ['extra_probe']\n")
    _uv("lock", cwd=project)
    _uv("sync", "--frozen", "--inexact", cwd=project)
    python = str(project / ".venv" / "bin" / "python")
    _uv("pip", "install", "--python", python, str(extra), cwd=project)
    _uv("sync", "--frozen", "--inexact", cwd=project)  # what the next `up` does
    kept = subprocess.run([python, "-c", "import extra_probe; print(extra_probe.VALUE)"],
                          capture_output=True, text=True, timeout=60)
    assert kept.stdout.strip() == "42", kept.stderr
    _uv("sync", "--frozen", cwd=project)  # an exact sync (what `up` did before) removes it
    gone = subprocess.run([python, "-c", "import extra_probe"], capture_output=True, text=True, timeout=60)
    assert gone.returncode != 0
