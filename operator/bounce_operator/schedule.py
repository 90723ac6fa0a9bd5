"""A mailbox's `scanInterval` as the cron schedule of its scanner CronJob."""

from __future__ import annotations

from bounce_service.durations import parse_duration


class InvalidSchedule(ValueError):
    """The interval has no exact cron equivalent (the CRD's CEL rule refuses such intervals too)."""


def cron_schedule(interval: str) -> str:
    """15m → "*/15 * * * *", 1h → "0 * * * *", 6h → "0 */6 * * *", 24h → "0 0 * * *".

    Cron fields restart at every hour and day, so only steps that divide an hour (in minutes) or a day
    (in hours) fire at an even rhythm; anything else would drift and is refused.
    """
    try:
        seconds = parse_duration(interval).total_seconds()
    except ValueError as exc:
        raise InvalidSchedule(str(exc)) from None
    minutes, leftover = divmod(seconds, 60)
    if leftover or minutes < 1:
        raise InvalidSchedule(f"scanInterval {interval!r} is not a whole number of minutes (at least 1m)")
    minutes = int(minutes)
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, leftover = divmod(minutes, 60)
    if not leftover and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else "0 0 * * *" if hours == 24 else f"0 */{hours} * * *"
    raise InvalidSchedule(
        f"scanInterval {interval!r} must divide an hour (1m..30m) or a day (1h..24h) to be a cron schedule"
    )


def interval_seconds(interval: str) -> int:
    return int(parse_duration(interval).total_seconds())
