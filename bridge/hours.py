"""Opening hours: when agents take chats. Pure, apart from `load_hours` reading the file.

The schedule is a small YAML file (`HANDOFF_HOURS_FILE`):

    timezone: Europe/Berlin          # an IANA zone (zoneinfo)
    weekly:                          # mon tue wed thu fri sat sun; a day not listed is closed
      mon: "09:00-17:00"
      tue: ["09:00-12:00", "13:00-17:00"]
      fri: "22:00-02:00"             # an end at or before the start runs into the next day
      sat: "00:00-24:00"             # all day
    holidays:                        # closed all day (hours that began the day before end
      - 2026-12-25                   # as usual); a date, or "YYYY-MM-DD" quoted
      - "2027-01-01"

Hours are wall-clock times in the zone, so they follow daylight saving time: "09:00-17:00" is
nine to five local time in summer and in winter. On the night the clocks go forward, an hour
that does not exist is simply never reached; when they go back, the repeated hour counts as
open (or closed) both times, as the wall clock says. A span belongs to the day it starts on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class Span:
    """Open from `start` for `minutes` minutes (possibly past midnight)."""

    start: time
    minutes: int


@dataclass(frozen=True, slots=True)
class OpeningHours:
    zone: ZoneInfo
    weekly: tuple[tuple[Span, ...], ...]  # per weekday, Monday first
    holidays: frozenset[date]

    def is_open(self, epoch_s: float) -> bool:
        """Whether `epoch_s` (seconds since the epoch) falls in the opening hours."""
        local = datetime.fromtimestamp(epoch_s, self.zone).replace(tzinfo=None)
        # A span that began yesterday (e.g. 22:00-02:00) may still be running.
        for day in (local.date(), local.date() - timedelta(days=1)):
            if day in self.holidays:
                continue
            for span in self.weekly[day.weekday()]:
                start = datetime.combine(day, span.start)
                if start <= local < start + timedelta(minutes=span.minutes):
                    return True
        return False


def parse_hours(data: Any) -> OpeningHours:
    """The schedule from its YAML data. Raises ValueError saying what is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError("the opening hours must be a mapping with timezone, weekly, holidays")
    unknown = set(data) - {"timezone", "weekly", "holidays"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(map(str, unknown))}")
    return OpeningHours(
        zone=_zone(data.get("timezone")),
        weekly=_weekly(data.get("weekly") or {}),
        holidays=frozenset(_date(d) for d in data.get("holidays") or []),
    )


def load_hours(path: str | Path) -> OpeningHours:
    """Read and parse the schedule file. Raises ValueError (the file's problem, named)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {type(exc).__name__}") from None
    return parse_hours(data)


def _zone(value: Any) -> ZoneInfo:
    if not isinstance(value, str) or not value:
        raise ValueError("timezone is required (an IANA name such as Europe/Berlin)")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None


def _weekly(value: Any) -> tuple[tuple[Span, ...], ...]:
    if not isinstance(value, Mapping):
        raise ValueError("weekly must map days (mon..sun) to hours")
    unknown = set(map(str, value)) - set(DAYS)
    if unknown:
        raise ValueError(f"unknown day(s) {sorted(unknown)}: use {', '.join(DAYS)}")
    out = []
    for day in DAYS:
        spans = value.get(day) or []
        spans = [spans] if isinstance(spans, str) else spans
        if not isinstance(spans, list):
            raise ValueError(f'{day}: hours must be "HH:MM-HH:MM" or a list of them')
        out.append(tuple(_span(day, s) for s in spans))
    return tuple(out)


def _span(day: str, value: Any) -> Span:
    match = _SPAN.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'{day}: {value!r} is not "HH:MM-HH:MM" (quote it in YAML)')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{day}: {value!r} is not a time of day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    minutes = end - start if end > start else end + 24 * 60 - start
    return Span(time(h1, m1), minutes)


def _date(value: Any) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"holiday {value!r} is not a date (YYYY-MM-DD)") from None
