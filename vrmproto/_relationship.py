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

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vrmproto import _codec, _rules, _state
from vrmproto._envelope import Signed, open_envelope, open_sealed, seal_content, sign_message
from vrmproto._errors import Problem, ProtocolError, StateError, ValidationError, printable
from vrmproto._fields import Custom
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
    """A relationship's live data.shares (hash -> expires) that keeps the packed form
    :meth:`Relationship.to_state` writes of it, ``[[hash, expires], ...]`` in ascending hash
    order, up to date: a share added or dropped packs one entry, not every one.

    A relationship holds every share it recorded and its state is written with each message
    (more than once on the customer's side), so packing them all each time made the cost per
    message grow with the relationship. The bytes are exactly what packing the sorted list
    gives (a test holds them to it); any change but adding or dropping one share starts over.
    """

    __slots__ = ("_changed", "_keys", "_packed", "_parts", "_size")

    _keys: list[bytes] | None  # sorted, while each entry is kept packed
    _parts: list[bytes]  # each entry packed, in the order of _keys, while _keys is kept
    _packed: bytes | None  # the whole array
    _changed: bool  # changed since made or since _forget
    _size: int  # the length of every kept part, when all have one (0: unknown or mixed)

    def __init__(self, items: Iterable[tuple[bytes, int]] = ()) -> None:
        super().__init__(items)
        self._forget()

    def _forget(self) -> None:
        self._keys, self._parts, self._packed, self._changed, self._size = None, [], None, False, 0

    def packed(self) -> bytes:
        """The canonical msgpack array of ``[hash, expires]`` pairs, in ascending hash order."""
        if self._packed is None:
            keys, parts = self._keys, self._parts
            if keys is None:  # packed whole, in one call
                self._packed = _codec.pack_sorted([[k, self[k]] for k in sorted(self)])
            else:
                # one join of the parts in order: no Python step per entry (#12)
                self._packed = _codec.array_header(len(keys)) + b"".join(parts)
                self._size = _same_size(parts)
        return self._packed

    def _splice(self, at: int, part: bytes, drop: int, before: int) -> None:
        """The packed array after ``drop`` (0 or 1) parts at index ``at`` give way to ``part``
        (b"": none), out of ``before`` entries: cut from the packed bytes when every part has
        the same length (expiry times of one size: the usual case), one copy, where joining
        the parts again steps through every one; else rebuilt when next asked for."""
        old, size = self._packed, self._size
        if old is None or not size or (part and len(part) != size):
            self._packed, self._size = None, 0
            return
        after = before - drop + (1 if part else 0)
        start = _array_head_len(before) + at * size
        view = memoryview(old)
        self._packed = b"".join((_codec.array_header(after), view[_array_head_len(before):start],
                                 part, view[start + drop * size:]))  # fmt: skip

    def _kept(self) -> tuple[list[bytes], list[bytes]] | None:
        """The entries packed one by one, from the second change on: a map read from a store,
        changed once and written (a customer's step) packs whole, as cheaply as before."""
        if self._keys is None:
            if not self._changed:
                self._changed = True
                return None
            self._keys = sorted(self)
            self._parts = [_codec.pack_sorted([k, self[k]]) for k in self._keys]
            self._size = _same_size(self._parts)
        return self._keys, self._parts

    def __setitem__(self, key: bytes, value: int) -> None:
        part = _codec.pack_sorted([key, value])  # first: a value that cannot pack changes nothing
        kept = self._kept()
        if kept is None:
            self._packed = None
        else:
            keys, parts = kept
            i = bisect_left(keys, key)
            replaced = i < len(keys) and keys[i] == key
            self._splice(i, part, 1 if replaced else 0, len(keys))
            if replaced:
                parts[i] = part
            else:
                keys.insert(i, key)
                parts.insert(i, part)
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        super().__delitem__(key)
        kept = self._kept()
        if kept is None:
            self._packed = None
            return
        keys, parts = kept
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            self._splice(i, b"", 1, len(keys))
            del keys[i], parts[i]
        else:  # the parts were just made from what is left: packed from them
            self._packed, self._size = None, 0

    def pop(self, key: bytes, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        return super().pop(key, *default)

    def popitem(self) -> tuple[bytes, int]:
        self._forget()
        return super().popitem()

    def clear(self) -> None:
        self._forget()
        super().clear()

    def setdefault(self, key: bytes, default: int) -> int:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._forget()
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> ShareMap:  # type: ignore[override,misc]
        self._forget()
        super().__ior__(other)
        return self


def _same_size(parts: list[bytes]) -> int:
    """The length all of ``parts`` have, or 0 if they differ (or there are none)."""
    if not parts:
        return 0
    size = len(parts[0])
    return size if min(map(len, parts)) == size == max(map(len, parts)) else 0


def _array_head_len(count: int) -> int:
    """The length of the canonical header of an array of ``count`` items (§3.3)."""
    return 1 if count < 16 else 3 if count < 0x1_0000 else 5


#: to_state's map: the keys before "shares", "shares", the keys after (canonical order).
_STATE_HEAD = _codec.map_header(20)
_SHARES_KEY = _codec.pack_sorted("shares")


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

    def to_state(self) -> bytes:
        """Everything but the identity and the history, for a store (§12 storage).

        The map below is written with its keys in canonical order and every nested map comes
        from ``to_wire`` (canonical by construction), so it is packed directly: this runs once
        per message on a server, and a generic canonicalising walk would dominate its cost. The
        shares, which grow with the relationship, come packed from :class:`ShareMap`.
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
        packed = (shares if isinstance(shares, ShareMap) else ShareMap(shares.items())).packed()
        # One map of 20 entries: each part's own (one-byte fixmap) header is left out.
        return b"".join((_STATE_HEAD, before[1:], _SHARES_KEY, packed, after[1:]))

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
            rel.shares = ShareMap(s["shares"])
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
