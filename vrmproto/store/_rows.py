"""Typed records for what a node keeps beside relationships and their histories (schema v3).

Each kind of persistent fact has a record here, written through its own :class:`Commit` parts
and read through its own queries on the :class:`~vrmproto.store.Store` — no string-keyed blobs
in ``meta``, which keeps only store-level settings (the schema version, the master-seed check).

Customer side (the agent):

- :class:`ThreadRecord` — what the agent knows about a thread beside the core state: the kind
  of thread, how our identity in it is derived (§2.3, §2.4), the vendor's inbox and history URLs,
  the message types its discovery document listed (§13.1-3) and when that document expires
  (§13.1-8).
- :class:`DraftRecord` — a message waiting behind an undelivered one, a per-thread queue ordered
  by ``seq``; ``kind`` tags what ``payload`` encodes.
- :class:`IntentRecord` and :class:`OfferRecord` — an intentcast sent, and each offer stored as
  it arrives (§5.4).
- :class:`ShareNote` — what the customer shared with whom, until when (§5.3.1).

Vendor side (the server):

- :class:`HeldRecord` — the customer data a vendor holds (§12.10), one row per field, naming
  the message (data.share or address.update) it came from and when that share expires.

- :class:`EventRecord` — one entry of the vendor's event feed, written in the Commit of the
  message it tells of; :class:`DeadLetter` — an event a webhook gave up delivering.

Both sides:

- :class:`SavePoint` — the relationship as it was before a message of ours, so that a peer's
  final refusal of that message can take it back out of the chain and the history (§8.1-5).

Every record is a frozen, slotted dataclass; bytes are ids and hashes, ints are milliseconds
since the epoch unless named otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from vrmproto._vocab import DataSource

__all__ = [
    "DeadLetter",
    "DraftRecord",
    "EventRecord",
    "FailingEvent",
    "HeldRecord",
    "IntentRecord",
    "OfferRecord",
    "SavePoint",
    "ShareNote",
    "ThreadKind",
    "ThreadRecord",
]


class ThreadKind(Enum):
    """What a customer's thread is for."""

    VENDOR = "vendor"  # a pairwise relationship with a vendor (§2.3)
    INTENT = "intent"  # one vendor's thread of an intentcast, under its throw-away key (§2.4)


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    """The customer's facts about one thread beside the core state; upserted by ``thread``.

    ``types`` is what the vendor's discovery document listed when the thread was opened
    (§13.1-3), or None if that is unknown (a thread opened before types were kept).
    ``doc_expires_ms`` is the ``expires`` of the vendor's discovery document last read for the
    thread, after which the agent reads it again before using it (§13.1-8); None if unknown (a
    thread stored before schema 11).
    """

    thread: bytes  # 16 bytes
    kind: ThreadKind
    vendor_key: bytes  # the key the vendor's discovery document was signed with at first contact
    name: str  # the vendor's name, from its discovery document
    inbox: str  # absolute inbox URL
    history_url: str  # absolute history URL
    lifetime_ms: int  # how long our messages stay valid (the vendor's published limit)
    generation: int = 0  # pairwise key generation: rotations so far (§2.6)
    intent_id: bytes | None = None  # the intentcast whose throw-away identity we use (§2.4)
    last_activity_ms: int = 0
    last_problem: str = ""  # the last refusal or delivery failure, for people
    types: tuple[str, ...] | None = None
    doc_expires_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.kind is ThreadKind.INTENT) != (self.intent_id is not None):
            raise ValueError("an intent thread, and only one, names its intent_id")


@dataclass(frozen=True, slots=True)
class DraftRecord:
    """A message to send in ``thread`` once the ones before it are delivered.

    A thread's drafts are a queue ordered by ``seq`` (unique per thread; the caller, holding the
    thread's lock, takes the next number). ``kind`` tags the encoding of ``payload``; the store
    reads neither. Drafts migrated from schema v2 have ``kind`` the v2 draft's ``op`` and
    ``payload`` the v2 draft's canonical msgpack map ``{"args": …, "id": …, "op": …}``.
    """

    thread: bytes
    seq: int
    kind: str
    payload: bytes

    def __post_init__(self) -> None:
        if self.seq < 0:
            raise ValueError(f"draft seq must be >= 0, not {self.seq}")


