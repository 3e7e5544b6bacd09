"""When a cron is next due: croniter on the cron's timezone (UTC when none), as the official server.

Standard five-field schedules (minute hour day month weekday) and croniter's six-field form
with seconds last (``* * * * * */10``: every ten seconds) are accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class ScheduleError(ValueError):
    """A schedule or timezone that cannot be used; the message says why and shows the format."""


def check_schedule(schedule: str) -> str:
    if not croniter.is_valid(schedule):
        raise ScheduleError(
            f"Invalid cron schedule: '{schedule}'. Use the standard cron format (minute hour "
            "day_of_month month day_of_week), e.g. '*/5 * * * *' for every 5 minutes.")
    return schedule


def check_timezone(timezone: str | None) -> str | None:
    if timezone is None:
        return None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"Invalid timezone: '{timezone}'. Use an IANA name such as 'America/New_York'.") from None
    return timezone


def next_run_date(schedule: str, after: datetime, timezone: str | None = None) -> datetime:
    """The first time strictly after ``after`` that ``schedule`` names, in UTC."""
    base = after.astimezone(ZoneInfo(timezone)) if timezone else after.astimezone(UTC)
    return croniter(check_schedule(schedule), base).get_next(datetime).astimezone(UTC)
