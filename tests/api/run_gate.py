"""A gate that keeps an ``echo`` run active until the test releases it (tests/api/graphs.py):
for tests that need a run still running at some point, whatever the machine's speed."""

from __future__ import annotations

import uuid
from pathlib import Path


class RunGate:
    def __init__(self, directory: Path) -> None:
        self.path = directory / f"gate-{uuid.uuid4().hex}"

    def held(self, **echo_input) -> dict:
        """An ``echo`` input whose step waits until :meth:`release`."""
        return {**echo_input, "hold": str(self.path)}

    def release(self) -> None:
        self.path.touch()
