"""The autonomy guardrails an operator set (``qr_guardrails``), read live by the graphs.

``PATCH /system/guardrails`` writes one row per installation (keyed by its actor name prefix);
graphs built with ``settings_guardrails(settings)`` read it at each check, cached for
``CACHE_S``, so a change applies to the next model call or spawn of every run, with no restart.
Without a row (or a database) the settings' ``autonomy_*`` and ``budget_*`` values apply.
The token/cost budgets (per thread and per delegated task) are part of the row: once set
there they replace the settings' in every graph's next check (``graphs.budgets.budget_in_force``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from quadracode_ray.config import Settings
from quadracode_ray.graphs.control import BudgetLimits, Guardrails

log = logging.getLogger(__name__)
CACHE_S = 1.0
BUDGET_FIELDS = ("budget_thread_tokens", "budget_thread_cost_usd", "budget_task_tokens", "budget_task_cost_usd")
_COLUMNS = f"max_iterations, max_hours, max_agents_per_thread, budgets_set, {', '.join(BUDGET_FIELDS)}, " \
           "updated_by, updated_at"


class GuardrailValues(BaseModel):
    """The operator's view of the guardrails (hours, as the settings name them)."""

    model_config = ConfigDict(extra="forbid")
    max_iterations: int = Field(ge=1, le=1_000_000, description="Model calls a thread may make without human input.")
    max_hours: float = Field(gt=0, le=24 * 365, description="Hours a thread may run without human input.")
    max_agents_per_thread: int = Field(ge=0, le=10_000, description="Agents a thread may spawn before it asks.")
    budget_thread_tokens: int | None = Field(default=None, ge=1, le=10**12, description="LLM tokens a thread may "
                                             "spend (its delegated tasks' included) before it asks; null: no limit.")
    budget_thread_cost_usd: float | None = Field(default=None, gt=0, le=1e9, description="US dollars a thread may "
                                                 "spend (priced by the settings' model_prices); null: no limit.")
    budget_task_tokens: int | None = Field(default=None, ge=1, le=10**12, description="LLM tokens one delegated "
                                           "task may spend before its agent asks; null: no limit.")
    budget_task_cost_usd: float | None = Field(default=None, gt=0, le=1e9, description="US dollars one delegated "
                                               "task may spend before its agent asks; null: no limit.")

    def guardrails(self, *, with_budgets: bool = True) -> Guardrails:
        budgets = BudgetLimits(thread_tokens=self.budget_thread_tokens, thread_cost_usd=self.budget_thread_cost_usd,
                               task_tokens=self.budget_task_tokens, task_cost_usd=self.budget_task_cost_usd)
        return Guardrails(max_iterations=self.max_iterations, max_wall_clock_s=self.max_hours * 3600,
                          max_agents_per_thread=self.max_agents_per_thread, budgets=budgets if with_budgets else None)

    @classmethod
    def from_settings(cls, settings: Settings) -> GuardrailValues:
        return cls(max_iterations=settings.autonomy_max_iterations, max_hours=settings.autonomy_max_hours,
                   max_agents_per_thread=settings.autonomy_max_agents_per_thread,
                   budget_thread_tokens=settings.budget_thread_tokens,
                   budget_thread_cost_usd=settings.budget_thread_cost_usd,
                   budget_task_tokens=settings.budget_task_tokens, budget_task_cost_usd=settings.budget_task_cost_usd)


class StoredGuardrails(GuardrailValues):
    source: str = Field(description="'settings' (nothing persisted) or 'persisted'.")
    updated_by: str | None = None
    updated_at: datetime | None = None


async def read_guardrails(conn: psycopg.AsyncConnection, settings: Settings) -> StoredGuardrails:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(f"SELECT {_COLUMNS} FROM qr_guardrails WHERE installation = %s",
                         (settings.actor_name_prefix,))
    row = await cursor.fetchone()
    defaults = GuardrailValues.from_settings(settings).model_dump()
    if row is None:
        return StoredGuardrails(**defaults, source="settings")
    if not row.pop("budgets_set"):  # a row from before budgets were persisted: the settings' apply
        row.update({name: defaults[name] for name in BUDGET_FIELDS})
    return StoredGuardrails(**row, source="persisted")


async def write_guardrails(conn: psycopg.AsyncConnection, settings: Settings, values: GuardrailValues,
                           updated_by: str | None) -> StoredGuardrails:
    budgets = ", ".join(BUDGET_FIELDS)
    await conn.execute(
        "INSERT INTO qr_guardrails (installation, max_iterations, max_hours, max_agents_per_thread, budgets_set, "
        f"{budgets}, updated_by) VALUES (%s, %s, %s, %s, true, %s, %s, %s, %s, %s) ON CONFLICT (installation) "
        "DO UPDATE SET max_iterations = excluded.max_iterations, max_hours = excluded.max_hours, "
        "max_agents_per_thread = excluded.max_agents_per_thread, budgets_set = true, "
        + "".join(f"{name} = excluded.{name}, " for name in BUDGET_FIELDS)
        + "updated_by = excluded.updated_by, updated_at = now()",
        (settings.actor_name_prefix, values.max_iterations, values.max_hours, values.max_agents_per_thread,
         *(getattr(values, name) for name in BUDGET_FIELDS), updated_by))
    return await read_guardrails(conn, settings)


class PersistedGuardrails:
    """A GuardrailSource (quadracode_ray.graphs.control) reading ``qr_guardrails``; when the
    database does not answer it keeps the last values it read (the settings' at first)."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._last = Guardrails.from_settings(settings)
        self._read_at: float | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_settings": self._settings, "_last": self._last, "_read_at": None}

    async def current(self) -> Guardrails:
        now = time.monotonic()
        if self._read_at is not None and now - self._read_at < CACHE_S:
            return self._last
        try:
            async with await psycopg.AsyncConnection.connect(self._settings.database_url, autocommit=True,
                                                             connect_timeout=5) as conn:
                stored = await read_guardrails(conn, self._settings)
                # Without a row the graph's own budgets (from the same settings, or given) apply.
                self._last = stored.guardrails(with_budgets=stored.source == "persisted")
        except psycopg.Error as exc:
            log.warning("guardrails: reading qr_guardrails failed (%s); keeping the last values", exc)
        self._read_at = now
        return self._last


def settings_guardrails(settings: Settings) -> Guardrails | PersistedGuardrails:
    """What a graph built from ``settings`` checks: the persisted guardrails when there is a
    database, else the settings' values."""
    return PersistedGuardrails(settings) if settings.database_url else Guardrails.from_settings(settings)
