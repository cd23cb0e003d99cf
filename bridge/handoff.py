"""The handoff state machine: one sender's handoff, driven by 8x8 events and Rasa actions.

Pure: no I/O, no logging, no clock reads. `on_event` and `on_action` take the stored `Handoff`
and one input and return a `Step`: the new `Handoff`, the effects the relay must carry out (as
data), and a short `outcome` label for logs and metrics (every label is in `OUTCOMES`).

When an input changes nothing, the returned `Step.handoff` is the very record passed in (equal,
`changed_ms` untouched), so the caller can skip the write. Both 8x8 API families reach this
module as the same `EventKind`s (`bridge/eightbyeight/events.py`).

Times. `now_ms` is the bridge's clock, passed in. `since_ms` and `changed_ms` are bridge
times. `transfer_ms` and `left_ms` are 8x8's own event timestamps (the bridge's clock only when
an event has none): the transfer window measures the gap between two 8x8 events, which the
relay's backlog or retries must not stretch or shrink. The stale check compares an event's
timestamp with `since_ms` minus a tolerance for the skew between the two clocks.

Ordering rules (8x8 documents neither order nor uniqueness, spec §5.1.8, §6.2-6.3):
- An event for another conversation, or older than the current handoff, is ignored.
- A TRANSFER within the window of the agent's leave, in either order, makes the leave
  non-final. In TRANSFERRING, AGENT_LEFT and `idle` are never final: only a new agent's join
  (or the user ending the chat) leaves that state.
- An agent's words before their join imply the join.
- A timer (`TimerFired`) is an input like an 8x8 event, delivered through the same ordered
  partition stream, so it can never overtake (or be overtaken by) the event it races. It names
  the handoff (`since_ms`) and the arming (`due_ms`) it was armed for: one re-armed, cleared, or
  armed for an earlier handoff is stale and ignored. A queue timeout therefore loses to an agent's
  join that was accepted first, and a join accepted after the timeout finds the handoff ended.
  A stale arming of the live handoff re-arms the live arming of its kind (see `on_timer`).
- A repeated input never repeats a bot notification: a second join of the same agent, a second
  QUEUED for the same queue, a second leave, a second TRANSFER are no-ops. A repeated agent
  message is relayed again (8x8 gives it no id the state could remember; the relay dedupes by
  8x8 event id before this).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import lru_cache
from typing import Final, assert_never

from bridge.eightbyeight.events import RELAYED_KINDS, Attachment, ChatEvent, EventKind
from bridge.ids import ConversationId

# What the machine has rules for: what the door relays, plus typing (dropped at the door for
# now, as Rasa cannot show it; the machine is ready for the day it is relayed).
_HANDLED: Final = RELAYED_KINDS | {EventKind.TYPING}

# The intents the bridge triggers in Rasa (public API: bridge-contract.md, "The Rasa project").
INTENT_HANDOFF_QUEUED: Final = "EXTERNAL_handoff_queued"
INTENT_AGENT_JOINED: Final = "EXTERNAL_agent_joined"
INTENT_AGENT_LEFT: Final = "EXTERNAL_agent_left"
# Not emitted here: a failed escalation is told to the user by the action that attempted it.
INTENT_HANDOFF_FAILED: Final = "EXTERNAL_handoff_failed"
# Timers (`TimerKind`): what the user is told when one fires.
INTENT_QUEUE_TIMEOUT: Final = "EXTERNAL_handoff_queue_timeout"  # no agent came: back to the bot
INTENT_QUEUE_REMINDER: Final = "EXTERNAL_handoff_queue_reminder"  # still waiting in the queue
INTENT_AGENT_SILENT: Final = "EXTERNAL_handoff_agent_silent"  # the agent is quiet: still connected
INTENT_USER_SILENT: Final = "EXTERNAL_handoff_user_silent"  # the user stopped answering: closed

# Said to the agent (as the bot) before the bridge closes a chat the user stopped answering.
USER_SILENT_NOTE: Final = "The customer has not answered for a while, so this chat is now closed."

# Entity names carried by the intents above.
ENTITY_QUEUE: Final = "queue"  # entity names the example domain declares (domain.yml)
ENTITY_AGENT: Final = "agent"

OUTCOMES: Final = frozenset(
    {
        # 8x8 events
        "relayed",  # an agent message went to the user
        "implied_join",  # an agent message arrived before the join: join notified, then relayed
        "queued",  # the user is told they wait in a queue
        "agent_joined",  # the user is told an agent (a new one) joined
        "agent_left",  # the agent left for good: the bot takes over again
        "user_left",  # 8x8 echoed the user's leave: ended, without telling the user again
        "transfer_started",  # TRANSFER while with an agent: waiting for the next agent
        "transfer_not_final",  # a leave (or idle) that a transfer explains
        "transfer_resumed",  # TRANSFER shortly after a final leave: the handoff is live again
        "typing",  # an agent typing indicator (effect-free for now)
        "noted",  # the record learnt something (queue, agent name, transfer time); no effect
        "no_effect",  # a conversation-state update that changes nothing
        "duplicate",  # a repeat of something already applied
        "ignored_no_handoff",  # no live handoff (BOT, FAILED), or an action with nothing to do
        "ignored_after_end",  # a late or stray event after the handoff ended
        "ignored_other_conversation",  # not the conversation of the current handoff
        "ignored_stale",  # older than the current handoff (a previous interaction's)
        "ignored_other_agent",  # a previous agent's leave, after the current one joined
        "ignored_empty",  # an agent message with neither text nor attachments
        "ignored_unexpected",  # a relayed kind that means nothing in this state
        "ignored_kind",  # a kind the relay never handles (echo, verify, other, unknown)
        # Rasa actions
        "escalated",  # a new handoff on a new conversation
        "reopened",  # a new handoff on the sender's existing conversation
        "failed",  # the escalation could not be made
        "ended",  # the user ended the chat
        "ignored_active",  # an escalation failure reported while a handoff is live
        "user_spoke",  # the user's turn went to the agent (silence timers measure from it)
        # timers
        "queue_timeout",  # no agent joined in time: the user is told, the interaction ends
        "queue_reminder",  # the user is reminded they still wait (the next one is armed)
        "agent_silent",  # the agent has not answered the user for a while: the user is told
        "user_silent",  # the user has not answered the agent for a while: the chat is closed
        "timer_rearmed",  # a silence timer fired early (someone spoke since): armed again
        "ignored_timer",  # a stale timer (re-armed, cleared, or another handoff's)
    }
)


class TimerKind(StrEnum):
    QUEUE_TIMEOUT = "queue_timeout"  # HANDOFF_QUEUE_TIMEOUT_S after the escalation
    QUEUE_REMINDER = "queue_reminder"  # every HANDOFF_QUEUE_REMINDER_S while waiting
    AGENT_SILENCE = "agent_silence"  # HANDOFF_AGENT_SILENCE_S after the user's unanswered turn
    USER_SILENCE = "user_silence"  # HANDOFF_USER_SILENCE_S after the agent's unanswered word


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer came due (how the store keeps it: bridge/store/timers.py)."""

    kind: TimerKind
    conversation_id: ConversationId
    since_ms: int  # the handoff it was armed for
    due_ms: int  # the arming it is (the record keeps the live one per kind)


