"""Embedded Postgres, versioned migrations, pools and LangGraph's tables, on a real server."""

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres.aio import AsyncPostgresStore

from quadracode_ray.config import Settings
from quadracode_ray.persistence import (
    EmbeddedPostgres,
    MigrationError,
    applied_migrations,
    apply_migrations,
    open_async_pool,
    prepare_database,
)
from quadracode_ray.persistence.migrations import Migration, discover
from quadracode_ray.persistence.pool import AsyncConnectionPool
from tests.polling import eventually


def test_migrated_database_has_core_tables_and_ledger(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        applied = applied_migrations(conn)
        assert ("core", 1, "initial") in applied
        tables = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"qr_schema_migrations", "qr_system_starts", "qr_installation", "checkpoints", "store"} <= tables


def test_applying_again_changes_nothing(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = applied_migrations(conn)
        assert apply_migrations(conn) == []
        assert applied_migrations(conn) == before
        assert conn.execute("SELECT count(*) FROM qr_installation").fetchone()[0] == 1


def test_new_migration_applies_once_in_order(database_url: str) -> None:
    extra = [Migration("zz_test", 1, "first", "CREATE TABLE zz_one (id int)"),
             Migration("zz_test", 2, "second", "ALTER TABLE zz_one ADD COLUMN name text")]
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert [m.name for m in apply_migrations(conn, discover() + extra)] == ["first", "second"]
        assert apply_migrations(conn, discover() + extra) == []
        conn.execute("INSERT INTO zz_one (id, name) VALUES (1, 'x')")


def test_edited_applied_migration_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        apply_migrations(conn, [Migration("zz_edit", 1, "a", "CREATE TABLE zz_edit (id int)")])
        with pytest.raises(MigrationError, match="changed after it was applied"):
            apply_migrations(conn, [Migration("zz_edit", 1, "a", "CREATE TABLE zz_edit (id bigint)")])


def test_failed_migration_leaves_nothing_behind(database_url: str) -> None:
    broken = [Migration("zz_broken", 1, "half", "CREATE TABLE zz_half (id int); SELECT no_such_function()")]
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            apply_migrations(conn, broken)
        assert conn.execute("SELECT to_regclass('zz_half')").fetchone()[0] is None
        assert ("zz_broken", 1, "half") not in applied_migrations(conn)


def test_concurrent_migrators_apply_each_migration_once(database_url: str) -> None:
    migrations = discover() + [Migration("zz_race", 1, "only", "CREATE TABLE zz_race (id int)")]
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                apply_migrations(conn, migrations)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        count = conn.execute("SELECT count(*) FROM qr_schema_migrations WHERE component = 'zz_race'").fetchone()[0]
    assert count == 1


def test_connection_inside_a_transaction_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(MigrationError, match="idle connection"):
            apply_migrations(conn)


def test_migration_folder_rules(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "core" / "0003_c.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="without gaps"):
        discover(tmp_path)
    (tmp_path / "core" / "0003_c.sql").unlink()
    (tmp_path / "core" / "2_bad.sql").write_text("SELECT 1")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(tmp_path)


async def test_pool_serves_langgraph_checkpointer_and_store(database_url: str) -> None:
    pool = await open_async_pool(database_url, min_size=1, max_size=4)
    try:
        saver = AsyncPostgresSaver(pool)
        config = {"configurable": {"thread_id": "t-foundation", "checkpoint_ns": ""}}
        checkpoint = {"v": 1, "id": "1ef4f797-8335-6428-8001-8a1503f9b875", "ts": "2024-01-01T00:00:00+00:00",
                      "channel_values": {"x": 1}, "channel_versions": {"x": 1}, "versions_seen": {},
                      "pending_sends": []}
        await saver.aput(config, checkpoint, {"source": "input", "step": 0, "writes": {}}, {"x": 1})
        loaded = await saver.aget_tuple({"configurable": {"thread_id": "t-foundation"}})
        assert loaded is not None and loaded.checkpoint["channel_values"] == {"x": 1}

        store = AsyncPostgresStore(pool)
        await store.aput(("users", "u1"), "prefs", {"theme": "dark"})
        item = await store.aget(("users", "u1"), "prefs")
        assert item is not None and item.value == {"theme": "dark"}
    finally:
        await pool.close()


async def test_pool_checks_a_connection_by_query_only_when_the_server_spoke(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A healthy idle connection is handed out without a round trip; one whose backend the
    server ended is checked, found broken and replaced: the caller never sees the broken one."""
    checked: list[int] = []
    real_check = AsyncConnectionPool.check_connection

    async def counting_check(conn) -> None:
        checked.append(1)
        await real_check(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(counting_check))
    pool = await open_async_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            first_pid = (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"]
        async with pool.connection() as conn:
            assert (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"] == first_pid
        assert checked == [], "a healthy idle connection was checked with a query"

        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))

            async def backend_gone() -> bool:
                row = await (await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                                 (first_pid,))).fetchone()
                return row[0] == 0
            await eventually(backend_gone, timeout=30, what="the terminated backend to exit")
        async with pool.connection() as conn:
            pid = (await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone())["pid"]
        assert pid != first_pid and checked, (pid, first_pid, checked)
    finally:
        await pool.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh folder with a short path: the embedded server's unix socket lives in it."""
    path = Path(tempfile.mkdtemp(prefix="qr-emb-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_server_keeps_data_across_stop_and_start(short_dir: Path) -> None:
    pgdata = short_dir / "pg"
    server = EmbeddedPostgres(pgdata)
    try:
        url = server.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('survives')")
        assert server.is_running()
        assert server.stop() is True
        assert not server.is_running()
        assert server.stop() is False  # stopping a stopped server is not an error
        url = server.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone()[0] == "survives"
    finally:
        server.stop()


def test_prepare_database_starts_embedded_server_when_no_url(short_dir: Path) -> None:
    settings = Settings(_env_file=None, data_dir=short_dir)
    try:
        first = prepare_database(settings, record_start="127.0.0.1:1")
        second = prepare_database(settings, record_start="127.0.0.1:1")
        assert first.embedded and first.url == second.url
        assert "core/0001_initial" in first.applied and second.applied == []
        with psycopg.connect(first.url) as conn:
            assert conn.execute("SELECT count(*) FROM qr_system_starts").fetchone()[0] == 2
    finally:
        EmbeddedPostgres(settings.embedded_pgdata).stop()
