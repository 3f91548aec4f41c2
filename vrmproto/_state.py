"""The relationship state machine: everything that moves a state lives in this one table (§7).

A relationship (one thread between one customer key and one vendor key) is in one
:class:`State`. A message is an *event* — its type, except that a ``terms.reject`` carrying a
counter-offer is the event ``terms.counter`` — sent by one :class:`Role`. ``TRANSITIONS`` maps
``(state, sender role, event)`` to the next state; anything not in the table is refused with
``illegal_transition`` (§7-1). Both sides run the same table, so their states agree whenever
their histories do. ``problem`` messages are outside the machine (§5.6.2).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from vrmproto._errors import StateError


class Role(enum.Enum):
    """Which side of a relationship a party is (§7-2); the value is the wire spelling."""

    CUSTOMER = "customer"
    VENDOR = "vendor"

    # A member equals only itself (Enum defines no __eq__): the identity hash agrees with that,
    # in C, where Enum's own hashes the name in Python — every message looks up a
    # (state, role, type) row of the table (#12).
    __hash__ = object.__hash__

    @property
    def other(self) -> Role:
        return Role.VENDOR if self is Role.CUSTOMER else Role.CUSTOMER


class State(enum.Enum):
    """A relationship's state (§7.1); the value is the wire spelling."""

    NONE = "none"
    OFFERED = "offered"
    AGREED = "agreed"
    REJECTED = "rejected"
    COUNTERED = "countered"
    INTENT_OPEN = "intent_open"
    INTENT_ANSWERED = "intent_answered"
    INTENT_DECLINED = "intent_declined"
    ENDED = "ended"

    __hash__ = object.__hash__  # (as Role's)


C, V = Role.CUSTOMER, Role.VENDOR
S = State

_NEGOTIATING = (S.OFFERED, S.AGREED, S.REJECTED, S.COUNTERED)
_INTENT = (S.INTENT_OPEN, S.INTENT_ANSWERED, S.INTENT_DECLINED)


def _each(states: Iterable[State], roles: Iterable[Role], event: str, to: State | None) -> dict[
    tuple[State, Role, str], State
]:
    """Rows for every (state, role); ``to=None`` means "stays in the same state"."""
    return {(s, r, event): (s if to is None else to) for s in states for r in roles}


#: The whole machine (spec §7.2, table 4). (state, sender, event) -> next state.
TRANSITIONS: Mapping[tuple[State, Role, str], State] = {
    # negotiating terms (§5.2)
    (S.NONE, C, "terms.offer"): S.OFFERED,
    (S.REJECTED, C, "terms.offer"): S.OFFERED,
    (S.COUNTERED, C, "terms.offer"): S.OFFERED,
    (S.OFFERED, V, "terms.accept"): S.AGREED,
    (S.OFFERED, V, "terms.reject"): S.REJECTED,
    (S.OFFERED, V, "terms.counter"): S.COUNTERED,
    # under an agreement (§5.3)
    (S.AGREED, C, "data.share"): S.AGREED,
    (S.AGREED, C, "data.withdraw"): S.AGREED,
    (S.AGREED, V, "data.erased"): S.AGREED,
    (S.AGREED, C, "data.request"): S.AGREED,
    (S.AGREED, V, "data.return"): S.AGREED,
    (S.AGREED, C, "address.update"): S.AGREED,
    # intentcasting (§5.4)
    (S.NONE, C, "intentcast"): S.INTENT_OPEN,
    (S.INTENT_OPEN, V, "intent.offer"): S.INTENT_ANSWERED,
    (S.INTENT_ANSWERED, V, "intent.offer"): S.INTENT_ANSWERED,
    (S.INTENT_OPEN, V, "intent.decline"): S.INTENT_DECLINED,
    # control (§5.6): receipts anywhere after the first message, rotation while negotiating
    # or agreed, and an end from any live state
    **_each([s for s in State if s is not S.NONE], (C, V), "receipt", None),
    **_each(_NEGOTIATING, (C, V), "key.rotate", None),
    **_each((*_NEGOTIATING, *_INTENT), (C, V), "relationship.end", S.ENDED),
}


def event_of(msg_type: str, body: Any) -> str:
    """The state-machine event a message is (§7.1): its type, or ``terms.counter``."""
    if msg_type == "terms.reject" and getattr(body, "counter", None):
        return "terms.counter"
    return msg_type


def next_state(state: State, sender: Role, event: str) -> State:
    """The state after ``sender`` sends ``event`` in ``state``; StateError if not allowed (§7-1)."""
    try:
        return TRANSITIONS[(state, sender, event)]
    except KeyError:
        raise StateError(
            f"{event} from the {sender.value} is not allowed in state {state.value}",
            clause="§7-1",
        ) from None


def mermaid() -> str:
    """A Mermaid state diagram drawn from :data:`TRANSITIONS` (receipts left out)."""
    lines = ["stateDiagram-v2"]
    seen: set[tuple[str, str, str]] = set()
    for (state, role, event), to in TRANSITIONS.items():
        if event == "receipt":
            continue
        edge = (state.value, to.value, f"{role.value[0].upper()}: {event}")
        if edge in seen:
            continue
        seen.add(edge)
        src = "[*]" if state is S.NONE else state.value
        lines.append(f"    {src} --> {to.value}: {edge[2]}")
    return "\n".join(lines) + "\n"


def table_markdown() -> str:
    """The transition table as Markdown, for spec §7.2 (generated, never hand-edited)."""
    rows = ["| state | sender | event | next state |", "|---|---|---|---|"]
    for (state, role, event), to in TRANSITIONS.items():
        rows.append(f"| `{state.value}` | {role.value} | `{event}` | `{to.value}` |")
    return "\n".join(rows) + "\n"
