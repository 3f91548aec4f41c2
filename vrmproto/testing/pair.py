"""An in-memory customer and vendor, for testing VRM apps without a network.

:class:`CustomerVendorPair` is to vrmproto what h11's ``ConnectionPair`` is to HTTP: two real
:class:`~vrmproto.Relationship` engines — the customer's and the vendor's — on one thread, wired
back to back. Everything that would make a test flaky is deterministic: the clock is the
:attr:`~CustomerVendorPair.now` attribute (milliseconds; advance it yourself), message ids count
up, and the keys come from a seed number. Only the sealed boxes of data shares use fresh random
bytes, as libsodium's sealed boxes must::

    from vrmproto.testing.pair import CustomerVendorPair

    pair = CustomerVendorPair()
    pair.agree()                                     # terms.offer → terms.accept
    got = pair.customer_sends(pair.share({"email": "ada@example.org"}))
    assert got.content.fields["email"] == "ada@example.org"
    assert pair.histories_equal()

Delivery goes through a receiver-side replay table like a real inbox's (spec §4.4-4, §12):
the same message again is reported as ``"duplicate"`` and not applied twice; the same sender
and id with a different message is refused with ``id_conflict``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

from vrmproto._errors import Problem, ProtocolError, StateError
from vrmproto._history import History, compare
from vrmproto._keys import Identity, MasterSeed, sha256
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import (
    AddressUpdate,
    Body,
    DataReturn,
    DataShare,
    FieldsContent,
    RecordsContent,
    TermsOffer,
)
from vrmproto._relationship import (
    DEFAULT_LIFETIME_MS,
    Received,
    Relationship,
    Sent,
    sign_problem,
)
from vrmproto._state import Role
from vrmproto._vocab import DATA_FORMAT, DataRecord, TermRef, latest, suggest_category

__all__ = [
    "DEFAULT_NOW",
    "DEFAULT_SHARE_MS",
    "DUPLICATE",
    "CustomerVendorPair",
    "Duplicate",
    "default_terms",
]

#: The pair's clock starts here unless told otherwise: 2026-01-01T00:00:00Z, in ms.
DEFAULT_NOW = 1_767_225_600_000
#: How long a data share made by :meth:`CustomerVendorPair.share` lasts by default: 30 days.
DEFAULT_SHARE_MS = 30 * 86_400_000

Duplicate = Literal["duplicate"]
#: What :meth:`CustomerVendorPair.deliver` returns for a message the receiver already holds.
DUPLICATE: Duplicate = "duplicate"


def _derive(label: bytes, seed: int) -> bytes:
    """32 deterministic bytes for ``label`` and the pair's seed number."""
    return sha256(b"vrmproto.testing.pair\x00" + label + b"\x00" + seed.to_bytes(8, "big"))


def default_terms() -> tuple[TermRef, ...]:
    """The terms :meth:`CustomerVendorPair.agree` offers unless given others (§6.4.1)."""
    return (TermRef.of(latest("vrm.no-tracking")), TermRef.of(latest("vrm.no-third-party")))


