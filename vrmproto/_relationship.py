"""One relationship, as one side holds it: the sans-IO protocol engine (spec §4.5, §5, §7, §8).

A :class:`Relationship` is what h11's ``Connection`` is to HTTP: feed it bytes a peer sent
(:meth:`Relationship.receive`) and bodies you want to send (:meth:`Relationship.send`); it checks
every rule, moves the state machine, keeps the hash links and the history, and hands back signed
messages and history entries for the I/O layer to deliver and store. It never touches a socket,
a database or a clock: ``now`` (ms) and message ids are arguments. A call that raises leaves the
relationship exactly as it was.

Send, receive and adopt share one entry check (:meth:`Relationship._enter`, steps 25 to 30 of
§4.5-1); the rules of each message type are in :mod:`vrmproto._rules`, one per body class.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vrmproto import _codec, _rules, _state
from vrmproto._envelope import Signed, open_envelope, open_sealed, seal_content, sign_message
from vrmproto._errors import Problem, ProtocolError, StateError, ValidationError, printable
from vrmproto._fields import Custom, check_fields
from vrmproto._history import Entry, History
from vrmproto._keys import Context, Identity, check_key
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import (
    Body,
    FieldsContent,
    KeyRotate,
    ProblemReport,
    Receipt,
    RecordsContent,
)
from vrmproto._quick import quick_init, quick_new
from vrmproto._rules import MOVES, MOVES_FROM, RULES, Effect, Turn, move, rotation_proof_bytes
from vrmproto._state import Role, State
from vrmproto._vocab import TermRef

__all__ = ["DEFAULT_LIFETIME_MS", "Received", "Relationship", "Sent", "ShareMap", "problem_for",
           "rotation_proof_bytes", "sign_problem"]

_TERM_REF = Custom(TermRef)  # decodes stored term references through the shared cache

#: How long our outgoing messages stay valid unless the caller says otherwise (ms).
DEFAULT_LIFETIME_MS = 86_400_000


@quick_init
@dataclass(frozen=True, slots=True)
class Received:
    """A message :meth:`Relationship.receive` accepted, with what it changed.

    ``entry`` is the history entry to store (None for a ``problem``, which is outside the
    relationship's chain); ``content`` is the opened sealed content of a data.share,
    address.update or data.return addressed to us.
    """

    message: Signed[Any]
    entry: Entry | None
    content: FieldsContent | RecordsContent | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class Sent:
    """A message :meth:`Relationship.send` signed, and its history entry."""

    message: Signed[Any]
    entry: Entry


_new_received = quick_new(Received)  # the hot paths' Received(...) and Sent(...)
_new_sent = quick_new(Sent)
_new_turn = tuple.__new__  # Turn(...) without the keyword-capable __new__
_OTHER = {Role.CUSTOMER: Role.VENDOR, Role.VENDOR: Role.CUSTOMER}  # Role.other, as a look-up
_PROBLEM = ProblemReport.TYPE


class ShareMap(dict[bytes, int]):
    """A relationship's live data.shares (hash -> expires), kept in the fixed-width form
    :meth:`Relationship.to_state` stores them in: one 40-byte entry per share (the 32-byte
    hash, then the expiry as 8 bytes big-endian) in the order the shares came, the last entry
    moving into the place of one dropped, inside a region of spare capacity.

    A relationship holds every share it recorded and its state is written with each message,
    so a message that adds or drops a share changes one or two entries of the stored bytes and
    none of their positions: a store that overwrites a row of the same length in place (SQLite
    does, writing only the pages whose bytes changed) writes a page or two whatever the number
    of shares, instead of every page of the whole (#12, ``growth``). A map holding a key or
    value that does not fit an entry (not 32 bytes; not an integer from 0 to 2**64 - 1) is
    written in the sorted form instead (:meth:`sorted_packed`).
    """

    __slots__ = ("_buf", "_cap", "_fixed", "_pos", "_slots")

    _buf: bytearray  # the entries, in position order, len(_slots) * 40 bytes
    _slots: list[bytes]  # the hash at each position
    _pos: dict[bytes, int]  # hash -> position
    _cap: int  # the entries the region last written had room for
    _fixed: bool  # every entry fits the fixed width (else: positions are not kept)

    def __init__(self, items: Iterable[tuple[bytes, int]] = ()) -> None:
        super().__init__(items)
        self._cap = 0
        self._place()

    @classmethod
    def stored(cls, region: bytes, count: int) -> ShareMap:
        """The map :meth:`region` wrote, ``count`` entries used, positions and room as they
        were (so that writing it again unchanged gives the same bytes)."""
        if count * SHARE_ENTRY > len(region) or len(region) % SHARE_ENTRY:
            raise ValueError("the shares' region does not hold its entries")
        m = cls()
        buf = bytearray(region[: count * SHARE_ENTRY])
        pairs = list(_ENTRY.iter_unpack(buf))
        dict.update(m, pairs)
        if len(m) != count:
            raise ValueError("a share is stored twice")
        slots = [h for h, _ in pairs]
        m._buf, m._slots, m._pos = buf, slots, {h: i for i, h in enumerate(slots)}
        m._cap = len(region) // SHARE_ENTRY
        return m

    def _place(self) -> None:
        """Positions afresh, in the dict's order (after a change of many entries at once)."""
        self._slots = list(self)
        self._pos = {h: i for i, h in enumerate(self._slots)}
        try:
            self._buf = bytearray(b"".join(_entry(h, self[h]) for h in self._slots))
            self._fixed = True
        except (OverflowError, TypeError, ValueError):
            self._buf, self._fixed = bytearray(), False

    def region(self) -> bytes:
        """The stored region: a msgpack bin of room for ``cap`` entries, the first ``len(self)``
        used and the rest zero. The room stays while it holds the entries with less than
        :data:`SHARE_GRAIN` + one entry per share to spare, else it is set to a quarter more
        than the entries, so it changes (and the bytes' length with it) only now and then."""
        n, cap = len(self._slots), self._cap
        if not n <= cap <= 2 * n + SHARE_GRAIN:
            cap = self._cap = -(-(n * 5 // 4) // SHARE_GRAIN) * SHARE_GRAIN
        size = cap * SHARE_ENTRY
        return b"".join((_bin_header(size), self._buf, bytes(size - len(self._buf))))

    def sorted_packed(self) -> bytes:
        """The canonical msgpack array of ``[hash, expires]`` pairs, in ascending hash order."""
        return _codec.pack_sorted([[k, self[k]] for k in sorted(self)])

    def __setitem__(self, key: bytes, value: int) -> None:
        try:
            entry = _entry(key, value) if self._fixed else None
        except (OverflowError, TypeError, ValueError):
            entry = None
        if entry is None:
            _codec.pack_sorted([key, value])  # first: a value that cannot be stored changes nothing
            super().__setitem__(key, value)
            self._fixed = False
            return
        at = self._pos.get(key)
        if at is None:
            self._pos[key] = len(self._slots)
            self._slots.append(key)
            self._buf += entry
        else:
            self._buf[at * SHARE_ENTRY : (at + 1) * SHARE_ENTRY] = entry
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        super().__delitem__(key)
        if not self._fixed:
            self._place()  # (fixed again if what is left fits)
            return
        at, last = self._pos.pop(key), len(self._slots) - 1
        if at != last:  # the last entry takes the place
            moved = self._slots[at] = self._slots[last]
            self._pos[moved] = at
            self._buf[at * SHARE_ENTRY : (at + 1) * SHARE_ENTRY] = (
                self._buf[last * SHARE_ENTRY :])  # fmt: skip
        del self._slots[last], self._buf[last * SHARE_ENTRY :]

    def __reduce__(self) -> tuple[Any, ...]:
        """Copied and pickled with its entries' places and room (a dict subclass's default
        would set the items before the attributes)."""
        items = [(h, self[h]) for h in self._slots] if self._fixed else list(self.items())
        return _share_map, (items, self._cap)

    def pop(self, key: bytes, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        return super().pop(key, *default)

    def popitem(self) -> tuple[bytes, int]:
        item = super().popitem()
        self._place()
        return item

    def clear(self) -> None:
        super().clear()
        self._place()

    def setdefault(self, key: bytes, default: int) -> int:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._place()

    def __ior__(self, other: Any) -> ShareMap:  # type: ignore[override,misc]
        super().__ior__(other)
        self._place()
        return self


def _share_map(items: list[tuple[bytes, int]], room: int) -> ShareMap:
    m = ShareMap(items)
    m._cap = room
    return m


#: One share in the stored state: its hash (32 bytes) and expiry (8 bytes, big-endian).
SHARE_ENTRY = 40
_ENTRY = struct.Struct(">32sQ")
#: The room of the shares' region moves in steps of this many entries.
SHARE_GRAIN = 8
#: The room of the state's head (every key but the shares, and the filler) moves in steps of
#: this many bytes, and is a quarter and at least this much more than the head when set: a
#: message adds a receipt awaited or owed (34 bytes) and the next takes it away.
HEAD_GRAIN = 128


def _entry(key: bytes, value: int) -> bytes:
    if type(key) is not bytes or len(key) != 32 or type(value) is not int:
        raise ValueError("not a fixed-width share")
    return key + value.to_bytes(8, "big")  # (OverflowError: below 0 or past 2**64 - 1)


def _bin_header(size: int) -> bytes:
    """The canonical header of a msgpack bin of ``size`` bytes (§3.3-7: the shortest form)."""
    if size < 0x100:
        return bytes((0xC4, size))
    if size < 0x1_0000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


@functools.lru_cache(maxsize=256)
def _filler(size: int) -> bytes | None:
    """One canonical msgpack item of exactly ``size`` bytes (nil, or a bin of zeros), or None
    where none has that length (0; 258 and 65539–65540: between two bin headers' ranges)."""
    if size == 1:
        return b"\xc0"
    for head, low, high in ((2, 0, 0xFF), (3, 0x100, 0xFFFF), (5, 0x1_0000, 0xFFFF_FFFF)):
        if low <= size - head <= high:
            return _bin_header(size - head) + bytes(size - head)
    return None


#: The v1 state (a map of 20 entries, shares sorted inside) and the v2 state: an array of the
#: head map (the shares' count in place of the shares), a filler and the shares' region.
_STATE_HEAD = _codec.map_header(20)
_SHARES_KEY = _codec.pack_sorted("shares")
_COUNT_KEY = _codec.pack_sorted("share_count")
_V2 = _codec.array_header(3)


def _invalid(detail: str, clause: str, path: str = "", code: Problem = Problem.INVALID_FIELD) -> (
    ValidationError
):
    return ValidationError(detail, code=code, clause=clause, path=path)


class Relationship:
    """One side of one relationship (one thread between a customer key and a vendor key)."""

    def __init__(
        self,
        *,
        role: Role,
        identity: Identity,
        thread: bytes,
        peer_key: bytes | None = None,
        peer_enc_key: bytes | None = None,
        limits: Limits = DEFAULT_LIMITS,
        history: History | None = None,
    ) -> None:
        if len(thread) != 16:
            raise ValueError("a thread id is 16 bytes")
        self.role = role
        self.identity = identity
        self.thread = thread
        self.peer_key = peer_key
        self.peer_enc_key = peer_enc_key
        self.limits = limits
        self.history = history if history is not None else History()
        self.state = State.NONE
        self.our_head: bytes | None = None  # hash of our newest chained message (§4.2-8)
        self.peer_head: bytes | None = None  # hash of the peer's newest chained message
        self.agreement: bytes | None = None  # agreement id = hash of the accepted offer (§5.2.2)
        self.terms: tuple[TermRef, ...] = ()  # the agreed terms
        self.offered: tuple[TermRef, ...] = ()  # terms of the open offer
        self.pending_offer: bytes | None = None
        self.counter: tuple[TermRef, ...] | None = None
        self.shares: dict[bytes, int] = ShareMap()  # live data.share hash -> expires
        self.pending_withdraws: dict[bytes, tuple[bytes, ...]] = {}
        self.pending_requests: set[bytes] = set()
        self.awaiting_receipt: set[bytes] = set()  # ours, not yet acknowledged by the peer
        self.owed_receipts: set[bytes] = set()  # theirs, not yet acknowledged by us
        self.retired: dict[bytes, str] = {}  # peer keys rotated away -> "rotate"|"compromise"
        self.intent: bytes | None = None  # hash of the intentcast this thread answers
        self.generation = 0  # how many times we rotated our own key here (§2.6)
        # to_state's wire form of each term list, with the tuple it was made from
        self._wired: dict[str, tuple[tuple[TermRef, ...], list[dict[str, object]]]] = {}
        self._wires: tuple[Any, ...] | None = None  # (counter, offered, terms, their 3 wires)
        # to_state's last four keys packed, with the state, terms' wire and thread they hold
        # (kept only while no withdrawal is pending: that dict changes in place)
        self._tail: tuple[str, object, bytes, bytes] | None = None
        self._head_room = 0  # the bytes to_state's head and filler took, last it wrote them

    def __repr__(self) -> str:
        return f"<Relationship {self.role.value} {self.thread.hex()} {self.state.value}>"

    @property
    def peer_role(self) -> Role:
        return self.role.other

    # -- sending ------------------------------------------------------------------------------

    def send(
        self,
        body: Body,
        *,
        now: int,
        msg_id: bytes,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
    ) -> Sent:
        """Sign ``body`` as our next message, after checking the same rules the peer will (§7)."""
        if self.peer_key is None:
            raise StateError("the peer's key is not known yet", clause="§7-1")
        if isinstance(body, ProblemReport):
            raise StateError(
                "a problem is sent with sign_problem(), outside the chain", clause="§5.6.2-1"
            )
        new_state, effect = self._enter(body, self.role, now)
        msg = sign_message(
            body,
            identity=self.identity,
            recipient=self.peer_key,
            thread=self.thread,
            prev=self.our_head,
            now=now,
            msg_id=msg_id,
            lifetime_ms=lifetime_ms,
        )
        return _new_sent(msg, self._log_own(msg, new_state, effect))

    def _log_own(self, msg: Signed[Any], new_state: State, effect: Effect) -> Entry:
        """Log one of our messages whose rules were checked, and apply what it changes."""
        entry = self.history.append(msg.hash, msg.envelope, outgoing=True)
        self.our_head = msg.hash
        self.state = new_state
        effect(msg.hash)
        if not isinstance(msg.body, Receipt):
            self.awaiting_receipt.add(msg.hash)
        return entry

    def seal(self, content: FieldsContent | RecordsContent, *, msg_id: bytes) -> bytes:
        """Seal content to the peer for the message that will carry ``msg_id`` (§5.5)."""
        if self.peer_key is None or self.peer_enc_key is None:
            raise StateError("the peer's keys are not known yet", clause="§5.5-1")
        return seal_content(
            content,
            identity=self.identity,
            recipient=self.peer_key,
            recipient_enc_key=self.peer_enc_key,
            msg_id=msg_id,
        )

    def rotate(
        self, new_identity: Identity, *, now: int, msg_id: bytes, reason: str = "rotate",
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
    ) -> Sent:
        """Move to a new key: a key.rotate signed by the old key, proved by the new (§2.6),
        valid for ``lifetime_ms`` like any message :meth:`send` signs."""
        proof = new_identity.sign(
            Context.KEY_ROTATION,
            rotation_proof_bytes(self.identity.public_key, new_identity.public_key, self.thread),
        )
        body = KeyRotate(
            new_key=new_identity.public_key,
            new_enc_key=new_identity.enc_public_key,
            proof=proof,
            reason=reason,
        )
        sent = self.send(body, now=now, msg_id=msg_id, lifetime_ms=lifetime_ms)
        self.identity = new_identity
        self.generation += 1
        return sent

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, data: bytes | Signed[Any], *, now: int) -> Received:
        """Verify and apply a message from the peer (§4.5); ProtocolError if any rule fails."""
        msg = data if isinstance(data, Signed) else self.open(data, now=now)
        header = msg.header
        if header.type == _PROBLEM:  # outside every chain, whatever its thread (§5.6.2)
            return _new_received(msg, None, None)
        if header.thread != self.thread:
            raise _invalid("the message belongs to another thread", "§4.5-5",
                           "$.hdr.thread", Problem.NO_RELATIONSHIP)
        peer_key = self.peer_key
        if peer_key is None or header.sender != peer_key:
            self._check_sender(header.sender)
        body = msg.body
        new_state, effect = self._enter(body, _OTHER[self.role], now, msg)
        content = self._open_content(msg) if RULES[type(body)].sealed is not None else None
        entry = self.history.append(msg.hash, msg.envelope, outgoing=False)
        if peer_key is None:
            self.peer_key = header.sender
        self.peer_head = msg.hash
        self.state = new_state
        effect(msg.hash)
        if not isinstance(body, Receipt):
            self.owed_receipts.add(msg.hash)
        return _new_received(msg, entry, content)

    def adopt(self, envelope: bytes, *, rotated_to: Identity | None = None) -> Entry:
        """Append a logged message that the peer's copy of the history holds and ours lacks,
        as the next entry (§8.3-3); ProtocolError, with nothing changed, if it cannot be.

        A message our key signed is applied as if we were sending it, one the peer's key signed
        as if we were receiving it: the rules of §5 and §7, its ``prev`` link, and the rest of
        §4.5 — except the time window, since the message was accepted long ago. Rules that
        compare with the current time (a share's expiry) use the message's ``created`` (§8.3-3).
        Our own ``key.rotate`` moves us to ``rotated_to``, the identity its ``new_key`` names
        (the caller derives it; :meth:`rotate` takes it the same way). An erased entry cannot be
        applied: its body is gone (§8.4).
        """
        msg = open_envelope(envelope, now=0, check_time=False, limits=self.limits)
        if msg.thread != self.thread:
            raise _invalid("the message belongs to another thread", "§8.3-2",
                           "$.hdr.thread", Problem.NO_RELATIONSHIP)
        if msg.type == ProblemReport.TYPE:
            raise StateError("a problem is never part of a history", clause="§5.6.2-1")
        if msg.sender != self.identity.public_key:
            if msg.recipient != self.identity.public_key:
                raise _invalid("the peer's message in the history is addressed to another key",
                               "§4.5-2", "$.hdr.to", Problem.WRONG_RECIPIENT)
            received = self.receive(msg, now=msg.header.created)
            assert received.entry is not None  # only a problem has none, refused above
            return received.entry
        if msg.recipient != self.peer_key:
            raise _invalid("our own message in the history is not addressed to the peer",
                           "§8.3-2", "$.hdr.to", Problem.NOT_A_PARTY)
        body = msg.body
        new_state, effect = self._enter(body, self.role, msg.header.created, msg)
        rotates = isinstance(body, KeyRotate)
        if rotates and (rotated_to is None or rotated_to.public_key != body.new_key):
            raise _invalid("adopting our own key.rotate needs the identity of its new key",
                           "§8.3-3", "$.body.new_key", Problem.BAD_KEY)
        entry = self._log_own(msg, new_state, effect)
        if rotates and rotated_to is not None:
            self.identity = rotated_to
            self.generation += 1
        return entry

    def open(self, data: bytes, *, now: int) -> Signed[Any]:
        """Decode and verify envelope bytes addressed to us (§3, §4.5); no state changes."""
        return open_envelope(
            data, now=now, recipients=(self.identity.public_key,), limits=self.limits
        )

    # -- the checks of §4.5-1 that need the relationship (steps 24 to 31) ----------------------

    def _check_sender(self, sender: bytes) -> None:
        """Step 24: ``from`` is the peer's current key, once it is known (§4.5-5, §2.6)."""
        if self.peer_key is None:
            # First contact: the key this relationship will trust. Verification alone admits a
            # key with a small-order component; refuse anything but a prime-order point (§2.1-2).
            check_key(sender, path="$.hdr.from")
            return
        if sender == self.peer_key:
            return
        reason = self.retired.get(sender)
        if reason == "compromise":
            raise _invalid("this key was revoked", "§2.6-4", "$.hdr.from", Problem.KEY_REVOKED)
        if reason is not None:
            raise _invalid("this key was rotated away", "§2.6-3", "$.hdr.from",
                           Problem.KEY_ROTATED)
        raise _invalid("the sender is not a party to this relationship", "§4.5-5",
                       "$.hdr.from", Problem.NOT_A_PARTY)

    def _enter(
        self, body: Body, by: Role, now: int, msg: Signed[Any] | None = None
    ) -> tuple[State, Effect]:
        """Steps 25 to 30 of §4.5-1, the one entry check of send, receive and adopt: whether
        ``by`` may send the type, the ``prev`` link and the history (for ``msg``, a message
        that exists; None when we are about to sign ``body``), the agreement, the state
        machine and the type's rule. Returns the next state and the effect to apply; changes
        nothing."""
        # a row of Table 7-2 (as long as it is the table in force), or move() below
        to = MOVES.get((self.state, by, type(body))) if (
            _state.TRANSITIONS is MOVES_FROM[0]) else None  # fmt: skip
        if to is None and not body.sent_by(by):
            raise StateError(f"{body.TYPE} is never sent by the {by.value}", clause="§7-2")
        if msg is not None:
            head = self.our_head if by is self.role else self.peer_head
            if msg.header.prev != head:
                raise _invalid("prev does not link to the last message of this sender here",
                               "§4.5-6", "$.hdr.prev", Problem.CHAIN_BROKEN)
            if msg.hash in self.history:
                raise _invalid("this message is already in the history", "§4.5-7",
                               code=Problem.ID_CONFLICT)
        if to is None:
            self._agreement_first(body)
            step = move(self.state, by, body)
            to, rule = step.to, step.rule
        else:
            rule = _rules.RULES[type(body)]  # (read from its module at each use, as move() does)
            if self.agreement is None and rule.needs_agreement:
                self._agreement_first(body)  # raises
        return to, rule.apply(self, body, _new_turn(Turn, (by, now, by is self.role)))

    def _agreement_first(self, body: Body) -> None:
        """Step 28: data messages in a relationship with no agreement get ``no_agreement``, the
        code a sender can act on, before the state table is consulted (§5.3-1, §7-3)."""
        if self.agreement is None and RULES[type(body)].needs_agreement:
            raise _invalid("there is no agreement in this relationship yet", "§5.3-1",
                           "$.body.agreement", Problem.NO_AGREEMENT)

    def _open_content(self, msg: Signed[Any]) -> FieldsContent | RecordsContent | None:
        """Step 31: the sealed content of a message addressed to us, in the order of §5.5-9."""
        sealed = RULES[type(msg.body)].sealed
        if sealed is None:
            return None
        content: FieldsContent | RecordsContent = open_sealed(
            msg, identity=self.identity, content_type=sealed, limits=self.limits
        )
        return content

    # -- persistence --------------------------------------------------------------------------

    def _wire(self, name: str, refs: tuple[TermRef, ...]) -> list[dict[str, object]]:
        """``[t.to_wire() for t in refs]``, made once per tuple: the term lists are replaced,
        never changed in place, and most messages change none of them."""
        kept = self._wired.get(name)
        if kept is not None and kept[0] is refs:
            return kept[1]
        wire = [t.to_wire() for t in refs]
        self._wired[name] = (refs, wire)
        return wire

    def to_state(self, *, compact: bool = False) -> bytes:
        """Everything but the identity and the history, for a store (§12 storage): the stored
        form (:meth:`_stored_form`), which keeps its length and its shares' places from one
        message to the next; or, ``compact=True``, the canonical form — one map of 20 entries,
        the shares sorted by hash — equal for equal relationships, and written too whenever a
        share does not fit the stored form. :meth:`from_state` reads both.

        The maps are written with their keys in canonical order and every nested map comes
        from ``to_wire`` (canonical by construction), so they are packed directly: this runs
        once per message on a server, and a generic canonicalising walk would dominate its cost.
        """
        retired, withdraws = self.retired, self.pending_withdraws  # (mostly empty)
        counter, offered, terms = self.counter, self.offered, self.terms
        wires = self._wires  # the three lists' wire forms, as long as the same tuples stand
        if wires is None or wires[0] is not counter or wires[1] is not offered or (
                wires[2] is not terms):  # fmt: skip
            wires = self._wires = (
                counter, offered, terms,
                self._wire("counter", counter) if counter is not None else None,
                self._wire("offered", offered), self._wire("terms", terms),
            )  # fmt: skip
        before = _codec.pack_sorted({
            "agreement": self.agreement,
            "awaiting": sorted(self.awaiting_receipt),
            "counter": wires[3],
            "generation": self.generation,
            "intent": self.intent,
            "offered": wires[4],
            "our_head": self.our_head,
            "owed": sorted(self.owed_receipts),
            "peer_enc_key": self.peer_enc_key,
            "peer_head": self.peer_head,
            "peer_key": self.peer_key,
            "pending_offer": self.pending_offer,
            "requests": sorted(self.pending_requests),
            "retired": [[k, v] for k, v in sorted(retired.items())] if retired else [],
            "role": self.role._value_,  # (the attribute: Enum.value is a Python property)
        })
        # The last four keys change far less often than the rest (a share changes none of
        # them): packed again only when the state, the terms' wire form or the thread did.
        state, twire, thread, tail = self.state._value_, wires[5], self.thread, self._tail
        if (withdraws or tail is None or tail[0] is not state or tail[1] is not twire
                or tail[2] is not thread):  # fmt: skip
            after = _codec.pack_sorted({
                "state": state,
                "terms": twire,
                "thread": thread,
                "withdraws": ([[k, list(v)] for k, v in sorted(withdraws.items())]
                              if withdraws else []),
            })  # fmt: skip
            self._tail = None if withdraws else (state, twire, thread, after)
        else:
            after = tail[3]
        shares = self.shares
        if not isinstance(shares, ShareMap):
            shares = self.shares = ShareMap(shares.items())
        if compact or not shares._fixed:
            return b"".join((_STATE_HEAD, before[1:], _SHARES_KEY, shares.sorted_packed(),
                             after[1:]))  # fmt: skip
        return self._stored_form(before, after, shares)

    def _stored_form(self, before: bytes, after: bytes, shares: ShareMap) -> bytes:
        """:meth:`to_state`'s stored form, from the head map's packed parts before and after
        the shares' place (each with its own fixmap header).

        A msgpack array of three items: the head, a map of every attribute but the shares, with
        ``share_count`` in their place; a filler (nil, or a bin of zeros) that gives the head
        and filler together a room of steady length (:data:`HEAD_GRAIN`); and the shares'
        region (:meth:`ShareMap.region`). A message changes the head's bytes and an entry or
        two of the region, and the length of the whole only when a room is set again: a store
        can overwrite the row in place, writing only the pages whose bytes changed (#12). The
        rooms and the shares' places follow this object's past, so two relationships that
        hold the same may differ in them (``to_state(compact=True)`` does not).
        """
        head = b"".join((_STATE_HEAD, before[1:], _COUNT_KEY, _codec.pack_sorted(len(shares)),
                         after[1:]))  # fmt: skip
        need, room = len(head) + 1, self._head_room
        if not need <= room <= 2 * (need + HEAD_GRAIN):
            room = -(-(need * 5 // 4 + HEAD_GRAIN) // HEAD_GRAIN) * HEAD_GRAIN
        filler = _filler(room - len(head))
        while filler is None:  # (a length no one item has: a byte more)
            room += 1
            filler = _filler(room - len(head))
        self._head_room = room
        return b"".join((_V2, head, filler, shares.region()))

    @classmethod
    def from_state(
        cls,
        data: bytes,
        *,
        identity: Identity,
        history: History | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Relationship:
        """Rebuild from :meth:`to_state`; ``identity`` is our current identity in the thread."""
        try:
            s = _codec.decode_form(data)  # our own stored bytes: form check only
            region: bytes | None = None
            if type(s) is list:  # the stored form (to_state), else the compact one
                s, filler, region = s
                if type(region) is not bytes or (
                        filler is not None and type(filler) is not bytes):  # fmt: skip
                    raise ValueError("the shares' region or the filler is not a bin")
            rel = cls(
                role=Role(s["role"]),
                identity=identity,
                thread=s["thread"],
                peer_key=s["peer_key"],
                peer_enc_key=s["peer_enc_key"],
                limits=limits,
                history=history,
            )
            rel.state = State(s["state"])
            rel.our_head, rel.peer_head = s["our_head"], s["peer_head"]
            rel.agreement, rel.pending_offer, rel.intent = (
                s["agreement"], s["pending_offer"], s["intent"])
            rel.terms = tuple(_TERM_REF.load(t, "$.terms") for t in s["terms"])
            rel.offered = tuple(_TERM_REF.load(t, "$.offered") for t in s["offered"])
            rel.counter = (tuple(_TERM_REF.load(t, "$.counter") for t in s["counter"])
                           if s["counter"] is not None else None)
            if region is None:
                rel.shares = ShareMap(s["shares"])
            else:
                rel.shares = ShareMap.stored(region, s["share_count"])
                rel._head_room = len(data) - 1 - len(_bin_header(len(region))) - len(region)
            rel.pending_withdraws = {k: tuple(v) for k, v in s["withdraws"]}
            rel.pending_requests = set(s["requests"])
            rel.awaiting_receipt, rel.owed_receipts = set(s["awaiting"]), set(s["owed"])
            rel.retired = dict(s["retired"])
            rel.generation = s["generation"]
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise ValueError(f"stored relationship state is damaged: {exc}") from exc
        return rel


def sign_problem(
    code: Problem,
    detail: str,
    *,
    identity: Identity,
    now: int,
    msg_id: bytes,
    to: bytes | None = None,
    thread: bytes = bytes(16),
    ref: bytes | None = None,
    clause: str = "",
    path: str = "",
    retry_after: int | None = None,
    server_time: int | None = None,
    supported_versions: tuple[int, ...] | None = None,
) -> Signed[ProblemReport]:
    """A signed problem report (§5.6.2): outside every chain, so ``prev`` is nil.

    ``detail`` and ``path`` are signed with every non-printable character escaped and cut to
    their field sizes, whatever they were built from; the code that builds a detail quotes
    received input only through :func:`~vrmproto._errors.excerpt` (§11.12-1).
    """
    detail, path = printable(detail), printable(path)
    if retry_after is not None or server_time is not None or supported_versions is not None:
        # (the caller's numbers: what a receiver would refuse is refused here, §5.1-2)
        check_fields(ProblemReport, "$.body", retry_after=retry_after, server_time=server_time,
                     supported_versions=supported_versions)  # fmt: skip
    body = ProblemReport(
        code=code.value,
        detail=detail if len(detail) <= 1000 else detail[:999] + "…",
        clause=clause or None,
        path=(path if len(path) <= 200 else path[:199] + "…") or None,
        ref=ref,
        retry_after=retry_after,
        server_time=server_time,
        supported_versions=supported_versions,
    )
    return sign_message(
        body,
        identity=identity,
        recipient=to,
        thread=thread,
        prev=None,
        now=now,
        msg_id=msg_id,
        lifetime_ms=300_000,
    )


def problem_for(
    error: ProtocolError, *, identity: Identity, now: int, msg_id: bytes, **kw: Any
) -> Signed[ProblemReport]:
    """The signed problem report answering ``error`` (§9.1)."""
    return sign_problem(
        error.code,
        error.detail,
        identity=identity,
        now=now,
        msg_id=msg_id,
        clause=error.clause,
        path=error.path,
        **kw,
    )
