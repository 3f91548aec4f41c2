"""One relationship, as one side holds it: the sans-IO protocol engine (spec §4.5, §5, §7, §8).

A :class:`Relationship` is what h11's ``Connection`` is to HTTP: feed it bytes a peer sent
(:meth:`Relationship.receive`) and bodies you want to send (:meth:`Relationship.send`); it checks
every rule, moves the state machine, keeps the hash links and the history, and hands back signed
messages and history entries for the I/O layer to deliver and store. It never touches a socket,
a database or a clock: ``now`` (ms) and message ids are arguments. A call that raises leaves the
relationship exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vrmproto import _codec
from vrmproto._envelope import Signed, open_envelope, open_sealed, seal_content, sign_message
from vrmproto._errors import Problem, ProtocolError, StateError, ValidationError, printable
from vrmproto._fields import Custom
from vrmproto._history import Entry, History
from vrmproto._keys import Context, Identity, check_enc_key, check_key, verify
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import (
    AddressUpdate,
    Body,
    DataErased,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    KeyRotate,
    ProblemReport,
    Receipt,
    RecordsContent,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._state import Role, State, event_of, next_state
from vrmproto._vocab import TermRef, check_refs

_NEEDS_AGREEMENT = (DataShare, DataWithdraw, DataRequest, AddressUpdate)
_TERM_REF = Custom(TermRef)  # decodes stored term references through the shared cache

#: How long our outgoing messages stay valid unless the caller says otherwise (ms).
DEFAULT_LIFETIME_MS = 86_400_000


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


@dataclass(frozen=True, slots=True)
class Sent:
    """A message :meth:`Relationship.send` signed, and its history entry."""

    message: Signed[Any]
    entry: Entry


def _invalid(detail: str, clause: str, path: str = "", code: Problem = Problem.INVALID_FIELD) -> (
    ValidationError
):
    return ValidationError(detail, code=code, clause=clause, path=path)


def _check_terms(refs: tuple[TermRef, ...], path: str) -> None:
    """Every cited term must be one we know, by id, version and text hash (§6.2-3)."""
    try:
        check_refs(refs)
    except ProtocolError as exc:
        raise ValidationError(exc.detail, code=exc.code, clause=exc.clause,
                              path=path + exc.path) from None


def rotation_proof_bytes(old_key: bytes, new_key: bytes, thread: bytes) -> bytes:
    """What the new key signs in a key.rotate (§2.6-2): old ‖ new ‖ thread."""
    return old_key + new_key + thread


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
        self.shares: dict[bytes, int] = {}  # live data.share hash -> expires
        self.pending_withdraws: dict[bytes, tuple[bytes, ...]] = {}
        self.pending_requests: set[bytes] = set()
        self.awaiting_receipt: set[bytes] = set()  # ours, not yet acknowledged by the peer
        self.owed_receipts: set[bytes] = set()  # theirs, not yet acknowledged by us
        self.retired: dict[bytes, str] = {}  # peer keys rotated away -> "rotate"|"compromise"
        self.intent: bytes | None = None  # hash of the intentcast this thread answers
        self.generation = 0  # how many times we rotated our own key here (§2.6)

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
        if body.SENT_BY not in ("either", self.role.value):
            raise StateError(f"{body.TYPE} is never sent by the {self.role.value}", clause="§7-2")
        self._agreement_first(body)
        new_state = next_state(self.state, self.role, event_of(body.TYPE, body))
        update = self._check(body, self.role, now, incoming=None)
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
        return Sent(msg, self._log_own(msg, new_state, update))

    def _log_own(self, msg: Signed[Any], new_state: State, update: Callable[[bytes], None]
                 ) -> Entry:
        """Log one of our messages whose rules were checked, and apply what it changes."""
        entry = self.history.append(msg.hash, msg.envelope, outgoing=True)
        self.our_head = msg.hash
        self.state = new_state
        update(msg.hash)
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
        self, new_identity: Identity, *, now: int, msg_id: bytes, reason: str = "rotate"
    ) -> Sent:
        """Move to a new key: a key.rotate signed by the old key, proved by the new (§2.6)."""
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
        sent = self.send(body, now=now, msg_id=msg_id)
        self.identity = new_identity
        self.generation += 1
        return sent

    # -- receiving ----------------------------------------------------------------------------

    def receive(self, data: bytes | Signed[Any], *, now: int) -> Received:
        """Verify and apply a message from the peer (§4.5); ProtocolError if any rule fails."""
        msg = data if isinstance(data, Signed) else self.open(data, now=now)
        if msg.type == ProblemReport.TYPE:  # outside every chain, whatever its thread (§5.6.2)
            return Received(msg, None)
        if msg.thread != self.thread:
            raise _invalid("the message belongs to another thread", "§4.5-5",
                           "$.hdr.thread", Problem.NO_RELATIONSHIP)
        self._check_sender(msg.sender)
        body = msg.body
        if body.SENT_BY not in ("either", self.peer_role.value):
            raise StateError(f"{msg.type} is never sent by the {self.peer_role.value}",
                             clause="§7-2")
        if msg.header.prev != self.peer_head:
            raise _invalid(
                "prev does not link to the last message I hold from you",
                "§4.5-6", "$.hdr.prev", Problem.CHAIN_BROKEN,
            )
        if msg.hash in self.history:
            raise _invalid("this message is already in the history", "§4.5-7",
                           code=Problem.ID_CONFLICT)
        self._agreement_first(body)
        new_state = next_state(self.state, self.peer_role, event_of(msg.type, body))
        update = self._check(body, self.peer_role, now, incoming=msg)
        content = self._open_content(msg)
        entry = self.history.append(msg.hash, msg.envelope, outgoing=False)
        if self.peer_key is None:
            self.peer_key = msg.sender
        self.peer_head = msg.hash
        self.state = new_state
        update(msg.hash)
        if not isinstance(body, Receipt):
            self.owed_receipts.add(msg.hash)
        return Received(msg, entry, content)

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
        body = msg.body
        if msg.recipient != self.peer_key:
            raise _invalid("our own message in the history is not addressed to the peer",
                           "§8.3-2", "$.hdr.to", Problem.NOT_A_PARTY)
        if msg.header.prev != self.our_head:
            raise _invalid("prev does not link to the last message we sent here", "§4.5-6",
                           "$.hdr.prev", Problem.CHAIN_BROKEN)
        if msg.hash in self.history:
            raise _invalid("this message is already in the history", "§4.5-7",
                           code=Problem.ID_CONFLICT)
        if body.SENT_BY not in ("either", self.role.value):
            raise StateError(f"{msg.type} is never sent by the {self.role.value}", clause="§7-2")
        if isinstance(body, KeyRotate) and (
            rotated_to is None or rotated_to.public_key != body.new_key
        ):
            raise _invalid("adopting our own key.rotate needs the identity of its new key",
                           "§8.3-3", "$.body.new_key", Problem.BAD_KEY)
        self._agreement_first(body)
        new_state = next_state(self.state, self.role, event_of(msg.type, body))
        update = self._check(body, self.role, msg.header.created, incoming=None)
        entry = self._log_own(msg, new_state, update)
        if isinstance(body, KeyRotate) and rotated_to is not None:
            self.identity = rotated_to
            self.generation += 1
        return entry

    def open(self, data: bytes, *, now: int) -> Signed[Any]:
        """Decode and verify envelope bytes addressed to us (§3, §4.5); no state changes."""
        return open_envelope(
            data, now=now, recipients=(self.identity.public_key,), limits=self.limits
        )

    def _check_sender(self, sender: bytes) -> None:
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

    def _open_content(self, msg: Signed[Any]) -> FieldsContent | RecordsContent | None:
        if isinstance(msg.body, DataShare | AddressUpdate):
            fields: FieldsContent = open_sealed(
                msg, identity=self.identity, content_type=FieldsContent, limits=self.limits
            )
            return fields
        if isinstance(msg.body, DataReturn):
            records: RecordsContent = open_sealed(
                msg, identity=self.identity, content_type=RecordsContent, limits=self.limits
            )
            return records
        return None

    # -- the rules of each message type (§5), the same for both directions ---------------------

    def _agreement_first(self, body: Body) -> None:
        """Data messages in a relationship with no agreement get ``no_agreement``, the code a
        sender can act on, before the state table is consulted (§5.3-1, §7-3)."""
        if self.agreement is None and isinstance(body, _NEEDS_AGREEMENT):
            raise _invalid("there is no agreement in this relationship yet", "§5.3-1",
                           "$.body.agreement", Problem.NO_AGREEMENT)

    def _need_agreement(self, agreement: bytes) -> None:
        if self.agreement is None or agreement != self.agreement:
            raise _invalid("there is no such agreement in this relationship", "§5.3-1",
                           "$.body.agreement", Problem.NO_AGREEMENT)

    def _check(
        self, body: Body, sender: Role, now: int, *, incoming: Signed[Any] | None
    ) -> Callable[[bytes], None]:
        """Check ``body``'s rules; return the update to apply once the message is accepted."""
        ours = incoming is None

        def nothing(_: bytes) -> None:
            return None

        if isinstance(body, TermsOffer):
            _check_terms(body.terms, "$.body.terms")
            check_enc_key(body.enc_key, path="$.body.enc_key")

            def offered(h: bytes) -> None:
                self.pending_offer, self.offered, self.counter = h, body.terms, None
                if not ours:
                    self.peer_enc_key = body.enc_key

            return offered
        if isinstance(body, TermsAccept | TermsReject):
            if body.offer != self.pending_offer:
                raise _invalid("this answers an offer that is not open", "§5.2.2-1",
                               "$.body.offer")
            if isinstance(body, TermsAccept):
                if body.terms != self.offered:
                    raise _invalid("accepted terms differ from the offer", "§5.2.2-2",
                                   "$.body.terms")

                def agreed(_: bytes) -> None:
                    self.agreement, self.terms = self.pending_offer, self.offered
                    self.pending_offer = None

                return agreed
            if body.counter:
                _check_terms(body.counter, "$.body.counter")

            def refused(_: bytes) -> None:
                self.pending_offer, self.counter = None, body.counter

            return refused
        if isinstance(body, DataShare):
            self._need_agreement(body.agreement)
            if body.expires <= now:
                raise _invalid("the share's expiry has passed", "§5.3.1-3", "$.body.expires")

            def shared(h: bytes) -> None:
                self.shares[h] = body.expires

            return shared
        if isinstance(body, DataWithdraw):
            self._need_agreement(body.agreement)
            unknown = [s for s in body.shares if s not in self.shares]
            if unknown:
                raise _invalid("withdraws a share that is not live", "§5.3.2-1", "$.body.shares")
            # each once, in the order named (§5.3.3-2); all live ones sorted, the same after a
            # restore
            withdrawn = tuple(dict.fromkeys(body.shares)) or tuple(sorted(self.shares))

            def withdrawing(h: bytes) -> None:
                self.pending_withdraws[h] = withdrawn

            return withdrawing
        if isinstance(body, DataErased):
            expected = self.pending_withdraws.get(body.withdraw)
            if expected is None:
                raise _invalid("confirms a withdrawal that is not pending", "§5.3.3-1",
                               "$.body.withdraw")
            if set(body.shares) != set(expected):
                raise _invalid("must confirm exactly the withdrawn shares", "§5.3.3-2",
                               "$.body.shares")

            def erased(_: bytes) -> None:
                for s in self.pending_withdraws.pop(body.withdraw):
                    self.shares.pop(s, None)

            return erased
        if isinstance(body, DataRequest):
            self._need_agreement(body.agreement)
            return self.pending_requests.add
        if isinstance(body, DataReturn):
            if body.request not in self.pending_requests:
                raise _invalid("answers a data request that is not pending", "§5.3.5-1",
                               "$.body.request")
            return lambda _: self.pending_requests.discard(body.request)
        if isinstance(body, AddressUpdate):
            self._need_agreement(body.agreement)
            return nothing
        if isinstance(body, IntentOffer | IntentDecline):
            if body.intent != self.intent:
                raise _invalid("answers another intentcast", "§5.4.2-1", "$.body.intent")
            return nothing
        if isinstance(body, Intentcast):
            if body.terms:
                _check_terms(body.terms, "$.body.terms")

            def opened(h: bytes) -> None:
                self.intent = h

            return opened
        if isinstance(body, Receipt):
            pending = self.owed_receipts if ours else self.awaiting_receipt
            if body.ack not in pending:
                raise _invalid("acknowledges no unacknowledged message of this thread",
                               "§5.6.1-1", "$.body.ack")
            return lambda _: pending.discard(body.ack)
        if isinstance(body, KeyRotate):
            old = self.identity.public_key if ours else self.peer_key
            assert old is not None
            check_key(body.new_key, path="$.body.new_key")
            check_enc_key(body.new_enc_key, path="$.body.new_enc_key")
            verify(
                Context.KEY_ROTATION,
                rotation_proof_bytes(old, body.new_key, self.thread),
                body.proof,
                body.new_key,
            )
            if ours:
                return nothing

            def rotated(_: bytes) -> None:
                self.retired[old] = body.reason
                self.peer_key, self.peer_enc_key = body.new_key, body.new_enc_key

            return rotated
        return nothing

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> bytes:
        """Everything but the identity and the history, for a store (§12 storage).

        The map below is written with its keys in canonical order and every nested map comes
        from ``to_wire`` (canonical by construction), so it is packed directly: this runs once
        per message on a server, and a generic canonicalising walk would dominate its cost.
        """
        return _codec.pack_sorted({
            "agreement": self.agreement,
            "awaiting": sorted(self.awaiting_receipt),
            "counter": [t.to_wire() for t in self.counter] if self.counter is not None else None,
            "generation": self.generation,
            "intent": self.intent,
            "offered": [t.to_wire() for t in self.offered],
            "our_head": self.our_head,
            "owed": sorted(self.owed_receipts),
            "peer_enc_key": self.peer_enc_key,
            "peer_head": self.peer_head,
            "peer_key": self.peer_key,
            "pending_offer": self.pending_offer,
            "requests": sorted(self.pending_requests),
            "retired": [[k, v] for k, v in sorted(self.retired.items())],
            "role": self.role.value,
            "shares": [[k, v] for k, v in sorted(self.shares.items())],
            "state": self.state.value,
            "terms": [t.to_wire() for t in self.terms],
            "thread": self.thread,
            "withdraws": [[k, list(v)] for k, v in sorted(self.pending_withdraws.items())],
        })

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
            rel.shares = dict(s["shares"])
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