class State(StrEnum):
    BOT = "bot"  # no handoff yet: the bot answers
    REQUESTED = "requested"  # 8x8 accepted the (re)opened conversation; nothing heard since
    QUEUED = "queued"  # waiting in an 8x8 queue for an agent
    WITH_AGENT = "with_agent"  # an agent has the chat; their messages go to the user
    TRANSFERRING = "transferring"  # the agent moved the chat on; another agent's join follows
    ENDED = "ended"  # the agent left or the user ended the chat; the bot answers again
    FAILED = "failed"  # the escalation could not be made; the bot answers


_ACTIVE: Final = frozenset({State.REQUESTED, State.QUEUED, State.WITH_AGENT, State.TRANSFERRING})

# Stored values to members and back by dict lookup: calling the enum searches its machinery,
# and `.value` is a descriptor call (every record read and written converts a state and timers).
_STATES: Final[dict[str, State]] = {s.value: s for s in State}
_STATE_VALUES: Final[dict[State, str]] = {s: s.value for s in State}
_TIMER_KINDS: Final[dict[str, TimerKind]] = {k.value: k for k in TimerKind}
_TIMER_VALUES: Final[dict[TimerKind, str]] = {k: k.value for k in TimerKind}


class _Keep(Enum):
    """`Handoff.replace`'s default: the field keeps its value (None is a value of several)."""

    KEEP = 0


_KEEP: Final = _Keep.KEEP


