"""The graphs both servers run in the comparison test: the API tests' echo and chat graphs, unchanged.

The official dev server loads this file by path, so the repository root is put on sys.path
first; our server registers the same file through its ``graphs`` setting.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.api.graphs import chat  # noqa: E402
from tests.api.graphs import echo as graph  # noqa: E402

__all__ = ["chat", "graph"]
