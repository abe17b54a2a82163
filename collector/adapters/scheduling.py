"""Schedules as APScheduler 3 triggers: what `collector serve` runs suites on, what
`collector schedule` lists, and the expected interval between runs the alert rules judge
staleness by."""

from __future__ import annotations

from datetime import datetime, timezone

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector.adapters.config import Config, Schedule


def trigger_for(schedule: Schedule) -> BaseTrigger:
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
    return IntervalTrigger(seconds=schedule.interval_s, timezone=schedule.timezone,
                           jitter=schedule.jitter_s or None)


def next_fire_times(config: Config, count: int = 3,
                    now: datetime | None = None) -> dict[str, list[datetime]]:
    """The next `count` run times of every scheduled suite (for `collector schedule`)."""
    start = now or datetime.now(timezone.utc)
    table: dict[str, list[datetime]] = {}
    for suite in config.suites:
        if suite.schedule is None:
            continue
        trigger = trigger_for(suite.schedule)
        times: list[datetime] = []
        previous = None
        current = start
        while len(times) < count:
            try:
                fire = trigger.get_next_fire_time(previous, current)
            except (OverflowError, ValueError):  # past the year 9999: no more run times
                break
            if fire is None:
                break
            times.append(fire)
            previous, current = fire, fire
        table[suite.name] = times
    return table


def schedule_intervals(config: Config) -> dict[str, float]:
    """Expected seconds between runs of each scheduled suite: the interval, or for cron the
    gap between its next two run times (alert rules judge staleness by it)."""
    intervals: dict[str, float] = {}
    for name, times in next_fire_times(config, count=2).items():
        if len(times) == 2:
            intervals[name] = (times[1] - times[0]).total_seconds()
    return intervals
