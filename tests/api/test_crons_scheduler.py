"""The cron scheduler against real Postgres: due crons fire once each, even with rival schedulers.

The fire function here records calls instead of making runs (runs are covered over HTTP in
test_crons.py); what is under test is claiming, advancing and failure handling.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from quadracode_ray.persistence import open_async_pool
from serve_app.crons import repository
from serve_app.crons.models import CronCreate
from serve_app.crons.schedule import ScheduleError, check_schedule, check_timezone, next_run_date
from serve_app.crons.scheduler import CronScheduler, CronTargetGone


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_async_pool(database_url, min_size=1, max_size=8, name="cron-tests")
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM qr_crons")
    yield pool
    await pool.close()


async def make_cron(pool: AsyncConnectionPool, *, schedule: str = "0 0 1 1 *", due_in_s: float = -1.0,
                    **fields) -> dict:
    body = CronCreate(assistant_id="agent", schedule=schedule, input={"n": 1}, **fields)
    row = await repository.insert(pool, body, assistant_id=str(uuid.uuid4()), thread_id=None, owner=None)
    async with pool.connection() as conn:
        await conn.execute("UPDATE qr_crons SET next_run_date = now() + make_interval(secs => %s) "
                           "WHERE cron_id = %s", (due_in_s, row["cron_id"]))
    return row


async def state_of(pool: AsyncConnectionPool, cron_id) -> dict | None:
    async with pool.connection() as conn:
        return await (await conn.execute(
            "SELECT next_run_date, last_run_id, last_error, last_fired_at FROM qr_crons WHERE cron_id = %s",
            (cron_id,))).fetchone()


# --- pure schedule logic ------------------------------------------------------------------------
def test_next_run_date_follows_the_timezone() -> None:
    after = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
    assert next_run_date("0 9 * * *", after) == datetime(2026, 1, 16, 9, 0, tzinfo=UTC)
    # 09:00 in New York is 14:00 UTC in January: still ahead today.
    assert next_run_date("0 9 * * *", after, "America/New_York") == datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
    assert next_run_date("* * * * * */10", after) == datetime(2026, 1, 15, 12, 30, 10, tzinfo=UTC)


@pytest.mark.parametrize("schedule", ["", "every minute", "61 * * * *", "* * * *"])
def test_bad_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(ScheduleError, match="Invalid cron schedule"):
        check_schedule(schedule)


def test_bad_timezone_is_refused() -> None:
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(ScheduleError, match="Invalid timezone"):
        check_timezone("Mars/Olympus")


# --- the scheduler on Postgres ------------------------------------------------------------------
async def test_rival_schedulers_fire_each_due_cron_exactly_once(pool: AsyncConnectionPool, database_url) -> None:
    crons = [await make_cron(pool) for _ in range(25)]
    future = await make_cron(pool, due_in_s=3600)
    fired: Counter[str] = Counter()

    async def record(cron: dict) -> str:
        fired[str(cron["cron_id"])] += 1
        await asyncio.sleep(0)  # let rivals interleave
        return str(uuid.uuid4())

    pools = [await open_async_pool(database_url, min_size=1, max_size=3, name=f"rival-{i}") for i in range(3)]
    try:
        schedulers = [CronScheduler(lambda p=p: _ready(p), record, batch_size=4) for p in pools]
        counts = await asyncio.gather(*(s.tick() for s in schedulers))
    finally:
        for p in pools:
            await p.close()
    assert sum(counts) == 25
    assert fired == Counter({str(c["cron_id"]): 1 for c in crons})
    assert str(future["cron_id"]) not in fired
    for cron in crons:
        state = await state_of(pool, cron["cron_id"])
        assert state["next_run_date"] > datetime.now(UTC)
        assert state["last_run_id"] is not None and state["last_error"] is None


async def _ready(pool: AsyncConnectionPool) -> AsyncConnectionPool:
    return pool


async def test_disabled_and_ended_crons_do_not_fire(pool: AsyncConnectionPool) -> None:
    await make_cron(pool, enabled=False)
    await make_cron(pool, end_time=datetime.now(UTC) - timedelta(minutes=5))
    calls: list[dict] = []

    async def record(cron: dict) -> str:
        calls.append(cron)
        return str(uuid.uuid4())

    assert await CronScheduler(lambda: _ready(pool), record).tick() == 0
    assert calls == []


async def test_a_failing_fire_is_recorded_and_the_others_still_fire(pool: AsyncConnectionPool) -> None:
    bad = await make_cron(pool, metadata={"role": "bad"})
    good = await make_cron(pool, metadata={"role": "good"})

    async def fire(cron: dict) -> str:
        if cron["metadata"]["role"] == "bad":
            raise RuntimeError("executor unavailable")
        return str(uuid.uuid4())

    assert await CronScheduler(lambda: _ready(pool), fire).tick() == 2
    bad_state, good_state = await state_of(pool, bad["cron_id"]), await state_of(pool, good["cron_id"])
    assert bad_state["last_error"] == "RuntimeError: executor unavailable"
    assert bad_state["next_run_date"] > datetime.now(UTC)  # moves on rather than firing in a hot loop
    assert good_state["last_error"] is None and good_state["last_run_id"] is not None


async def test_a_cron_whose_target_is_gone_is_deleted(pool: AsyncConnectionPool) -> None:
    orphan = await make_cron(pool)

    async def fire(cron: dict) -> str:
        raise CronTargetGone("Thread not found")

    await CronScheduler(lambda: _ready(pool), fire).tick()
    assert await state_of(pool, orphan["cron_id"]) is None


async def test_running_scheduler_fires_on_schedule_and_wakes_for_new_crons(pool: AsyncConnectionPool) -> None:
    fires: list[str] = []
    woken = asyncio.Event()

    async def record(cron: dict) -> str:
        fires.append(str(cron["cron_id"]))
        woken.set()
        return str(uuid.uuid4())

    # A long poll interval: only the wake-up can make it look again in time.
    scheduler = CronScheduler(lambda: _ready(pool), record, poll_interval_s=300)
    scheduler.start()
    try:
        every_second = await make_cron(pool, schedule="* * * * * *", due_in_s=3600)
        scheduler.wake()
        async with pool.connection() as conn:
            await conn.execute("UPDATE qr_crons SET next_run_date = now() WHERE cron_id = %s",
                               (every_second["cron_id"],))
        scheduler.wake()
        await asyncio.wait_for(woken.wait(), timeout=20)
        # From now on it is due every second: the scheduler sleeps until then, unprompted.
        deadline = asyncio.get_running_loop().time() + 20
        while fires.count(str(every_second["cron_id"])) < 3:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(fires)} fires"
            woken.clear()
            await asyncio.wait_for(woken.wait(), timeout=20)
    finally:
        await scheduler.stop()
