"""The Settings tab's guardrail form, without Gradio: which fields it shows, what a Save sends
(``PATCH /system/guardrails`` with only the fields changed since the last load or save), and the
status lines it writes under the form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RailField:
    name: str
    label: str
    step: float
    integer: bool
    clearable: bool = False  # a budget: blank is "no limit" (sent as null); a guardrail left blank is kept


FIELDS = [
    RailField("max_iterations", "Max model calls per thread without human input", 1, True),
    RailField("max_hours", "Max hours per thread without human input", 0.1, False),
    RailField("max_agents_per_thread", "Max agents a thread may spawn", 1, True),
    RailField("budget_thread_tokens", "Thread budget: tokens (blank = no limit)", 1000, True, True),
    RailField("budget_thread_cost_usd", "Thread budget: US dollars (blank = no limit)", 0.01, False, True),
    RailField("budget_task_tokens", "Delegated task budget: tokens (blank = no limit)", 1000, True, True),
    RailField("budget_task_cost_usd", "Delegated task budget: US dollars (blank = no limit)", 0.01, False, True),
]


def _normal(field: RailField, value: Any) -> Any:
    if value is None or value == "":
        return None
    number = float(value)
    return int(number) if field.integer and number.is_integer() else number


def field_values(rails: dict[str, Any]) -> list[Any]:
    """The form's values for ``GET /system/guardrails``'s answer, in ``FIELDS`` order."""
    return [_normal(field, rails.get(field.name)) for field in FIELDS]


def changes(loaded: dict[str, Any] | None, shown: list[Any]) -> dict[str, Any]:
    """What a Save sends: each field whose value differs from the one last loaded or saved; a
    blank budget is null (no limit), a blank guardrail is left as it is."""
    loaded = loaded or {}
    changed: dict[str, Any] = {}
    for field, value in zip(FIELDS, shown, strict=True):
        value = _normal(field, value)
        if value is None and not field.clearable:
            continue
        if value != _normal(field, loaded.get(field.name)):
            changed[field.name] = value
    return changed


def _shown(value: Any) -> str:
    return "no limit" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def saved_note(changed: dict[str, Any]) -> str:
    return "**✓ Saved:** " + ", ".join(f"{name}={_shown(value)}" for name, value in changed.items())


def failed_note(reason: str) -> str:
    return f"**✗ Not saved:** {reason}"


def loaded_note(rails: dict[str, Any]) -> str:
    if rails.get("source") != "persisted":
        return "Loaded: the installation's settings (nothing saved from here yet)."
    by = f" by {rails['updated_by']}" if rails.get("updated_by") else ""
    at = f" at {str(rails['updated_at'])[:19].replace('T', ' ')} UTC" if rails.get("updated_at") else ""
    return f"Loaded: last saved{by}{at}."
