"""SQL of the event log (``qr_events``), apart from the bus actor so it reads on its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from quadracode_ray.envelope import DEAD_LETTER, Envelope, EnvelopeFilter

_COLUMNS = "seq, id, sender, recipient, kind, thread_id, payload, created_at, attempt"
_INSERT = (
    "INSERT INTO qr_events (id, sender, recipient, kind, thread_id, payload, created_at, attempt) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING seq"
)


SCAN_BATCH = 1_000
SCAN_LIMIT = 20_000
"""Rows one regex-filtered read examines at most; its ``position`` continues the scan."""


@dataclass(frozen=True)
class MatchingPage:
    rows: list[tuple[int, Envelope]]
    position: int | None
    """The seq of the last row read (None when none was): where the next page starts."""
    exhausted: bool
    """True when the log had nothing further in that direction."""


def _where(flt: EnvelopeFilter) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("sender", "recipient", "kind", "thread_id"):
        value = getattr(flt, column)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if flt.kinds is not None:
        clauses.append("kind = ANY(%s)")
        params.append(list(flt.kinds))
    if flt.since is not None:
        clauses.append("created_at >= %s")
        params.append(flt.since)
    if flt.until is not None:
        clauses.append("created_at < %s")
        params.append(flt.until)
    # text_regex is never SQL: Postgres's regex dialect and its text of a jsonb differ from the
    # filter's (RE2 over the compact JSON), so it is applied in Python (select_matching).
    return clauses, params


def _envelope(row: dict[str, Any]) -> Envelope:
    payload = row["payload"]
    if isinstance(payload, (str, bytes)):
        payload = json.loads(payload)
    return Envelope(id=row["id"], sender=row["sender"], recipient=row["recipient"], kind=row["kind"],
                    thread_id=row["thread_id"], payload=payload, created_at=row["created_at"], attempt=row["attempt"])


class EventQueries:
    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def insert(self, envelopes: list[Envelope]) -> list[int | None]:
        """Insert in order in one transaction; the seq of each, None for an id already logged."""
        seqs: list[int | None] = []
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_INSERT, [
                (e.id, e.sender, e.recipient, e.kind, e.thread_id, json.dumps(e.payload), e.created_at, e.attempt)
                for e in envelopes
            ], returning=True)
            while True:
                row = await cur.fetchone()
                seqs.append(row["seq"] if row else None)
                if not cur.nextset():
                    break
        return seqs

    async def last_seq(self) -> int:
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT coalesce(max(seq), 0) AS seq FROM qr_events")).fetchone()
        return int(row["seq"])

    async def select(self, flt: EnvelopeFilter, *, after_seq: int | None = None, before_seq: int | None = None,
                     limit: int = 100, newest_first: bool = False) -> list[tuple[int, Envelope]]:
        clauses, params = _where(flt)
        if after_seq is not None:
            clauses.append("seq > %s")
            params.append(after_seq)
        if before_seq is not None:
            clauses.append("seq < %s")
            params.append(before_seq)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_COLUMNS} FROM qr_events{where} ORDER BY seq {order} LIMIT %s"
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(sql, [*params, limit])).fetchall()
        return [(row["seq"], _envelope(row)) for row in rows]

    async def select_matching(self, flt: EnvelopeFilter, *, after_seq: int | None = None,
                              before_seq: int | None = None, limit: int = 100, newest_first: bool = False,
                              scan_limit: int = SCAN_LIMIT) -> MatchingPage:
        """Up to ``limit`` envelopes matching ``flt`` in seq order, its regex included, reading at
        most ``scan_limit`` rows; ``position`` is the last row read, where the next page starts."""
        found: list[tuple[int, Envelope]] = []
        position, scanned = (before_seq if newest_first else after_seq), 0
        while len(found) < limit and scanned < scan_limit:
            batch = SCAN_BATCH if flt.text_regex is not None else limit - len(found)
            rows = await self.select(flt, after_seq=None if newest_first else position,
                                     before_seq=position if newest_first else None, limit=batch,
                                     newest_first=newest_first)
            consumed = 0
            for seq, envelope in rows:
                position, scanned, consumed = seq, scanned + 1, consumed + 1
                if flt.text_regex is None or flt.matches(envelope):
                    found.append((seq, envelope))
                    if len(found) >= limit:
                        break
            if len(rows) < batch and consumed == len(rows):
                return MatchingPage(found, position, exhausted=True)
        return MatchingPage(found, position, exhausted=False)

    async def count(self, flt: EnvelopeFilter) -> int:
        if flt.text_regex is not None:
            raise ValueError("count takes no text_regex: counting it would read the whole log")
        clauses, params = _where(flt)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        async with self.pool.connection() as conn:
            row = await (await conn.execute(f"SELECT count(*) AS n FROM qr_events{where}", params)).fetchone()
        return int(row["n"])

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {_COLUMNS} FROM qr_events WHERE kind = %s ORDER BY seq DESC LIMIT %s", (DEAD_LETTER, limit)
            )).fetchall()
        out = []
        for row in rows:
            env = _envelope(row)
            out.append({"seq": row["seq"], "recipient": env.sender, "error": env.payload.get("error"),
                        "attempts": env.payload.get("attempts"), "envelope": env.payload.get("envelope"),
                        "logged_at": env.created_at.isoformat()})
        return out

    async def reconcile(self, window_s: float | None) -> list[tuple[int, Envelope]]:
        """Copy accepted deliveries that never reached the log into it (a crash of the bus); the
        rows it logged, by seq (the bus hands them to its live watchers like any flush)."""
        window = "AND d.accepted_at > now() - make_interval(secs => %s)" if window_s is not None else ""
        params: list[Any] = [window_s] if window_s is not None else []
        sql = f"""
            INSERT INTO qr_events (id, sender, recipient, kind, thread_id, payload, created_at, attempt)
            SELECT d.envelope->>'id', d.envelope->>'sender', d.envelope->>'recipient', d.envelope->>'kind',
                   d.envelope->>'thread_id', coalesce(d.envelope->'payload', '{{}}'::jsonb),
                   (d.envelope->>'created_at')::timestamptz, 0
            FROM qr_deliveries d
            WHERE NOT EXISTS (SELECT 1 FROM qr_events e WHERE e.id = d.envelope_id) {window}
            ORDER BY d.accepted_seq
            ON CONFLICT (id) DO NOTHING
            RETURNING {_COLUMNS}
        """
        # Dead letters too: the dead_letter envelope an inbox publishes after the last attempt.
        dead_sql = f"""
            INSERT INTO qr_events (id, sender, recipient, kind, thread_id, payload, created_at, attempt)
            SELECT 'dead:' || d.recipient || ':' || d.envelope_id, d.recipient, 'events', '{DEAD_LETTER}',
                   d.envelope->>'thread_id',
                   jsonb_build_object('envelope', d.envelope, 'attempts', d.attempts, 'error', d.last_error),
                   d.updated_at, 0
            FROM qr_deliveries d
            WHERE d.status = 'dead'
              AND NOT EXISTS (SELECT 1 FROM qr_events e WHERE e.id = 'dead:' || d.recipient || ':' || d.envelope_id)
              {window.replace("accepted_at", "updated_at")}
            ORDER BY d.updated_at
            ON CONFLICT (id) DO NOTHING
            RETURNING {_COLUMNS}
        """
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
            rows += await (await conn.execute(dead_sql, params)).fetchall()
        return sorted(((row["seq"], _envelope(row)) for row in rows), key=lambda logged: logged[0])

    async def prune(self, cutoff: datetime) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("DELETE FROM qr_events WHERE created_at < %s", (cutoff,))
            deleted = cur.rowcount or 0
            await conn.execute("DELETE FROM qr_deliveries WHERE status <> 'pending' AND updated_at < %s", (cutoff,))
        return deleted
