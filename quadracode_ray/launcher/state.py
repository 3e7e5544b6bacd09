"""What ``up`` started, kept in a small JSON file so ``down`` and ``status`` can find it."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class RayState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    started_by_us: bool
    pid: int | None = None
    address: str
    dashboard_url: str | None = None


class PostgresState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedded: bool
    pgdata: str | None = None
    url: str


class SystemState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ray: RayState | None = None
    postgres: PostgresState | None = None
    api_url: str | None = None


class StateFile:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.path = state_dir / "state.json"

    def read(self) -> SystemState:
        if not self.path.exists():
            return SystemState()
        return SystemState.model_validate_json(self.path.read_text())

    def write(self, state: SystemState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.model_dump(), indent=2))
        os.replace(tmp, self.path)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise ``up``/``down`` of one data folder across processes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
