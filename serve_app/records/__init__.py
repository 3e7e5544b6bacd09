"""Postgres access for the API's own records: assistants, threads and runs (owner-scoped)."""

from __future__ import annotations

from typing import Any


def owner_filter(owner: str | None, *, shared_rows: bool = False) -> str:
    """SQL condition scoping a query to the caller (parameter ``%(owner)s``).

    Anonymous callers (auth off) see everything; ``shared_rows`` also shows rows without an
    owner (the system's graph assistants) to authenticated callers.
    """
    if owner is None:
        return "TRUE"
    return "(owner = %(owner)s OR owner IS NULL)" if shared_rows else "owner = %(owner)s"


def page_sql(sort_by: str | None, sort_order: str | None, allowed: set[str], default: str) -> str:
    column = sort_by if sort_by in allowed else default
    order = "ASC" if (sort_order or "desc").lower() == "asc" else "DESC"
    return f' ORDER BY "{column}" {order} LIMIT %(limit)s OFFSET %(offset)s'


def select_fields(row: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    return row if not select else {k: v for k, v in row.items() if k in select}
