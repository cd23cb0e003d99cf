"""Prometheus metrics. One registry per service instance, so tests and the sandbox can run
several in one process without clashing."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class CounterByLabel:
    """`counter.labels(value).inc()` for a counter with one label, each child looked up once.

    `labels()` validates and joins its arguments and takes the metric's lock on every call; a
    hot path that counts every request keeps the children instead. Only for label values from
    a bounded set (each is kept for the life of the process, as prometheus-client keeps it)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Counter] = {}

    def inc(self, label: str, amount: int = 1) -> None:
        child = self._children.get(label)
        if child is None:
            child = self._children[label] = self._counter.labels(label)
        child.inc(amount)


@dataclass
class Metrics:
    """Every metric the bridge exports. Label values are bounded (types, reasons, statuses)."""

    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_received = Counter(
            "handoff_events_received",
            "8x8 webhook events received, by eventType",
            ["type"],
            registry=r,
        )
        self.events_duplicate = Counter(
            "handoff_events_duplicate",
            "8x8 events dropped as duplicates (same event id)",
            registry=r,
        )
        self.events_ignored = Counter(
            "handoff_events_ignored",
            "8x8 events acknowledged but not relayed, by kind",
            ["kind"],
            registry=r,
        )
        self.signature_failures = Counter(
            "handoff_signature_failures", "webhook requests refused for their signature", registry=r
        )
        self.webhook_responses = Counter(
            "handoff_webhook_responses",
            "answers of POST /8x8/events, by status",
            ["status"],
            registry=r,
        )
        self.relay_deliveries = Counter(
            "handoff_relay_deliveries",
            "pushes Rasa accepted, by kind (message/intent)",
            ["kind"],
            registry=r,
        )
        self.relay_retries = Counter(
            "handoff_relay_retries", "failed pushes that will be retried", registry=r
        )
        self.relay_skipped = Counter(
            "handoff_relay_already_delivered",
            "pushes skipped because the tracker already had them (after an ambiguous failure)",
            registry=r,
        )
        self.relay_outcomes = Counter(
            "handoff_relay_outcomes",
            "events processed by the relay, by state-machine outcome",
            ["outcome"],
            registry=r,
        )
        self.relay_lag = Histogram(
            "handoff_relay_lag_seconds",
            "from acceptance at the webhook to the event's processing by the relay",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.dead_letters = Counter(
            "handoff_dead_letters",
            "events parked in the dead letters, by reason",
            ["reason"],
            registry=r,
        )
        self.unknown_conversation = Counter(
            "handoff_unknown_conversation_events",
            "events whose conversation never got mapped within the hold time",
            registry=r,
        )
        self.partitions_owned = Gauge(
            "handoff_relay_partitions_owned",
            "relay partitions this process holds the lease of",
            registry=r,
        )

        self._funnel(r)

    def _funnel(self, r: CollectorRegistry) -> None:
        """The handoff funnel, from escalation to the bot taking over again."""
        self.escalations = Counter(
            "handoff_escalations",
            "handoffs opened, by trigger (asked, fallbacks, rule) and kind (new, reopened)",
            ["trigger", "kind"],
            registry=r,
        )
        self.time_to_agent = Histogram(
            "handoff_time_to_agent_seconds",
            "from the escalation to the first agent joining",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=r,
        )
        self.abandoned_waits = Counter(
            "handoff_abandoned_waits",
            "handoffs the user ended while still waiting for an agent",
            registry=r,
        )
        self.transfers = Counter(
            "handoff_transfers", "chats an agent transferred to another queue", registry=r
        )
        self.returns_to_bot = Counter(
            "handoff_returns_to_bot",
            "live handoffs (or escalations) that ended with the bot answering again, by reason",
            ["reason"],
            registry=r,
        )
        self.recovered_messages = Counter(
            "handoff_recovered_messages",
            "agent messages 8x8 gave up on, found in its message list and relayed",
            registry=r,
        )
        self.outbox_retries = Counter(
            "handoff_outbox_retries",
            "user messages (or leaves) that waited in the outbox and failed again",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
