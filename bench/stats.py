"""Pure helpers of the benchmark runner: percentiles, median and spread, and the check that
every event arrived once and in order."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank: a value that was actually observed."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and range of one figure over several runs."""
    if not values:
        raise ValueError("no values")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def event_text(sender: str, seq: int) -> str:
    """The text an event carries: it names its conversation and its place in it."""
    return f"{sender}/{seq}"


def parse_text(text: str) -> tuple[str, int] | None:
    sender, _, seq = text.rpartition("/")
    return (sender, int(seq)) if sender and seq.isdigit() else None


@dataclass(frozen=True)
class Integrity:
    lost: int
    duplicated: int
    reordered: int
    unexpected: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.unexpected)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_integrity(expected: Iterable[str], arrived: Sequence[tuple[str, str]]) -> Integrity:
    """Compare the texts sent with what the stand-in received, as (sender, text) in arrival
    order. Reordered counts arrivals that came after a later event of the same sender."""
    wanted = set(expected)
    seen = Counter(text for _, text in arrived)
    highest: dict[str, int] = {}
    reordered = unexpected = 0
    for sender, text in arrived:
        parsed = parse_text(text)
        if text not in wanted or parsed is None or parsed[0] != sender:
            unexpected += 1
            continue
        if seen[text] > 1 and parsed[1] <= highest.get(sender, -1):
            continue  # a repeat is counted as duplicated, not reordered
        if parsed[1] < highest.get(sender, -1):
            reordered += 1
        highest[sender] = max(highest.get(sender, -1), parsed[1])
    return Integrity(
        lost=len(wanted - seen.keys()),
        duplicated=sum(n - 1 for text, n in seen.items() if text in wanted),
        reordered=reordered,
        unexpected=unexpected,
    )
