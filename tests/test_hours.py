"""Opening hours: a pure function of a schedule and an instant (tables), and the file format."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.hours import OpeningHours, load_hours, parse_hours

BERLIN: dict[str, Any] = {
    "timezone": "Europe/Berlin",
    "weekly": {
        "mon": "09:00-17:00",
        "tue": ["09:00-12:00", "13:00-17:00"],
        "fri": "22:00-02:00",
        "sat": "00:00-24:00",
        "sun": "02:00-03:00",
    },
    "holidays": ["2026-12-25", "2027-01-01"],
}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


HOURS = parse_hours(BERLIN)

# (UTC instant, open?) — Berlin is UTC+1 in winter, UTC+2 in summer.
CASES = {
    "monday 9:00 local in winter (08:00 UTC)": ("2026-01-05T08:00", True),
    "monday 8:59 local in winter": ("2026-01-05T07:59", False),
    "monday 16:59 local in winter": ("2026-01-05T15:59", True),
    "monday 17:00 local: closing time is closed": ("2026-01-05T16:00", False),
    "monday 9:00 local in summer (07:00 UTC)": ("2026-07-06T07:00", True),
    "monday 8:00 local in summer (06:00 UTC) is before opening": ("2026-07-06T06:00", False),
    "tuesday lunch break": ("2026-01-06T11:30", False),
    "tuesday afternoon": ("2026-01-06T12:00", True),
    "wednesday: not listed, closed": ("2026-01-07T10:00", False),
    "friday 23:00 local: a span running past midnight": ("2026-01-09T22:00", True),
    "saturday 01:59 local: still friday's span": ("2026-01-10T00:59", True),
    "saturday all day": ("2026-01-10T12:00", True),
    "sunday 00:00 local: saturday's all-day span has ended": ("2026-01-10T23:00", False),
    "christmas (a friday in 2026): closed all day": ("2026-12-25T22:30", False),
    "the day after christmas: the holiday's overnight span does not run on": (
        "2026-12-26T00:30",
        True,  # saturday's own all-day hours
    ),
    "new year's day (a friday): closed": ("2027-01-01T22:00", False),
    "the night the clocks go forward: 01:59 CET, before the span": ("2026-03-29T00:59", False),
    "the night the clocks go forward: 02:00 UTC+1 does not exist; 03:00 CEST is past it": (
        "2026-03-29T01:00",
        False,
    ),
    "the night the clocks go back: 02:30 CEST": ("2026-10-25T00:30", True),
    "the night the clocks go back: 02:30 CET, the repeated hour": ("2026-10-25T01:30", True),
    "the night the clocks go back: 03:00 CET": ("2026-10-25T02:00", False),
    "the sunday before, 02:30 CET": ("2026-10-18T00:30", True),
}


@pytest.mark.parametrize(("instant", "expected"), list(CASES.values()), ids=list(CASES))
def test_is_open(instant: str, expected: bool) -> None:
    assert HOURS.is_open(utc(instant)) is expected


def test_an_empty_week_is_always_closed() -> None:
    closed = parse_hours({"timezone": "UTC", "weekly": {}})
    assert not any(closed.is_open(utc(f"2026-01-0{d}T12:00")) for d in range(1, 8))


def test_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "hours.yml"
    path.write_text(
        "timezone: America/New_York\nweekly:\n  mon: '09:00-17:00'\nholidays:\n  - 2026-01-05\n"
    )
    hours = load_hours(path)
    assert isinstance(hours, OpeningHours)
    assert not hours.is_open(utc("2026-01-05T15:00"))  # the holiday
    assert hours.is_open(utc("2026-01-12T15:00"))  # 10:00 in New York


BAD = {
    "no timezone": {"weekly": {}},
    "unknown timezone": {"timezone": "Mars/Olympus"},
    "unknown day": {"timezone": "UTC", "weekly": {"monday": "09:00-17:00"}},
    "not a span": {"timezone": "UTC", "weekly": {"mon": "9 to 5"}},
    "an unquoted time YAML read as a number": {"timezone": "UTC", "weekly": {"mon": 540}},
    "hour out of range": {"timezone": "UTC", "weekly": {"mon": "09:00-25:00"}},
    "bad holiday": {"timezone": "UTC", "holidays": ["christmas"]},
    "unknown key": {"timezone": "UTC", "weekdays": {}},
    "not a mapping": ["09:00-17:00"],
}


@pytest.mark.parametrize("data", list(BAD.values()), ids=list(BAD))
def test_a_bad_schedule_is_refused_with_a_reason(data: Any) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_hours(data)


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        load_hours(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("timezone: [unclosed\n")
    with pytest.raises(ValueError, match="cannot read"):
        load_hours(broken)
