"""Migration api/0007: every run gets its place in its thread's tape (``tape_ordinal``), the
runs already there in the order they were created, and new runs number on from the thread's
count, whichever way they are queued and whatever was deleted since."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from quadracode_ray.persistence.migrations import apply_migrations, discover
from tests.conftest import new_database


@pytest.fixture
def blank_database(pg_admin_url: str) -> Iterator[str]:
    with new_database(pg_admin_url, "t_tape_ordinal", template=None) as url:
        yield url


def _insert_run(conn: psycopg.Connection, thread_id: str, created_at: str | None = None) -> str:
    run_id = str(uuid.uuid4())
    conn.execute("INSERT INTO qr_runs (run_id, thread_id, assistant_id, created_at) VALUES (%s, %s, %s, "
                 "coalesce(%s::timestamptz, now()))", (run_id, thread_id, str(uuid.uuid4()), created_at))
    return run_id


def test_runs_keep_their_place_in_the_tape_across_the_migration_and_deletions(blank_database: str) -> None:
    before = [m for m in discover() if (m.component, m.version) != ("api", 7)]
    assert len(before) == len(discover()) - 1
    with psycopg.connect(blank_database) as conn:
        apply_migrations(conn, before)
    busy, idle = str(uuid.uuid4()), str(uuid.uuid4())
    with psycopg.connect(blank_database, autocommit=True) as conn:
        conn.execute("INSERT INTO qr_threads (thread_id) VALUES (%s), (%s)", (busy, idle))
        # created out of order on purpose: the tape's order is the runs' creation time
        later = _insert_run(conn, busy, "2026-01-02")
        earlier = _insert_run(conn, busy, "2026-01-01")
    with psycopg.connect(blank_database) as conn:
        applied = apply_migrations(conn)
    assert [(m.component, m.version) for m in applied] == [("api", 7)]
    with psycopg.connect(blank_database, autocommit=True) as conn:
        ordinals = dict(conn.execute("SELECT run_id::text, tape_ordinal FROM qr_runs").fetchall())
        assert ordinals == {earlier: 1, later: 2}
        # A deleted run (a rollback) leaves its number taken; a thread's numbers are its own.
        conn.execute("DELETE FROM qr_runs WHERE run_id = %s", (later,))
        third = _insert_run(conn, busy)
        first_of_idle = _insert_run(conn, idle)
        ordinals = dict(conn.execute("SELECT run_id::text, tape_ordinal FROM qr_runs").fetchall())
        assert ordinals == {earlier: 1, third: 3, first_of_idle: 1}
        counts = dict(conn.execute("SELECT thread_id::text, runs_created FROM qr_threads").fetchall())
        assert counts == {busy: 3, idle: 1}
        # A run on no thread is refused by the foreign key, as before (the count is not hit).
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            _insert_run(conn, str(uuid.uuid4()))