@dataclass(frozen=True, slots=True)
class Handoff:
    """A sender's handoff, as stored: flat string fields, absent when `None`.

    `queue` is the queue the user was last told they wait in, during the current wait: `None`
    not told yet; `""` told, queue unknown; else the queue's id (its name when 8x8 gave no id).
    It tells a re-sent QUEUED from a move to another queue, and lets a transfer notify once.
    (A field beyond the brief's list: without it "unless the queue changed" is undecidable.)
    """

    state: State = State.BOT
    conversation_id: ConversationId | None = None
    agent_name: str | None = None
    agent_id: str | None = None
    since_ms: int = 0  # when the current handoff (escalation or reopen) began
    changed_ms: int = 0  # when the record last changed
    transfer_ms: int | None = None  # when the last TRANSFER happened (8x8 time)
    left_ms: int | None = None  # when the agent left for good (8x8 time): a late TRANSFER revives
    queue: str | None = None  # see the class docstring
    agent_ms: int | None = None  # when the agent last joined or wrote (bridge time)
    user_ms: int | None = None  # when the user's last turn went to the agent (bridge time)
    timers: tuple[tuple[TimerKind, int], ...] = ()  # the one live arming per kind: its due time

    def due(self, kind: TimerKind) -> int | None:
        return dict(self.timers).get(kind)

    def with_timer(self, kind: TimerKind, due_ms: int | None) -> Handoff:
        """The record with `kind` armed for `due_ms` (None: cleared)."""
        kept = {k: v for k, v in self.timers if k != kind}
        if due_ms is not None:
            kept[kind] = due_ms
        return self.replace(timers=tuple(sorted(kept.items())))

    def replace(
        self, *, state: State | _Keep = _KEEP,
        conversation_id: ConversationId | None | _Keep = _KEEP,
        agent_name: str | None | _Keep = _KEEP, agent_id: str | None | _Keep = _KEEP,
        since_ms: int | _Keep = _KEEP, changed_ms: int | _Keep = _KEEP,
        transfer_ms: int | None | _Keep = _KEEP, left_ms: int | None | _Keep = _KEEP,
        queue: str | None | _Keep = _KEEP, agent_ms: int | None | _Keep = _KEEP,
        user_ms: int | None | _Keep = _KEEP,
        timers: tuple[tuple[TimerKind, int], ...] | _Keep = _KEEP,
    ) -> Handoff:  # fmt: skip
        """A copy with the given fields changed: `dataclasses.replace`, spelt out for this class
        (the generic one inspects every field on every call; the state machine copies a record
        a few times per step)."""
        return Handoff(
            self.state if state is _KEEP else state,
            self.conversation_id if conversation_id is _KEEP else conversation_id,
            self.agent_name if agent_name is _KEEP else agent_name,
            self.agent_id if agent_id is _KEEP else agent_id,
            self.since_ms if since_ms is _KEEP else since_ms,
            self.changed_ms if changed_ms is _KEEP else changed_ms,
            self.transfer_ms if transfer_ms is _KEEP else transfer_ms,
            self.left_ms if left_ms is _KEEP else left_ms,
            self.queue if queue is _KEEP else queue,
            self.agent_ms if agent_ms is _KEEP else agent_ms,
            self.user_ms if user_ms is _KEEP else user_ms,
            self.timers if timers is _KEEP else timers,
        )

    @property
    def active(self) -> bool:
        """True while an agent or a queue owns the conversation (`handoff_active`)."""
        return self.state in _ACTIVE

    def to_fields(self) -> dict[str, str]:
        """The record as a flat string hash; `None` fields are left out."""
        # Field by field, in this order (the hash's field order), without an intermediate dict.
        out = {"state": _STATE_VALUES[self.state]}
        if self.conversation_id is not None:
            out["conversation_id"] = self.conversation_id
        if self.agent_name is not None:
            out["agent_name"] = self.agent_name
        if self.agent_id is not None:
            out["agent_id"] = self.agent_id
        out["since_ms"] = str(self.since_ms)
        out["changed_ms"] = str(self.changed_ms)
        if self.transfer_ms is not None:
            out["transfer_ms"] = str(self.transfer_ms)
        if self.left_ms is not None:
            out["left_ms"] = str(self.left_ms)
        if self.queue is not None:
            out["queue"] = self.queue
        if self.agent_ms is not None:
            out["agent_ms"] = str(self.agent_ms)
        if self.user_ms is not None:
            out["user_ms"] = str(self.user_ms)
        if self.timers:
            out["timers"] = ";".join([f"{_TIMER_VALUES[k]}={v}" for k, v in self.timers])
        return out

    @classmethod
    def from_fields(cls, d: Mapping[str, str]) -> Handoff:
        """Read a stored record. Never raises: unknown fields are ignored, a missing or unreadable
        field takes its default, an unknown state reads as BOT."""
        get = d.get
        # Positional, in field order; a conversation id is stored as its plain string.
        return cls(
            _STATES.get(get("state") or "", State.BOT),
            get("conversation_id"),  # type: ignore[arg-type]
            get("agent_name"),
            get("agent_id"),
            _int(get("since_ms")) or 0,
            _int(get("changed_ms")) or 0,
            _int(get("transfer_ms")),
            _int(get("left_ms")),
            get("queue"),
            _int(get("agent_ms")),
            _int(get("user_ms")),
            _timers(get("timers")),
        )


@lru_cache(maxsize=4096)
def _timers(value: str | None) -> tuple[tuple[TimerKind, int], ...]:
    """Cached: a conversation's record keeps its timers across most of its steps (an agent's
    messages change none), so each reading of the same string parses it once."""
    if not value:
        return ()
    out: dict[TimerKind, int] = {}
    for part in value.split(";"):
        name, _, due = part.partition("=")
        kind = _TIMER_KINDS.get(name)
        number = _int(due)
        if kind is not None and number is not None:
            out[kind] = number
    return tuple(sorted(out.items()))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# --- inputs from the Rasa actions ---


@dataclass(frozen=True)
class Escalated:
    """The action created (or, `reopened`, posted on) the sender's 8x8 conversation."""

    conversation_id: ConversationId
    reopened: bool


@dataclass(frozen=True)
class EscalationFailed:
    """The action could not escalate; it tells the user itself."""

    reason: str


@dataclass(frozen=True)
class UserEnded:
    """The user ended the chat with the agent (the action made the customer/user leave)."""


@dataclass(frozen=True)
class UserSpoke:
    """The user's turn went to the agent."""


ActionInput = Escalated | EscalationFailed | UserEnded | UserSpoke


# --- effects, as data ---


@dataclass(frozen=True)
class SayToUser:
    """Put an agent's message in front of the user (a Rasa `bot` event)."""

    text: str | None
    agent_name: str | None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class NotifyBot:
    """Trigger one of the `INTENT_*` intents in Rasa, with its entities."""

    intent: str
    entities: Mapping[str, str]


@dataclass(frozen=True)
class ArmTimer:
    """Store `timer`, to come back through the partition stream when it is due."""

    timer: TimerFired


