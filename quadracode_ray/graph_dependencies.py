"""The packages a user's graphs need, from the ``dependencies`` list of the graphs file
(``QUADRACODE_GRAPHS_FILE``, as in ``langgraph.json``): requirement strings
(``"langchain>=1.3"``) and local package folders (``"./my_tools"``, with a ``pyproject.toml``
or ``setup.py``). A folder without one (``"."``, ``"./graph"``) needs nothing: graphs named
by file path load from their files.

``scripts/dev setup`` (and so ``up`` and ``test``) installs them into ``.venv`` after syncing
the locked environment, and that sync is ``--inexact``: it never removes what a user added,
with this list or by hand (``uv pip install --python .venv/bin/python ...``).

``python -m quadracode_ray.graph_dependencies`` prints them, one per line.
"""

from __future__ import annotations

import json
from pathlib import Path

from quadracode_ray.config import Settings
from quadracode_ray.graph_specs import GraphSpecError


def requirements(settings: Settings) -> list[str]:
    """What to install for the graphs file's ``dependencies`` (local folders as absolute paths)."""
    if settings.graphs_file is None:
        return []
    path = Path(settings.graphs_file).expanduser().resolve()
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GraphSpecError(f"graphs file {path}: {exc}") from exc
    dependencies = document.get("dependencies", []) if isinstance(document, dict) else []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise GraphSpecError(f"graphs file {path}: 'dependencies' must be a list of strings")
    out = []
    for dependency in dependencies:
        if dependency.startswith((".", "/", "~")):
            folder = (path.parent / Path(dependency).expanduser()).resolve()
            if not folder.is_dir():
                raise GraphSpecError(f"graphs file {path}: dependency folder {folder} does not exist")
            if (folder / "pyproject.toml").is_file() or (folder / "setup.py").is_file():
                out.append(str(folder))
        elif dependency.strip():
            out.append(dependency.strip())
    return out


if __name__ == "__main__":
    for line in requirements(Settings()):
        print(line)
