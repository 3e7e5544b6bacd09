"""Every notebook in notebooks/ runs top to bottom against the system this module starts.

A notebook asserts its own key results in its cells, so a notebook that runs but shows nothing
useful fails here. Each cell has a timeout; a failing cell fails the test with the cell's
traceback. The executed copies (with outputs) are written under the test's tmp folder; with
``QUADRACODE_NOTEBOOK_FIGURES=<dir>`` the charts of 06_experiment are saved there as PNG
images too (how ``notebooks/figures/`` was made, from a real execution).
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.notebooks.conftest import NOTEBOOKS, NotebookSystem

CELL_TIMEOUT_S = 240
EXECUTED = sorted(path.name for path in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_both_readmes_list_exactly_the_notebooks_there() -> None:
    stems = {name.removesuffix(".ipynb") for name in EXECUTED}
    assert stems == set(re.findall(r"^\| `(\d\d_\w+)\.ipynb` \|", (NOTEBOOKS / "README.md").read_text(), re.M))
    section = (NOTEBOOKS.parent / "README.md").read_text().split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    assert stems == set(re.findall(r"^\| `(\d\d_\w+)` \|", section, re.M))


@pytest.mark.parametrize("name", sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")))
def test_committed_notebooks_carry_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    dirty = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, f"{name}: cells {dirty} carry outputs; clear them before committing"


async def execute(name: str, system: NotebookSystem, tmp_path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    try:
        await client.async_execute(env={**os.environ, **system.kernel_env})
    except CellExecutionError as exc:
        pytest.fail(f"{name}: a cell failed\n{exc}", pytrace=False)
    finally:
        nbformat.write(notebook, tmp_path / name)
    return notebook


def images(notebook: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(output["data"]["image/png"]) for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXECUTED)
async def test_notebook_runs_top_to_bottom(name: str, notebook_system: NotebookSystem, tmp_path: Path) -> None:
    executed = await execute(name, notebook_system, tmp_path)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code), f"{name}: not every cell ran"
    if name.startswith("06_"):
        charts = images(executed)
        assert charts and all(chart.startswith(b"\x89PNG") for chart in charts), "06_experiment drew no chart"
        if target := os.environ.get("QUADRACODE_NOTEBOOK_FIGURES"):
            for index, chart in enumerate(charts, 1):
                (Path(target) / f"06_experiment{'' if index == 1 else f'_{index}'}.png").write_bytes(chart)