@dataclass(frozen=True, slots=True)
class SavePoint:
    """The relationship before a message of ours, kept until that message's fate is known.

    If the peer finally refuses ``msg_hash`` (§8.1-5), the relationship returns to ``state``
    with a history of ``length`` entries whose last link is ``head``, and the stored history is
    truncated from index ``length``. ``after`` is the history length right after the guarded
    message (and any sent with it) was logged: a vendor restores only while its history is still
    that long, i.e. nothing followed (:func:`vrmproto._records.still_applies`). One row per
    ``(thread, msg_hash)``; several messages sent in one step share the same point.
    """

    thread: bytes
    msg_hash: bytes  # the message whose refusal returns here
    length: int  # history length before it
    head: bytes  # the link of the last entry before it (GENESIS when length is 0)
    state: bytes  # Relationship.to_state() before it
    after: int  # history length once it (and any message sent with it) was logged

    def __post_init__(self) -> None:
        if not 0 <= self.length <= self.after:
            raise ValueError(f"save point needs 0 <= length <= after, not {self.length}, "
                             f"{self.after}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """One field of customer data a vendor holds (§12.10), in the ``vrm-data/1`` form.

    One row per ``(thread, field)``: sharing or updating a field again replaces its row in
    place. ``share`` is the hash of the message it is held from (a data.share, or an
    address.update that gave a field not held before), so a withdraw deletes the rows of the
    withdrawn shares (:attr:`Commit.held_drop`). ``expires_ms`` is that share's expiry
    (§5.3.1-4), None for a field from an address.update (which does not expire). An update of
    a held field replaces its value and keeps its ``share`` and ``expires_ms`` (§5.3.6-2).
    """

    thread: bytes
    field: str
    value: str
    category: int
    source: DataSource  # "provided" for what the customer shared (§6.8-5)
    collected_ms: int
    purposes: tuple[int, ...]
    share: bytes  # hash of the message the value came from
    expires_ms: int | None = None


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """An intentcast the customer sent (§5.4.1); upserted by ``intent_id``.

    The fields of the intentcast body (``where``, ``start_ms``, ``end_ms`` None when it named
    none), when it was sent, the base URLs of the ``vendors`` asked and the ``(vendor,
    reason)`` of those that declined. The offers are :class:`OfferRecord` rows.

    An intentcast also published through Nostr relays (spec §15) keeps the ``relay_index`` its
    relayed intentcast was published with (its ``intent_id`` and Nostr key come from the master
    seed and that index, §15.2-1) and the ``relays`` it went to, so that answers arriving later
    can still be read (§15.2-4); both are empty for an intentcast sent over HTTP only.
    """

    intent_id: bytes  # 16 bytes
    what: str
    where: str | None
    start_ms: int | None
    end_ms: int | None
    max_price: tuple[int, str] | None  # (amount in minor units, ISO 4217 currency)
    reply_by_ms: int
    sent_ms: int
    vendors: tuple[str, ...] = ()
    declines: tuple[tuple[str, str], ...] = ()
    constraints: tuple[str, ...] = ()
    memberships: tuple[str, ...] = ()
    relay_index: int | None = None
    relays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OfferRecord:
    """One vendor's offer in answer to an intentcast (§5.4.2), stored as it arrives.

    Unique by ``hash`` (the offer message's hash); storing the same offer again replaces it.
    """

    intent_id: bytes
    hash: bytes
    thread: bytes
    vendor: str
    url: str
    vendor_key: bytes
    description: str
    price: tuple[int, str]  # (amount in minor units, ISO 4217 currency)
    valid_until_ms: int
    conditions: tuple[str, ...]
    accepts_terms: tuple[str, ...]
    received_ms: int


@dataclass(frozen=True, slots=True)
class ShareNote:
    """What the customer shared, with whom, until when; upserted by ``share``.

    The signed data.share in the history is the truth; the note is the customer's own index of
    it (it holds the values in clear, like the drafts: the store is the customer's own).
    """

    share: bytes  # the data.share message's hash
    thread: bytes
    vendor: str
    fields: tuple[tuple[str, str], ...]  # (name, value), sorted by name
    purposes: tuple[int, ...]
    categories: tuple[int, ...]
    expires_ms: int
    shared_ms: int
    status: str  # the delivery status when noted: "confirmed", "queued", …
    withdrawn_ms: int | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event of the vendor's feed: an accepted message (or a reply of ours committed with
    it) told to the vendor's own systems (docs/events.md).

    ``id`` is stable (derived from the message hash, unique); ``seq`` orders the events of one
    relationship (the message's history index: increasing, with gaps where receipts are);
    ``pos`` is the event's place in the whole feed, assigned by the store on insert (0 in a
    Commit) and never reused. ``data`` is a JSON object without personal data; ``personal`` the
    JSON object of the fields a share or address update carried, or None — a ``held_drop`` of
    the share (withdrawn or expired) sets it to None (the event stays, its personal data goes)
    and takes the fields held under that share out of the thread's address.updated events.
    """

    id: str
    thread: bytes
    seq: int
    kind: str
    msg_hash: bytes
    recorded_ms: int
    data: bytes
    personal: bytes | None = None
    pos: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a consumer (``name``: a webhook's name) gave up delivering, until replayed."""

    name: str
    pos: int  # the event's feed position
    failed_ms: int
    error: str


@dataclass(frozen=True, slots=True)
class FailingEvent:
    """An event a consumer (``name``: a webhook's name) is retrying: failing since
    ``since_ms`` (wall-clock ms of its first failed attempt), after ``attempts`` attempts, the
    last one's ``error``. Kept with the consumer's cursor, so that a restart goes on with the
    same deadline and backoff instead of starting both again (docs/events.md, "Dead
    letters"). In batched mode ``pos`` is the first event of the batch."""

    name: str
    pos: int
    since_ms: int
    attempts: int
    error: str
    gone: bool = False  # the last answer was 410 Gone: delivery to the webhook is paused