@dataclass(frozen=True)
class DisarmTimer:
    """Forget `timer`, an arming the record no longer names (the wait it measured is over): it
    leaves the timer set instead of firing stale later. Only while it is still at
    `timer.due_ms`: a later arming of the same kind and handoff moved it, and is kept."""

    timer: TimerFired


# What a step does to the timer set, in order: an arming (ZADD), or a disarming.
TimerChange = TimerFired | DisarmTimer


@dataclass(frozen=True)
class EndInteraction:
    """End the 8x8 interaction (the customer/user leaves), after saying `note` to the agent."""

    note: str | None = None


# A future effect (e.g. a typing indicator) is one more class here; the relay dispatches on type.
Effect = SayToUser | NotifyBot | ArmTimer | DisarmTimer | EndInteraction


@dataclass(frozen=True)
class Step:
    handoff: Handoff
    effects: tuple[Effect, ...]
    outcome: str  # one of OUTCOMES


@dataclass(frozen=True)
class Timing:
    transfer_window_ms: int = 30_000  # a leave and a TRANSFER this close belong together
    stale_tolerance_ms: int = 5_000  # clock skew allowed between 8x8 and the bridge
    # The handoff's timers (0: off). Settings HANDOFF_QUEUE_TIMEOUT_S etc., in ms.
    queue_timeout_ms: int = 0
    queue_reminder_ms: int = 0
    agent_silence_ms: int = 0
    user_silence_ms: int = 0

    def after(self, kind: TimerKind) -> int:
        return {
            TimerKind.QUEUE_TIMEOUT: self.queue_timeout_ms,
            TimerKind.QUEUE_REMINDER: self.queue_reminder_ms,
            TimerKind.AGENT_SILENCE: self.agent_silence_ms,
            TimerKind.USER_SILENCE: self.user_silence_ms,
        }[kind]


DEFAULT_TIMING: Final = Timing()

Handler = Callable[[Handoff, ChatEvent, int, Timing], Step]


# --- 8x8 events ---


def on_event(h: Handoff, event: ChatEvent, now_ms: int, timing: Timing = DEFAULT_TIMING) -> Step:
    """Apply one 8x8 event to a sender's handoff."""
    if event.kind not in _HANDLED:
        return _keep(h, "ignored_kind")
    if h.active:
        if not _ours(h, event):
            return _keep(h, "ignored_other_conversation")
        if _is_stale(h, event, timing):
            return _keep(h, "ignored_stale")
    handler = _HANDLERS[h.state].get(event.kind, _DEFAULTS[h.state])
    return handler(h, event, now_ms, timing)


def _ours(h: Handoff, e: ChatEvent) -> bool:
    return e.conversation_id is not None and e.conversation_id == h.conversation_id


def _is_stale(h: Handoff, e: ChatEvent, t: Timing) -> bool:
    """From a previous interaction (e.g. a retried AGENT_LEFT arriving after a reopen)."""
    return e.timestamp_ms is not None and e.timestamp_ms < h.since_ms - t.stale_tolerance_ms


def _at(e: ChatEvent, now_ms: int) -> int:
    return e.timestamp_ms if e.timestamp_ms is not None else now_ms


def _keep(h: Handoff, outcome: str, *effects: Effect) -> Step:
    return Step(h, effects, outcome)


def _step(h: Handoff, new: Handoff, now_ms: int, outcome: str, *effects: Effect) -> Step:
    """`new`, stamped `changed_ms=now_ms` if it differs from `h`; else `h` itself. The armings
    `new` no longer names are disarmed, after the step's own effects (a push's marker is its
    effect's index: those stay put)."""
    if new is h or new == h:
        return Step(h, effects, outcome)
    return Step(new.replace(changed_ms=now_ms), (*effects, *_disarmed(h, new)), outcome)


def _disarmed(h: Handoff, new: Handoff) -> tuple[DisarmTimer, ...]:
    """The armings of `h` that `new` does not keep: each is its own member of the timer set (its
    kind and handoff: bridge/store/timers.py), which an arming of `new` would otherwise move."""
    cid = h.conversation_id
    if not h.timers or cid is None:
        return ()
    same = new.conversation_id == cid and new.since_ms == h.since_ms
    kept = dict(new.timers) if same else {}
    return tuple(
        DisarmTimer(TimerFired(kind, cid, h.since_ms, due))
        for kind, due in h.timers
        if kind not in kept
    )


def _entity(name: str, value: str | None) -> dict[str, str]:
    return {name: value} if value else {}


def _same_agent(h: Handoff, agent_id: str | None, agent_name: str | None) -> bool:
    """Compared by id, else by name; when either side is unknown, assume the same agent."""
    if agent_id and h.agent_id:
        return agent_id == h.agent_id
    if agent_name and h.agent_name:
        return agent_name == h.agent_name
    return True


def _say(h: Handoff, e: ChatEvent) -> SayToUser | None:
    """The user-visible part of an agent message; None when it has none (blank text only)."""
    text = e.text if e.text and e.text.strip() else None
    if text is None and not e.attachments:
        return None
    own_name = h.agent_name if _same_agent(h, e.agent_id, e.agent_name) else None
    return SayToUser(text, e.agent_name or own_name, e.attachments)


# Inactive states: BOT and FAILED never had an agent; ENDED only revives for a late TRANSFER.


def _no_handoff(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "ignored_no_handoff")


def _after_end(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "ignored_after_end")