class CustomerVendorPair:
    """A customer :class:`~vrmproto.Relationship` and a vendor one, delivering in memory.

    The customer's key is the pairwise key (§2.3) a :class:`~vrmproto.MasterSeed` derives for
    the vendor — or, with ``intent=True``, the throw-away intentcast key of the thread (§2.4).
    The vendor learns the customer's key from the first message, as a real endpoint does.

    Attributes:
        now: the clock, in ms since the epoch; every send and receive uses it. Advance it.
        master: the customer's master seed.
        customer_identity / vendor_identity: the keys each side signs with right now.
        customer / vendor: the two :class:`~vrmproto.Relationship` engines; use them directly
            for anything the helpers do not cover.
        thread: the 16-byte thread id.
        lifetime_ms: how long the messages the pair sends stay valid.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        now: int = DEFAULT_NOW,
        thread: bytes | None = None,
        intent: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        lifetime_ms: int = DEFAULT_LIFETIME_MS,
    ) -> None:
        self.now = now
        self.lifetime_ms = lifetime_ms
        self.master = MasterSeed(_derive(b"customer", seed))
        self.thread = thread if thread is not None else _derive(b"thread", seed)[:16]
        vendor_identity = Identity(_derive(b"vendor", seed))
        if intent:
            customer_identity = self.master.for_intent(self.thread)
        else:
            customer_identity = self.master.pairwise(vendor_identity.public_key)
        self.customer = Relationship(
            role=Role.CUSTOMER,
            identity=customer_identity,
            thread=self.thread,
            peer_key=vendor_identity.public_key,
            peer_enc_key=vendor_identity.enc_public_key,
            limits=limits,
        )
        self.vendor = Relationship(
            role=Role.VENDOR, identity=vendor_identity, thread=self.thread, limits=limits
        )
        self._next_id = 1
        self._reserved: dict[Body, bytes] = {}
        # (receiving role, sender key, message id) -> message hash: the inbox de-dupe table.
        self._seen: dict[tuple[Role, bytes, bytes], bytes] = {}
        self._received: dict[bytes, Received] = {}

    def __repr__(self) -> str:
        state = self.customer.state.value
        return f"<CustomerVendorPair {self.thread.hex()} {state} now={self.now}>"

    # -- who is who ---------------------------------------------------------------------------

    @property
    def customer_identity(self) -> Identity:
        """The identity the customer signs with now (changes when the customer rotates)."""
        return self.customer.identity

    @property
    def vendor_identity(self) -> Identity:
        """The identity the vendor signs with now (changes when the vendor rotates)."""
        return self.vendor.identity

    def side(self, role: Role) -> Relationship:
        """The relationship held by ``role``."""
        return self.customer if role is Role.CUSTOMER else self.vendor

    # -- clock and ids --------------------------------------------------------------------------

    def advance(self, ms: int) -> int:
        """Move the clock forward by ``ms`` and return the new :attr:`now`."""
        if ms < 0:
            raise ValueError("the clock only moves forward")
        self.now += ms
        return self.now

    def next_id(self) -> bytes:
        """A fresh message id: 16 bytes counting up from 1, unique within the pair."""
        msg_id = self._next_id.to_bytes(16, "big")
        self._next_id += 1
        return msg_id

    def _id_for(self, body: Body) -> bytes:
        """The id reserved for ``body`` when it was sealed, else a fresh one."""
        return self._reserved.pop(body, None) or self.next_id()

    # -- sending ----------------------------------------------------------------------------------

    def send(self, by: Role, body: Body, *, msg_id: bytes | None = None) -> Received:
        """``by`` signs ``body`` (:meth:`Relationship.send`); the other side receives it.

        Raises whatever :class:`~vrmproto.ProtocolError` the sender's or the receiver's rules
        raise; a refused call leaves both relationships unchanged: a message the receiver
        refuses is taken out of the sender's history and state again (§8.1-5).
        """
        with self._undone_if_refused(by, body):
            sent = self.sign(by, body, msg_id=msg_id)
            got = self.deliver(sent.message.envelope, to=by.other)
        if got == DUPLICATE:  # pragma: no cover - a fresh id cannot have been seen
            raise AssertionError("a freshly signed message was taken for a duplicate")
        return got

    @contextmanager
    def _undone_if_refused(self, by: Role, body: Body | None = None) -> Iterator[None]:
        """A message the receiver refuses never joined the relationship (§8.1-5): the sender's
        relationship goes back to what it was before it signed — state, key, history — and
        the id reserved for ``body`` is kept for it. The receiver's refusal changed nothing."""
        rel = self.side(by)
        state, identity, length = rel.to_state(compact=True), rel.identity, len(rel.history)
        reserved = self._reserved.get(body) if body is not None else None
        try:
            yield
        except ProtocolError:
            if len(rel.history) != length or rel.to_state(compact=True) != state:
                history = History(rel.history.entries()[:length])
                before = Relationship.from_state(state, identity=identity, history=history,
                                                 limits=rel.limits)  # fmt: skip
                vars(rel).clear()
                vars(rel).update(vars(before))
            if body is not None and reserved is not None:
                self._reserved[body] = reserved
            raise

    def sign(self, by: Role, body: Body, *, msg_id: bytes | None = None) -> Sent:
        """Only the sending half: ``by`` signs ``body``; deliver it later with :meth:`deliver`."""
        return self.side(by).send(
            body,
            now=self.now,
            msg_id=msg_id if msg_id is not None else self._id_for(body),
            lifetime_ms=self.lifetime_ms,
        )

    def customer_sends(self, body: Body, *, msg_id: bytes | None = None) -> Received:
        """The customer sends ``body``; returns what the vendor received."""
        return self.send(Role.CUSTOMER, body, msg_id=msg_id)

    def vendor_sends(self, body: Body, *, msg_id: bytes | None = None) -> Received:
        """The vendor sends ``body``; returns what the customer received."""
        return self.send(Role.VENDOR, body, msg_id=msg_id)

    def exchange(self, body: Body, *, by: Role = Role.CUSTOMER) -> Received:
        """``by`` sends ``body`` and the receiver answers with a signed receipt (§5.6.1).

        Returns what the receiver received (the receipt is in both histories).
        """
        got = self.send(by, body)
        self.send(by.other, got.message.receipt())
        return got

    def deliver(self, data: bytes, *, to: Role) -> Received | Duplicate:
        """Hand envelope bytes to ``to``'s inbox, with replay detection (§4.4-4).

        The message is verified first; then, keyed by (sender, id): the same message again
        returns ``"duplicate"`` and changes nothing, another message under a used id raises
        :class:`~vrmproto.ProtocolError` ``id_conflict``, and anything new is received.
        """
        rel = self.side(to)
        msg = rel.open(data, now=self.now)
        key = (to, msg.sender, msg.id)
        seen = self._seen.get(key)
        if seen is not None:
            if seen == msg.hash:
                return DUPLICATE
            raise ProtocolError(
                "this sender already used this message id for another message",
                code=Problem.ID_CONFLICT,
                clause="§4.4-4",
                path="$.hdr.id",
            )
        got = rel.receive(msg, now=self.now)
        self._seen[key] = msg.hash
        self._received[msg.hash] = got
        return got

    def problem(
        self, by: Role, code: Problem, detail: str, *, ref: bytes | None = None
    ) -> Received:
        """``by`` sends a signed problem report (outside the chain, §5.6.2) to the other side."""
        rel = self.side(by)
        msg = sign_problem(
            code,
            detail,
            identity=rel.identity,
            now=self.now,
            msg_id=self.next_id(),
            to=rel.peer_key,
            thread=self.thread,
            ref=ref,
        )
        got = self.deliver(msg.envelope, to=by.other)
        assert got != DUPLICATE
        return got

    # -- conveniences for the common flows ----------------------------------------------------

    def agree(self, terms: Sequence[TermRef] | None = None) -> bytes:
        """Customer offers ``terms`` (default: no tracking, no third parties), vendor accepts.

        Returns the agreement id — the hash of the terms.offer (§5.2.2).
        """
        offer = self.offer(terms)
        got = self.customer_sends(offer)
        self.vendor_sends(got.message.accept())
        assert self.customer.agreement is not None
        return self.customer.agreement

    def offer(self, terms: Sequence[TermRef] | None = None, *, note: str | None = None) -> (
        TermsOffer
    ):
        """A terms.offer body from the customer, carrying its current encryption key (§5.2.1)."""
        return TermsOffer(
            terms=tuple(terms) if terms is not None else default_terms(),
            enc_key=self.customer_identity.enc_public_key,
            note=note,
        )

    def _agreement(self, agreement: bytes | None) -> bytes:
        if agreement is not None:
            return agreement
        if self.customer.agreement is None:
            raise StateError("no agreement yet: call agree() first, or pass agreement=")
        return self.customer.agreement

    def share(
        self,
        fields: Mapping[str, str],
        *,
        purposes: Iterable[int] = (1,),
        categories: Iterable[int] | None = None,
        expires: int | None = None,
        agreement: bytes | None = None,
    ) -> DataShare:
        """A data.share body sealing ``fields`` to the vendor (§5.3.1, §5.5).

        ``categories`` default to :func:`~vrmproto._vocab.suggest_category` of each field name,
        ``expires`` to 30 days from :attr:`now`, ``agreement`` to the customer's agreement.
        The seal names the id the next :meth:`customer_sends` of this body will use.
        """
        msg_id = self.next_id()
        cats = (
            tuple(categories)
            if categories is not None
            else tuple(sorted({suggest_category(name) for name in fields}))
        )
        body = DataShare(
            agreement=self._agreement(agreement),
            purposes=tuple(purposes),
            categories=cats,
            expires=expires if expires is not None else self.now + DEFAULT_SHARE_MS,
            sealed=self.customer.seal(FieldsContent(fields=dict(fields)), msg_id=msg_id),
        )
        self._reserved[body] = msg_id
        return body

    def address_update(
        self, fields: Mapping[str, str], *, agreement: bytes | None = None
    ) -> AddressUpdate:
        """An address.update body sealing the new contact ``fields`` to the vendor (§5.3.6)."""
        msg_id = self.next_id()
        body = AddressUpdate(
            agreement=self._agreement(agreement),
            sealed=self.customer.seal(FieldsContent(fields=dict(fields)), msg_id=msg_id),
        )
        self._reserved[body] = msg_id
        return body

    def data_return(
        self, records: Iterable[DataRecord], *, request: bytes | None = None
    ) -> DataReturn:
        """A data.return body from the vendor sealing ``records`` to the customer (§5.3.5).

        ``request`` defaults to the one data.request the vendor has pending.
        """
        if request is None:
            pending = sorted(self.vendor.pending_requests)
            if len(pending) != 1:
                raise StateError(f"{len(pending)} data requests are pending; pass request=")
            request = pending[0]
        msg_id = self.next_id()
        body = DataReturn(
            request=request,
            format=DATA_FORMAT,
            sealed=self.vendor.seal(RecordsContent(records=tuple(records)), msg_id=msg_id),
        )
        self._reserved[body] = msg_id
        return body

    def rotate_customer(self, *, reason: str = "rotate") -> Received:
        """The customer moves to its next pairwise key generation (§2.6); the vendor receives.

        The key.rotate stays valid for :attr:`lifetime_ms`, as every message the pair sends."""
        new = self.master.pairwise(self.vendor_identity.public_key, self.customer.generation + 1)
        with self._undone_if_refused(Role.CUSTOMER):
            sent = self.customer.rotate(new, now=self.now, msg_id=self.next_id(), reason=reason,
                                        lifetime_ms=self.lifetime_ms)
            got = self.deliver(sent.message.envelope, to=Role.VENDOR)
        assert got != DUPLICATE
        return got

    # -- comparing ----------------------------------------------------------------------------

    def received(self, msg_hash: bytes) -> Received | None:
        """What :meth:`deliver` returned for the message with this hash, if it was delivered."""
        return self._received.get(msg_hash)

    def histories_equal(self) -> bool:
        """True when both sides hold the same log (same entries, same head link, §8.3)."""
        ours, theirs = self.customer.history, self.vendor.history
        return (
            len(ours) == len(theirs)
            and ours.head == theirs.head
            and compare(ours.entries(), theirs.entries()) is None
        )