def _transfer_after_end(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """8x8 may send AGENT_LEFT before TRANSFER: a TRANSFER within the window of a final leave
    (not of the user's own end) makes the handoff live again and tells the user, through the
    bot, that they are being transferred (the leave had cleared `handoff_active`)."""
    at = _at(e, now_ms)
    if (
        h.left_ms is None
        or not _ours(h, e)
        or _is_stale(h, e, t)
        or abs(at - h.left_ms) > t.transfer_window_ms
    ):
        return _keep(h, "ignored_after_end")
    new = h.replace(state=State.TRANSFERRING, transfer_ms=at, left_ms=None, queue="")
    return _step(h, new, now_ms, "transfer_resumed", NotifyBot(INTENT_HANDOFF_QUEUED, {}))


# Every active state.


def _unexpected(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "ignored_unexpected")


def _no_effect(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "no_effect")


def _duplicate(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "duplicate")


def _typing(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """Counted, effect-free for now. A typing effect (a new `Effect` class built from
    `e.typing` and the agent) would be returned here; the state never changes."""
    return _keep(h, "typing")


def _user_left(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """Gateway's echo of the user's leave, which only the bridge makes (`UserEnded`). The action
    has told the user, so nothing is said; normally the action's `UserEnded` got here first and
    this arrives in ENDED and is ignored. `left_ms` stays empty: a late TRANSFER cannot revive a
    chat the user ended."""
    return _step(h, h.replace(state=State.ENDED, left_ms=None), now_ms, "user_left")


def _on_queued(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """REQUESTED/QUEUED move to QUEUED; TRANSFERRING stays (a late AGENT_LEFT of the old agent
    must stay non-final until the next join). The user is told when not yet told during this
    wait, or when the queue changed; a queue name learnt later is only recorded."""
    key = e.queue_id or e.queue_name or ""
    tell = h.queue is None or (key != "" and h.queue != "" and key != h.queue)
    state = State.TRANSFERRING if h.state is State.TRANSFERRING else State.QUEUED
    new = h.replace(state=state, queue=key or h.queue or "")
    if tell:
        notify = NotifyBot(INTENT_HANDOFF_QUEUED, _entity(ENTITY_QUEUE, e.queue_name))
        return _step(h, new, now_ms, "queued", notify)
    return _step(h, new, now_ms, "noted" if new != h else "duplicate")


def _joined(h: Handoff, agent_id: str | None, agent_name: str | None, at: int) -> Handoff:
    """An agent has the chat. A TRANSFER that happened before this join (by 8x8's clock) is
    over: this agent's own leave will be final."""
    transfer_ms = h.transfer_ms if h.transfer_ms is not None and h.transfer_ms > at else None
    return h.replace(
        state=State.WITH_AGENT,
        agent_id=agent_id,
        agent_name=agent_name,
        left_ms=None,
        transfer_ms=transfer_ms,
    )


def _arm(h: Handoff, kind: TimerKind, due_ms: int) -> tuple[Handoff, ArmTimer]:
    """`kind` armed for `due_ms`: recorded as its live arming, and the effect that stores it."""
    assert h.conversation_id is not None  # only live handoffs arm timers
    timer = TimerFired(kind, h.conversation_id, h.since_ms, due_ms)
    return h.with_timer(kind, due_ms), ArmTimer(timer)


def _with_agent_timers(h: Handoff, now_ms: int, t: Timing) -> tuple[Handoff, tuple[Effect, ...]]:
    """An agent (new, or back after a transfer) has the chat: the waiting timers are over, the
    silence timers start afresh from now (their earlier armings become stale)."""
    new = h.replace(agent_ms=now_ms, user_ms=None)
    new = new.with_timer(TimerKind.QUEUE_TIMEOUT, None).with_timer(TimerKind.QUEUE_REMINDER, None)
    effects: list[Effect] = []
    for kind in (TimerKind.AGENT_SILENCE, TimerKind.USER_SILENCE):
        new = new.with_timer(kind, None)
        if t.after(kind) > 0:
            new, arm = _arm(new, kind, now_ms + t.after(kind))
            effects.append(arm)
    return new, tuple(effects)


def _join(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    new, timers = _with_agent_timers(
        _joined(h, e.agent_id, e.agent_name, _at(e, now_ms)), now_ms, t
    )
    notify = NotifyBot(INTENT_AGENT_JOINED, _entity(ENTITY_AGENT, e.agent_name))
    return _step(h, new, now_ms, "agent_joined", notify, *timers)


def _fill_agent(h: Handoff, agent_id: str | None, agent_name: str | None) -> Handoff:
    """The same agent, with an id or name learnt from a later event."""
    agent_id, agent_name = h.agent_id or agent_id, h.agent_name or agent_name
    if agent_id == h.agent_id and agent_name == h.agent_name:
        return h  # nothing learnt (an agent's every message): no copy
    return h.replace(agent_id=agent_id, agent_name=agent_name)


# REQUESTED and QUEUED.


def _note_transfer(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """A TRANSFER before the join it follows (reordered): remember it, so the coming leave of
    that agent is recognised as non-final."""
    return _step(h, h.replace(transfer_ms=_at(e, now_ms)), now_ms, "noted")


def _message_before_join(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """An agent's words before their join (reordered): the join is implied and notified first,
    so the bot's state is right before the words reach the user."""
    say = _say(h, e)
    if say is None:
        return _keep(h, "ignored_empty")
    new, timers = _with_agent_timers(
        _joined(h, e.agent_id, e.agent_name, _at(e, now_ms)), now_ms, t
    )
    notify = NotifyBot(INTENT_AGENT_JOINED, _entity(ENTITY_AGENT, e.agent_name))
    return _step(h, new, now_ms, "implied_join", notify, say, *timers)


# WITH_AGENT.


def _join_with_agent(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """The same agent again is a duplicate (details learnt are kept); another agent replaces
    the current one and is announced."""
    if _same_agent(h, e.agent_id, e.agent_name):
        new = _fill_agent(h, e.agent_id, e.agent_name)
        return _step(h, new, now_ms, "noted" if new != h else "duplicate")
    return _join(h, e, now_ms, t)


def _message_with_agent(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """Relayed, whoever wrote it (a supervisor may write too); the agent's name is learnt."""
    say = _say(h, e)
    if say is None:
        return _keep(h, "ignored_empty")
    same = _same_agent(h, e.agent_id, e.agent_name)
    new = _fill_agent(h, e.agent_id, e.agent_name) if same else h
    return _step(h, _agent_spoke(new, now_ms, t), now_ms, "relayed", say)


# The silence timers count in minutes: an agent's further words within a hundredth of the
# user-silence timer (the one that counts from them), from a second to a minute, need not be
# written down. A burst of messages costs one record write, not one each; the chat is closed for
# the user's silence at most that much early (9 s of HANDOFF_USER_SILENCE_S's default 15 min).
AGENT_WORDS_GRAIN_MIN_MS: Final = 1_000
AGENT_WORDS_GRAIN_MAX_MS: Final = 60_000
AGENT_WORDS_GRAIN_PER_SILENCE: Final = 100


def agent_words_grain_ms(t: Timing) -> int:
    grain = t.user_silence_ms // AGENT_WORDS_GRAIN_PER_SILENCE
    return min(AGENT_WORDS_GRAIN_MAX_MS, max(AGENT_WORDS_GRAIN_MIN_MS, grain))


def _agent_spoke(h: Handoff, now_ms: int, t: Timing) -> Handoff:
    """Note when the agent last spoke, for the silence timers (only when one is on). Always
    when it answers the user, so "who spoke last" stays exact."""
    if t.agent_silence_ms <= 0 and t.user_silence_ms <= 0:
        return h
    fresh = h.agent_ms is not None and now_ms - h.agent_ms < agent_words_grain_ms(t)
    return h if fresh and not _user_spoke_last(h) else h.replace(agent_ms=now_ms)


def _start_transfer(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """Nothing is said yet: the QUEUED of the target queue (or the new agent's join) will."""
    new = h.replace(state=State.TRANSFERRING, transfer_ms=_at(e, now_ms), queue=None)
    return _step(h, new, now_ms, "transfer_started")


def _agent_gone(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """The agent left (or the conversation went idle): final, unless a TRANSFER happened within
    the window (e.g. the TRANSFER arrived before the join that preceded this leave)."""
    at = _at(e, now_ms)
    if h.transfer_ms is not None and abs(at - h.transfer_ms) <= t.transfer_window_ms:
        new = h.replace(state=State.TRANSFERRING, queue=None)
        return _step(h, new, now_ms, "transfer_not_final")
    notify = NotifyBot(INTENT_AGENT_LEFT, _entity(ENTITY_AGENT, h.agent_name))
    return _step(h, h.replace(state=State.ENDED, left_ms=at), now_ms, "agent_left", notify)


def _left_with_agent(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """A leave naming another agent is an earlier agent's (e.g. the transferring agent's leave
    arriving after the new agent's join): it does not end the current agent's chat."""
    if not _same_agent(h, e.agent_id, e.agent_name):
        return _keep(h, "ignored_other_agent")
    return _agent_gone(h, e, now_ms, t)


def _state_with_agent(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """Gateway `idle` means no live interaction: as a final leave. created/active: nothing."""
    if e.state == "idle":
        return _agent_gone(h, e, now_ms, t)
    return _keep(h, "no_effect")


# TRANSFERRING.


def _not_final(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "transfer_not_final")


def _state_transferring(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    return _keep(h, "transfer_not_final" if e.state == "idle" else "no_effect")


def _join_after_transfer(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """The next agent: announced. The same agent, when the user heard nothing of the transfer
    (no QUEUED, no leave), resumes silently: for the user nothing changed."""
    if h.queue is None and _same_agent(h, e.agent_id, e.agent_name):
        new = _fill_agent(h.replace(state=State.WITH_AGENT), e.agent_id, e.agent_name)
        new, timers = _with_agent_timers(new, now_ms, t)
        return _step(h, new, now_ms, "noted", *timers)
    return _join(h, e, now_ms, t)


def _message_in_transfer(h: Handoff, e: ChatEvent, now_ms: int, t: Timing) -> Step:
    """The old agent's last words are relayed; a message from a known different agent is the
    next agent's, before their join: the join is implied."""
    if _same_agent(h, e.agent_id, e.agent_name):
        say = _say(h, e)
        return _keep(h, "relayed", say) if say else _keep(h, "ignored_empty")
    return _message_before_join(h, e, now_ms, t)


_ACTIVE_COMMON: Final[dict[EventKind, Handler]] = {
    EventKind.USER_LEFT: _user_left,
    EventKind.TYPING: _typing,
}
_WAITING: Final[dict[EventKind, Handler]] = {
    **_ACTIVE_COMMON,
    EventKind.CONVERSATION_STATE: _no_effect,  # idle included: see below
    EventKind.QUEUED: _on_queued,
    EventKind.AGENT_JOINED: _join,
    EventKind.AGENT_MESSAGE: _message_before_join,
    EventKind.TRANSFER: _note_transfer,
    # AGENT_LEFT (no agent has joined) and `idle` while waiting are not taken as the end: both
    # can be a previous interaction's, delivered late but inside the stale tolerance after a
    # quick reopen, and wrongly ending would drop the next agent's join. The user can end.
}
_HANDLERS: Final[dict[State, dict[EventKind, Handler]]] = {
    State.BOT: {},
    State.FAILED: {},
    State.ENDED: {EventKind.TRANSFER: _transfer_after_end},
    State.REQUESTED: _WAITING,
    State.QUEUED: _WAITING,
    State.WITH_AGENT: {
        **_ACTIVE_COMMON,
        EventKind.CONVERSATION_STATE: _state_with_agent,
        EventKind.AGENT_JOINED: _join_with_agent,
        EventKind.AGENT_MESSAGE: _message_with_agent,
        EventKind.AGENT_LEFT: _left_with_agent,
        EventKind.TRANSFER: _start_transfer,
    },
    State.TRANSFERRING: {
        **_ACTIVE_COMMON,
        EventKind.CONVERSATION_STATE: _state_transferring,
        EventKind.QUEUED: _on_queued,
        EventKind.AGENT_JOINED: _join_after_transfer,
        EventKind.AGENT_MESSAGE: _message_in_transfer,
        EventKind.AGENT_LEFT: _not_final,
        EventKind.TRANSFER: _duplicate,
    },
}
_DEFAULTS: Final[dict[State, Handler]] = {
    State.BOT: _no_handoff,
    State.FAILED: _no_handoff,
    State.ENDED: _after_end,
    State.REQUESTED: _unexpected,
    State.QUEUED: _unexpected,
    State.WITH_AGENT: _unexpected,
    State.TRANSFERRING: _unexpected,
}


# --- Rasa actions ---


def on_action(
    h: Handoff, action: ActionInput, now_ms: int, timing: Timing = DEFAULT_TIMING
) -> Step:
    """Apply what a Rasa handoff action did."""
    match action:
        case Escalated():
            return _escalated(h, action, now_ms, timing)
        case EscalationFailed():
            return _escalation_failed(h, now_ms)
        case UserEnded():
            return _user_ended(h, now_ms)
        case UserSpoke():
            return _user_spoke(h, now_ms)
        case _:
            assert_never(action)


def _user_spoke(h: Handoff, now_ms: int) -> Step:
    if not h.active:
        return _keep(h, "ignored_no_handoff")
    return _step(h, h.replace(user_ms=now_ms), now_ms, "user_spoke")


def _escalated(h: Handoff, action: Escalated, now_ms: int, t: Timing) -> Step:
    """A fresh handoff (agent, transfer, leave and queue forgotten). While a handoff is live, the
    same conversation again is a duplicate; another conversation replaces it (the action found
    the old one gone and created a new one, and its events are then ignored)."""
    if h.active and h.conversation_id == action.conversation_id:
        return _keep(h, "duplicate")
    new = Handoff(
        state=State.REQUESTED,
        conversation_id=action.conversation_id,
        since_ms=now_ms,
        changed_ms=now_ms,
    )
    arms: list[Effect] = []
    for kind in (TimerKind.QUEUE_TIMEOUT, TimerKind.QUEUE_REMINDER):
        if t.after(kind) > 0:
            new, arm = _arm(new, kind, now_ms + t.after(kind))
            arms.append(arm)
    outcome = "reopened" if action.reopened else "escalated"
    return Step(new, (*arms, *_disarmed(h, new)), outcome)  # the handoff it replaces


def _escalation_failed(h: Handoff, now_ms: int) -> Step:
    """No notification: the action tells the user. A live handoff is never ended by it."""
    if h.active:
        return _keep(h, "ignored_active")
    if h.state is State.FAILED:
        return _keep(h, "duplicate")
    return _step(h, h.replace(state=State.FAILED), now_ms, "failed")


def _user_ended(h: Handoff, now_ms: int) -> Step:
    """No notification: the action tells the user and clears the slot itself."""
    if not h.active:
        return _keep(h, "ignored_no_handoff")
    return _step(h, h.replace(state=State.ENDED, left_ms=None), now_ms, "ended")


# --- timers ---


def on_timer(h: Handoff, timer: TimerFired, now_ms: int, timing: Timing = DEFAULT_TIMING) -> Step:
    """Apply a timer that came due. Only the live arming of the live handoff counts."""
    if not h.active or timer.conversation_id != h.conversation_id or timer.since_ms != h.since_ms:
        return _keep(h, "ignored_timer")
    live = h.due(timer.kind)
    if live != timer.due_ms:
        return _keep(h, "ignored_timer", *_armed_again(h, timer.kind, live))
    step = _on_live_timer(h, timer, now_ms, timing)
    # The arming that fired left the timer set as it fired (`Store.fire_timers`).
    gone = DisarmTimer(timer)
    if gone in step.effects:
        return Step(step.handoff, tuple(e for e in step.effects if e != gone), step.outcome)
    return step


def _on_live_timer(h: Handoff, timer: TimerFired, now_ms: int, timing: Timing) -> Step:
    match timer.kind:
        case TimerKind.QUEUE_TIMEOUT:
            return _queue_timeout(h, now_ms)
        case TimerKind.QUEUE_REMINDER:
            return _queue_reminder(h, now_ms, timing)
        case TimerKind.AGENT_SILENCE:
            return _agent_silence(h, now_ms, timing)
        case TimerKind.USER_SILENCE:
            return _user_silence(h, now_ms, timing)
        case _:
            assert_never(timer.kind)


def _armed_again(h: Handoff, kind: TimerKind, due_ms: int | None) -> tuple[Effect, ...]:
    """A stale arming of the live handoff fired while the record names another one of its kind
    live: that one is armed again. The store keeps one arming per kind and handoff (arming
    moves it), so the stale one may have fired in the live one's place: a re-arming stored
    before a record write that then failed or lost a race. Arming it again moves nothing when
    it is still armed."""
    if due_ms is None:
        return ()
    return (_arm(h, kind, due_ms)[1],)


_WAITING_STATES: Final = frozenset({State.REQUESTED, State.QUEUED})


def _queue_timeout(h: Handoff, now_ms: int) -> Step:
    if h.state not in _WAITING_STATES:
        return _keep(h, "ignored_timer")
    new = h.replace(state=State.ENDED, left_ms=None, timers=())
    notify = NotifyBot(INTENT_QUEUE_TIMEOUT, {})
    return _step(h, new, now_ms, "queue_timeout", notify, EndInteraction())


def queue_reminder(h: Handoff) -> NotifyBot:
    """What the user is reminded of while waiting. The one place that decides it, so that the
    reminder can carry more about the wait (its entities fill the bot's response)."""
    return NotifyBot(INTENT_QUEUE_REMINDER, {})


def _queue_reminder(h: Handoff, now_ms: int, t: Timing) -> Step:
    """One reminder, and the next one armed an interval from now (never two in one interval,
    however late this one fired)."""
    if h.state not in _WAITING_STATES:
        return _keep(h, "ignored_timer")
    new = h.with_timer(TimerKind.QUEUE_REMINDER, None)
    effects: tuple[Effect, ...] = ()
    if t.queue_reminder_ms > 0:
        new, arm = _arm(new, TimerKind.QUEUE_REMINDER, now_ms + t.queue_reminder_ms)
        effects = (arm,)
    return _step(h, new, now_ms, "queue_reminder", queue_reminder(h), *effects)


def _user_spoke_last(h: Handoff) -> bool:
    return h.user_ms is not None and h.user_ms >= (h.agent_ms or 0)


def _rearm(
    h: Handoff, kind: TimerKind, due_ms: int, now_ms: int, outcome: str, *effects: Effect
) -> Step:
    new, arm = _arm(h, kind, due_ms)
    return _step(h, new, now_ms, outcome, *effects, arm)


def _agent_silence(h: Handoff, now_ms: int, t: Timing) -> Step:
    """The user's turn has waited `agent_silence_ms` for the agent: the user is told they are
    still connected, again every interval while it lasts. Armed for good while with an agent:
    when the agent spoke last there is nothing to wait for yet, so it looks again later."""
    after = t.agent_silence_ms
    if h.state is not State.WITH_AGENT or after <= 0:
        return _keep(h, "ignored_timer")
    if not _user_spoke_last(h):
        return _rearm(h, TimerKind.AGENT_SILENCE, now_ms + after, now_ms, "timer_rearmed")
    assert h.user_ms is not None
    if now_ms - h.user_ms < after:
        return _rearm(h, TimerKind.AGENT_SILENCE, h.user_ms + after, now_ms, "timer_rearmed")
    notify = NotifyBot(INTENT_AGENT_SILENT, _entity(ENTITY_AGENT, h.agent_name))
    return _rearm(h, TimerKind.AGENT_SILENCE, now_ms + after, now_ms, "agent_silent", notify)


def _user_silence(h: Handoff, now_ms: int, t: Timing) -> Step:
    """The agent's last word has waited `user_silence_ms` for the user: the chat is closed on
    both sides (a note to the agent, the user told, the interaction ended)."""
    after = t.user_silence_ms
    if h.state is not State.WITH_AGENT or after <= 0:
        return _keep(h, "ignored_timer")
    if _user_spoke_last(h) or h.agent_ms is None:
        return _rearm(h, TimerKind.USER_SILENCE, now_ms + after, now_ms, "timer_rearmed")
    if now_ms - h.agent_ms < after:
        return _rearm(h, TimerKind.USER_SILENCE, h.agent_ms + after, now_ms, "timer_rearmed")
    new = h.replace(state=State.ENDED, left_ms=None, timers=())
    notify = NotifyBot(INTENT_USER_SILENT, _entity(ENTITY_AGENT, h.agent_name))
    end = EndInteraction(note=USER_SILENT_NOTE)
    return _step(h, new, now_ms, "user_silent", notify, end)
