"""The customer's agent: one person's keys, relationships and outbox, talking to many vendors.

:class:`Agent` is the node logic the ``vrm`` command line and the demo drive. It holds one
:class:`~vrmproto.MasterSeed` and derives every identity from it: a pairwise key per vendor,
moved on by each rotation (§2.3, §2.6), and a throw-away key per intentcast (§2.4) — so vendors
cannot correlate the person across each other. Everything it knows is in the
:class:`~vrmproto.store.Store`; restarting from the same store resumes every relationship.

Every message goes through the :class:`~vrmproto.client.Outbox` (persist before sending, deliver
in order per thread, queue what cannot be delivered now). The many-vendor operations —
:meth:`Agent.update_address` and :meth:`Agent.intentcast` — fan out in parallel with a progress
callback (:mod:`vrmproto.client._fanout`).

A relationship is named by a *ref*: its 16-byte thread id, the thread id in hex (or a unique
prefix of at least 6 hex digits), or the vendor's name or base URL (the agreed relationship with
that vendor, else the most recent one).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiohttp

from vrmproto._binding import DiscoveryDocument
from vrmproto._closing import AsyncClosing
from vrmproto._errors import (
    PeerProblemError,
    Problem,
    ProtocolError,
    StateError,
    TransportError,
    ValidationError,
    VrmError,
)
from vrmproto._history import Divergence, Entry, compare, verify_entries
from vrmproto._keys import Identity, MasterSeed, check_enc_key, fingerprint, key_to_text
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import (
    AddressUpdate,
    DataRequest,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Intentcast,
    IntentDecline,
    IntentOffer,
    Money,
    RecordsContent,
    RelationshipEnd,
    TermsAccept,
    TermsOffer,
    TermsReject,
)
from vrmproto._relationship import Relationship, Sent
from vrmproto._state import Role
from vrmproto._vocab import (
    DATA_FORMAT,
    DataRecord,
    TermRef,
    latest,
    parse_category,
    parse_purpose,
)
from vrmproto.client._errors import Queued, Transient
from vrmproto.client._fanout import (
    DEFAULT_CONCURRENCY,
    FanoutReport,
    Progress,
    Target,
    fan_out,
)
from vrmproto.client._http import (
    NO_RETRY,
    Clock,
    EndpointClient,
    RandomId,
    RetryPolicy,
    default_clock,
    default_random_id,
)
from vrmproto.client._ledger import (
    KIND_INTENT,
    KIND_VENDOR,
    META_PREFIX,
    Ledger,
    Thread,
    ThreadMeta,
    to_row,
)
from vrmproto.client._outbox import (
    DEFAULT_SCHEDULE,
    Builder,
    Delivery,
    Draft,
    Outbox,
    OutboxRun,
)
from vrmproto.client._paths import endpoint_path
from vrmproto.client._transport import Transport
from vrmproto.store import Commit, OutboxItem, Store

__all__ = [
    "DEFAULT_TERMS",
    "Agent",
    "ConnectResult",
    "ConnectStatus",
    "IntentcastResult",
    "KeyChangedError",
    "Offer",
    "Ref",
    "RelationshipView",
]

#: The terms an agent proffers unless told otherwise (§6.4.1).
DEFAULT_TERMS: tuple[TermRef, ...] = (
    TermRef.of(latest("vrm.no-tracking")),
    TermRef.of(latest("vrm.no-third-party")),
)

#: Retries inside one fan-out branch: quick, because the outbox takes over after a failure.
FANOUT_RETRY = RetryPolicy(attempts=2, base_s=0.05, cap_s=0.25, max_retry_after_s=1.0)

_MASTER_CHECK_KEY = "client.master"
#: Store meta key prefix: the ``types`` of the discovery document a thread was opened with.
_TYPES_PREFIX = "client.types."
#: The message type each draft becomes (§13.1-3: a sender sends only the types a vendor lists).
_DRAFT_TYPES = {
    "terms.offer": "terms.offer",
    "terms.accept-counter": "terms.offer",
    "data.share": "data.share",
    "data.withdraw": "data.withdraw",
    "data.request": "data.request",
    "address.update": "address.update",
    "intentcast": "intentcast",
    "key.rotate": "key.rotate",
    "relationship.end": "relationship.end",
}

Ref = bytes | str
#: Rotations of our own key a restored store may have missed; :meth:`Agent.reconcile` tries the
#: keys of that many later generations when the vendor no longer knows ours (§12.5-4).
MAX_LOST_ROTATIONS = 8
ConnectStatus = Literal["accepted", "rejected", "countered", "queued", "pending"]


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """The vendor's answer to a terms offer (§5.2).

    ``accepted``: agreed on ``terms`` (``agreement`` is the agreement id); ``rejected``: a
    signed no, with ``reason`` and the ``refused`` term ids; ``countered``: a no with ``counter``
    terms the vendor would accept instead (:meth:`Agent.accept_counter`); ``queued``: the
    offer waits in the outbox; ``pending``: delivered, the vendor has not answered yet.
    """

    thread: bytes
    vendor: str
    url: str
    status: ConnectStatus
    terms: tuple[TermRef, ...]
    agreement: bytes | None = None
    reason: str = ""
    refused: tuple[str, ...] = ()
    counter: tuple[TermRef, ...] | None = None
    delivery: Delivery | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """A vendor's signed answer to an intentcast (§5.4.2), ready to :meth:`Agent.take_offer`."""

    vendor: str
    url: str
    vendor_key: bytes
    thread: bytes
    intent: bytes
    hash: bytes  # the offer message's hash: take it up with in_reply_to = hash
    description: str
    price: Money
    valid_until: int
    conditions: tuple[str, ...]
    accepts_terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IntentcastResult:
    """The answers to one intentcast: ``offers`` cheapest first, and who declined why."""

    intent_id: bytes
    reply_by: int
    offers: tuple[Offer, ...]
    declines: tuple[tuple[str, str], ...]
    report: FanoutReport


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What :meth:`Agent.reconcile` found and did (§8.3).

    ``kind``: ``"equal"``; ``"adopted"`` — we were behind and took every entry we lacked;
    ``"ahead"`` — the vendor lacks entries (nothing to adopt, §8.3-5); ``"crossing"`` — both
    sent at once (§8.3-6); ``"fork"`` — the logs disagree, or an entry we lacked could not be
    applied (``stopped`` says why): nothing past that point is adopted. ``divergence`` is where
    the logs parted before anything was adopted; ``adopted`` counts the entries taken.
    """

    thread: bytes
    kind: Literal["equal", "adopted", "ahead", "crossing", "fork"]
    adopted: int = 0
    divergence: Divergence | None = None
    stopped: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class RelationshipView:
    """One relationship as a person looks at it."""

    thread: bytes
    kind: str  # "vendor" or "intent"
    vendor: str
    url: str
    state: str
    terms: tuple[TermRef, ...]
    agreement: bytes | None
    shares: tuple[tuple[bytes, int], ...]  # live data.share hashes and their expiry (ms)
    last_activity_ms: int
    pending: int  # messages waiting in the outbox
    last_problem: str
    local_key: bytes
    peer_key: bytes
    generation: int

    @property
    def vendor_fingerprint(self) -> str:
        return fingerprint(self.peer_key)


class KeyChangedError(ValidationError):
    """A vendor we already know answers with another key (§11.10-1, §13.1-4): refused.

    ``url`` and ``name`` say where and under which name we know the vendor; ``pinned`` are the
    keys we hold for it, ``offered`` the key of the document just fetched. A legitimate re-key
    is accepted only by a person's explicit decision: ``Agent.connect(accept_new_key=fp)``
    with the new key's fingerprint, checked with the vendor another way.
    """

    def __init__(self, url: str, name: str, *, by: str, pinned: Iterable[bytes],
                 offered: bytes) -> None:  # fmt: skip
        self.url = url
        self.name = name
        self.by = by
        self.pinned = tuple(sorted(pinned))
        self.offered = offered
        held = ", ".join(fingerprint(k) for k in self.pinned)
        where = f"at {url}" if by == "url" else f"named {name!r}"
        super().__init__(
            f"the vendor {where} now signs with key {fingerprint(offered)}, not the key you "
            f"hold for it ({held}); refused: it may be an impostor. Accept the new key only "
            "after checking its fingerprint with the vendor another way",
            code=Problem.BAD_KEY, clause="§11.10-1", path="$.discovery.key",
        )  # fmt: skip


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/")


def _names_key(text: str, key: bytes) -> bool:
    """Whether a person's ``text`` names ``key``: its fingerprint (§2.5-3, dashes optional) or
    the full key in its text form (§2.5-1)."""
    text = text.strip()
    fp = fingerprint(key)
    return text.lower() in (fp, fp.replace("-", "")) or text == key_to_text(key)


def _agreement(t: Thread) -> bytes:
    if t.rel.agreement is None:
        raise StateError("there is no agreement in this relationship", clause="§5.3-1")
    return t.rel.agreement


def _refusal(d: Delivery) -> Delivery:
    """Raise a refusal or a drop; hand back a confirmed or queued delivery."""
    if d.status in ("refused", "dropped"):
        assert d.error is not None
        raise d.error
    return d


class Agent(AsyncClosing):
    """A customer's node logic: see the module docstring. Open with :meth:`open`."""

    def __init__(
        self,
        store: Store,
        master: MasterSeed,
        *,
        client: Transport,
        owns_client: bool,
        clock: Clock,
        random_id: RandomId,
        terms: Sequence[TermRef],
        endpoint: str | None,
        concurrency: int,
        fanout_retry: RetryPolicy,
        schedule: RetryPolicy,
        limits: Limits,
        rand: Callable[[], float],
    ) -> None:
        self.store = store
        self.client = client
        self._owns_client = owns_client
        self.clock = clock
        self.random_id = random_id
        self.terms = tuple(terms)
        self.endpoint = endpoint
        self.concurrency = concurrency
        self.fanout_retry = fanout_retry
        self.limits = limits
        self.ledger = Ledger(store, master, limits=limits)
        self.outbox = Outbox(
            self.ledger, client, self._builders(), clock=clock, random_id=random_id,
            schedule=schedule, rand=rand, concurrency=concurrency,
        )

    @classmethod
    async def open(
        cls,
        store: Store,
        master_seed: MasterSeed | bytes,
        *,
        clock: Clock = default_clock,
        random_id: RandomId = default_random_id,
        client: Transport | None = None,
        session: aiohttp.ClientSession | None = None,
        terms: Sequence[TermRef] = DEFAULT_TERMS,
        endpoint: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        fanout_retry: RetryPolicy = FANOUT_RETRY,
        schedule: RetryPolicy = DEFAULT_SCHEDULE,
        limits: Limits = DEFAULT_LIMITS,
        rand: Callable[[], float] = random.random,
    ) -> Agent:
        """Open the agent of ``master_seed`` on ``store``.

        A store belongs to one master seed: opening it with another raises ``ValueError``.
        ``client`` (any :class:`~vrmproto.client.Transport`, or an aiohttp ``session`` for a new
        HTTP client) may be shared; otherwise the agent makes one and closes it in
        :meth:`close`. ``endpoint`` is this agent's own base URL; each vendor is told a path of
        its own under it (:meth:`endpoint_for`). ``retry`` governs one-vendor requests,
        ``fanout_retry`` each branch of a fan-out, ``schedule`` the outbox's retries.
        """
        master = master_seed if isinstance(master_seed, MasterSeed) else MasterSeed(master_seed)
        check = master.for_intent(bytes(16)).public_key  # public: identifies, reveals nothing
        stored = await store.get_meta(_MASTER_CHECK_KEY)
        if stored is None:
            await store.commit(Commit(meta=((_MASTER_CHECK_KEY, check),)))
        elif stored != check:
            raise ValueError("this store belongs to another master seed")
        owns = client is None
        if client is None:
            client = EndpointClient(
                session=session, clock=clock, random_id=random_id, retry=retry,
                timeout_s=timeout_s, limits=limits,
            )
        return cls(
            store, master, client=client, owns_client=owns, clock=clock, random_id=random_id,
            terms=terms, endpoint=endpoint, concurrency=concurrency, fanout_retry=fanout_retry,
            schedule=schedule, limits=limits, rand=rand,
        )

    async def close(self) -> None:
        """Close the HTTP client if the agent made it (the store is the caller's)."""
        if self._owns_client and isinstance(self.client, AsyncClosing):
            await self.client.close()

    # -- how each message is signed, from its draft (run when the thread's turn comes) --------

    def _builders(self) -> dict[str, Builder]:
        return {
            "terms.offer": self._build_terms_offer,
            "terms.accept-counter": self._build_accept_counter,
            "data.share": self._build_share,
            "data.withdraw": self._build_withdraw,
            "data.request": self._build_request,
            "address.update": self._build_address,
            "intentcast": self._build_intentcast,
            "key.rotate": self._build_rotate,
            "relationship.end": self._build_end,
        }

    @staticmethod
    def _sign(t: Thread, body: Any, d: Draft, now: int) -> Sent:
        return t.rel.send(body, now=now, msg_id=d.msg_id, lifetime_ms=t.meta.lifetime_ms)

    def _build_terms_offer(self, t: Thread, d: Draft, now: int) -> Sent:
        a = d.args
        body = TermsOffer(
            terms=tuple(TermRef.from_wire(x) for x in a["terms"]),
            enc_key=t.rel.identity.enc_public_key, note=a["note"],
            in_reply_to=a["in_reply_to"], endpoint=a["endpoint"],
        )
        return self._sign(t, body, d, now)

    def _build_accept_counter(self, t: Thread, d: Draft, now: int) -> Sent:
        if not t.rel.counter:
            raise StateError("the vendor made no counter-offer", clause="§5.2.3")
        body = TermsOffer(terms=t.rel.counter, enc_key=t.rel.identity.enc_public_key,
                          endpoint=self.endpoint_for(t.id))
        return self._sign(t, body, d, now)

    @staticmethod
    def _sealable(t: Thread) -> None:
        """Refuse to seal to an unusable key a relationship may hold from before §13.1-9."""
        if t.rel.peer_enc_key is not None:
            check_enc_key(t.rel.peer_enc_key, path="$.discovery.enc_key")

    def _build_share(self, t: Thread, d: Draft, now: int) -> Sent:
        self._sealable(t)
        a = d.args
        body = DataShare(
            agreement=_agreement(t), purposes=tuple(a["purposes"]),
            categories=tuple(a["categories"]), expires=a["expires"],
            sealed=t.rel.seal(FieldsContent(fields=a["fields"]), msg_id=d.msg_id),
        )
        return self._sign(t, body, d, now)

    def _build_withdraw(self, t: Thread, d: Draft, now: int) -> Sent:
        body = DataWithdraw(agreement=_agreement(t), shares=tuple(d.args["shares"]),
                            reason=d.args["reason"])
        return self._sign(t, body, d, now)

    def _build_request(self, t: Thread, d: Draft, now: int) -> Sent:
        return self._sign(t, DataRequest(agreement=_agreement(t), format=DATA_FORMAT), d, now)

    def _build_address(self, t: Thread, d: Draft, now: int) -> Sent:
        self._sealable(t)
        body = AddressUpdate(
            agreement=_agreement(t),
            sealed=t.rel.seal(FieldsContent(fields=d.args["fields"]), msg_id=d.msg_id),
        )
        return self._sign(t, body, d, now)

    def _build_intentcast(self, t: Thread, d: Draft, now: int) -> Sent:
        lifetime = d.args["reply_by"] - now
        if lifetime <= 0:
            raise ValidationError("the intentcast's deadline has passed", code=Problem.EXPIRED,
                                  clause="§5.4.1")
        body = Intentcast.from_wire(d.args["body"])
        return t.rel.send(body, now=now, msg_id=d.msg_id, lifetime_ms=lifetime)

    def _build_rotate(self, t: Thread, d: Draft, now: int) -> Sent:
        if t.meta.kind != KIND_VENDOR:
            raise StateError("only a vendor relationship's key can be rotated", clause="§2.6")
        sent = t.rel.rotate(self._next_identity(t), now=now, msg_id=d.msg_id,
                            reason=d.args["reason"])
        t.meta.generation += 1
        return sent

    def _build_end(self, t: Thread, d: Draft, now: int) -> Sent:
        return self._sign(t, RelationshipEnd(reason=d.args["reason"]), d, now)

    def endpoint_for(self, thread: bytes) -> str | None:
        """The base URL of our agent endpoint told to the vendor of ``thread``: a path of its
        own under :attr:`endpoint`, so vendors hold no common identifier (§11.6-1, §12.11-4)."""
        if not self.endpoint:
            return None
        return self.endpoint.rstrip("/") + endpoint_path(self.ledger.master, thread)

    def _draft(self, op: str, **args: Any) -> Draft:
        return Draft(op, args, self.random_id())

    # -- finding relationships -------------------------------------------------------------

    async def resolve(self, ref: Ref) -> bytes:
        """The thread id ``ref`` names (see the module docstring); LookupError if none."""
        if isinstance(ref, bytes):
            if len(ref) != 16:
                raise LookupError("a thread id is 16 bytes")
            return ref
        text = ref.strip()
        records = [r for r in await self.store.relationships() if r.role == "customer"]
        if len(text) == 32:
            try:
                return bytes.fromhex(text)
            except ValueError:
                pass
        if len(text) >= 6 and all(c in "0123456789abcdef" for c in text.lower()):
            hits = [r for r in records if r.thread.hex().startswith(text.lower())]
            if len(hits) == 1:
                return hits[0].thread
        named = [r for r in records
                 if r.label == text or _norm_url(r.peer_url) == _norm_url(text)]
        if not named:
            raise LookupError(f"no relationship with {ref!r}")
        named.sort(key=lambda r: (r.state == "agreed", r.updated_ms))
        return named[-1].thread

    async def _generation_for(self, vendor_key: bytes) -> int:
        """The pairwise key generation now in use with this vendor (0 if none yet, §2.6)."""
        gen = 0
        for r in await self.store.find_relationship(peer_key=vendor_key):
            raw = await self.store.get_meta(META_PREFIX + r.thread.hex())
            if raw is not None:
                meta = ThreadMeta.from_bytes(raw)
                if meta.kind == KIND_VENDOR and meta.vendor_key == vendor_key:
                    gen = max(gen, meta.generation)
        return gen

    async def _check_pins(self, url: str, doc: DiscoveryDocument, *, by_name: bool,
                          accept_new_key: str | None = None) -> None:  # fmt: skip
        """Refuse a known vendor's document signed by another key (§11.10-1, §13.1-4).

        A vendor is known by its base URL (any relationship with it, intentcasts included) and,
        when ``by_name``, by the name it claimed in a relationship of ours: a new URL claiming a
        known vendor's name with an unknown key is an impostor until a person decides otherwise.
        The keys held are the current peer keys of those relationships (a ``key.rotate`` in them
        moves the pin, §2.6). ``accept_new_key`` — the fingerprint of ``doc.key``, or the key in
        its text form — is that explicit decision.
        """
        at_url: set[bytes] = set()
        named: set[bytes] = set()
        name = doc.name.strip().lower()
        for r in await self.store.relationships():
            if r.role != "customer":
                continue
            if _norm_url(r.peer_url) == _norm_url(url):
                at_url.add(r.peer_key)
            elif by_name and r.label.strip().lower() == name:
                raw = await self.store.get_meta(META_PREFIX + r.thread.hex())
                if raw is not None and ThreadMeta.from_bytes(raw).kind == KIND_VENDOR:
                    named.add(r.peer_key)
        for by, keys in (("url", at_url), ("name", named)):
            if keys and doc.key not in keys:
                if accept_new_key is not None and _names_key(accept_new_key, doc.key):
                    return
                raise KeyChangedError(_norm_url(url), doc.name, by=by, pinned=keys,
                                      offered=doc.key)  # fmt: skip

    async def _check_type(self, thread: bytes, op: str) -> None:
        """Refuse a message of a type the vendor did not list in ``types`` (§13.1-3, §13.1-10)."""
        raw = await self.store.get_meta(_TYPES_PREFIX + thread.hex())
        mtype = _DRAFT_TYPES.get(op)
        if raw is None or mtype is None:  # opened before types were kept: nothing to check
            return
        types = json.loads(raw)
        if mtype not in types:
            raise StateError(
                f"this vendor does not receive {mtype} (its discovery document lists "
                f"{', '.join(types) or 'no types'})", code=Problem.UNKNOWN_TYPE,
                clause="§13.1-10",
            )  # fmt: skip

    def _lifetime(self, doc: DiscoveryDocument) -> int:
        published = doc.limits.get("max_lifetime_ms", self.limits.max_lifetime_ms)
        return max(60_000, min(published, self.limits.max_lifetime_ms))

    async def _send(self, ref: Ref, draft: Draft) -> Delivery:
        thread = await self.resolve(ref)
        await self._check_type(thread, draft.op)
        return _refusal(await self.outbox.send(thread, draft))

    # -- terms -----------------------------------------------------------------------------

    async def connect(
        self,
        base_url: str,
        terms: Sequence[TermRef] | None = None,
        *,
        note: str | None = None,
        in_reply_to: bytes | None = None,
        expected_key: bytes | None = None,
        timeout_s: float | None = None,
        accept_new_key: str | None = None,
    ) -> ConnectResult:
        """Proffer our terms to the vendor at ``base_url`` in a new relationship (§5.2.1).

        Fetches and verifies the vendor's discovery document (pinned to ``expected_key`` if
        given), derives our pairwise identity for that vendor, sends a terms offer on a fresh
        thread and reads the answer. A verified refusal raises
        :class:`~vrmproto.PeerProblemError`.

        A vendor we already know — by URL, or by the name it claims — must sign with a key we
        hold for it: otherwise :class:`KeyChangedError`, unless ``accept_new_key`` is the new
        key's fingerprint (a person's explicit decision, §11.10-1). The document must be a
        vendor's, speak our version and list ``terms.offer`` (§13.1-10).
        """
        doc = await self.client.fetch_discovery(base_url, expected_key, role="vendor",
                                                timeout_s=timeout_s)  # fmt: skip
        if "terms.offer" not in doc.types:
            raise ValidationError("this endpoint does not receive terms.offer: it opens no "
                                  "relationships", code=Problem.UNKNOWN_TYPE,
                                  clause="§13.1-10")  # fmt: skip
        await self._check_pins(base_url, doc, by_name=True, accept_new_key=accept_new_key)
        meta = ThreadMeta(
            kind=KIND_VENDOR, vendor_key=doc.key, name=doc.name, inbox=doc.inbox,
            history=doc.history, lifetime_ms=self._lifetime(doc),
            generation=await self._generation_for(doc.key),
        )
        thread = self.random_id()
        rel = Relationship(
            role=Role.CUSTOMER, identity=self.ledger.identity(meta), thread=thread,
            peer_key=doc.key, peer_enc_key=doc.enc_key, limits=self.limits,
        )
        t = Thread(rel, meta, _norm_url(base_url))
        offered = tuple(terms) if terms is not None else self.terms
        draft = self._draft("terms.offer", terms=[x.to_wire() for x in offered], note=note,
                            in_reply_to=in_reply_to, endpoint=self.endpoint_for(thread))
        await self.store.commit(Commit(meta=(
            (_TYPES_PREFIX + thread.hex(), json.dumps(list(doc.types)).encode()),
        )))  # fmt: skip
        d = await self.outbox.send(thread, draft, new=t, timeout_s=timeout_s)
        return self._connect_result(t, offered, _refusal(d))

    @staticmethod
    def _connect_result(t: Thread, offered: tuple[TermRef, ...], d: Delivery) -> ConnectResult:
        status: ConnectStatus = "queued" if d.status == "queued" else "pending"
        agreement: bytes | None = None
        reason = ""
        refused: tuple[str, ...] = ()
        counter: tuple[TermRef, ...] | None = None
        for body in d.reply_bodies() if d.status == "confirmed" else ():
            if isinstance(body, TermsAccept):
                status, agreement = "accepted", body.offer
                break
            if isinstance(body, TermsReject):
                status = "countered" if body.counter else "rejected"
                reason, refused, counter = body.reason, body.refused, body.counter
                break
        return ConnectResult(t.id, t.meta.name, t.url, status, offered, agreement, reason,
                             refused, counter, d)

    async def accept_counter(self, ref: Ref) -> ConnectResult:
        """Offer the vendor's counter-terms back as our new offer (§5.2.3)."""
        thread = await self.resolve(ref)
        t = await self.ledger.load(thread)
        offered = t.rel.counter or ()
        d = _refusal(await self.outbox.send(thread, self._draft("terms.accept-counter")))
        return self._connect_result(await self.ledger.load(thread), offered, d)

    async def decline_counter(self, ref: Ref, reason: str = "the counter-offer is declined"
                              ) -> Delivery:
        """Decline the vendor's counter-offer: end the relationship (§5.6.4)."""
        return await self.end(ref, reason)

    # -- data ------------------------------------------------------------------------------

    async def share(
        self,
        ref: Ref,
        fields: Mapping[str, str],
        *,
        purposes: Iterable[int | str],
        categories: Iterable[int | str],
        expires_ms: int,
    ) -> Delivery:
        """Share ``fields`` with one vendor under the agreement, sealed to it (§5.3.1).

        ``purposes`` and ``categories`` are Kantara numbers or names (§6.6, §6.7);
        ``expires_ms`` is when the vendor must delete the data (ms since the epoch). The
        delivery's ``msg_hash`` names the share for :meth:`withdraw`.
        """
        FieldsContent(fields=dict(fields))  # refuse bad fields before anything is stored
        draft = self._draft(
            "data.share", fields=dict(fields),
            purposes=[parse_purpose(p) for p in purposes],
            categories=[parse_category(c) for c in categories], expires=expires_ms,
        )
        return await self._send(ref, draft)

    async def withdraw(
        self, ref: Ref, shares: Iterable[bytes] = (), *, reason: str | None = None
    ) -> Delivery:
        """Withdraw consent for some shares (all if none are named); the vendor confirms
        with data.erased (§5.3.2)."""
        return await self._send(ref, self._draft("data.withdraw", shares=list(shares),
                                                 reason=reason))

    async def request_data(self, ref: Ref) -> tuple[DataRecord, ...]:
        """Ask the vendor for what it holds about us; the records it returns (§5.3.4, §6.8).

        Raises :class:`Queued` if the request could not be delivered now (the answer will be
        in the history once it is). An empty tuple means the vendor answered later, not in
        the same exchange.
        """
        d = await self._send(ref, self._draft("data.request"))
        if d.status == "queued":
            raise Queued("the data request waits in the outbox",
                         cause=d.error if isinstance(d.error, TransportError) else None)
        for r in d.replies:
            if isinstance(r.message.body, DataReturn) and isinstance(r.content, RecordsContent):
                return tuple(r.content.records)
        return ()

    # -- many vendors at once --------------------------------------------------------------

    async def update_address(
        self,
        fields: Mapping[str, str],
        *,
        progress: Progress | None = None,
        concurrency: int | None = None,
        timeout_s: float | None = None,
    ) -> FanoutReport:
        """Send new contact details to every vendor we have an agreement with, at once (§5.3.6).

        Each vendor gets its own sealed copy. Every copy is stored in the outbox, in one
        commit, before the first is sent (§12.7-5), so a crash mid-way leaves the rest to
        :meth:`run_outbox`; vendors that cannot be reached now stay ``queued`` there too.
        """
        FieldsContent(fields=dict(fields))
        records = [r for r in await self.store.relationships()
                   if r.role == "customer" and r.state == "agreed"]
        unsigned: dict[bytes, VrmError] = {}
        for r in records:  # a vendor that receives no address.update fails alone (§13.1-10)
            try:
                await self._check_type(r.thread, "address.update")
            except StateError as exc:
                unsigned[r.thread] = exc
        drafts = {r.thread: self._draft("address.update", fields=dict(fields))
                  for r in records if r.thread not in unsigned}  # fmt: skip
        unsigned.update(await self.outbox.enqueue(list(drafts.items())))

        async def job(thread: bytes) -> Delivery:
            if thread in unsigned:
                raise unsigned[thread]
            return await self.outbox.deliver(thread, drafts[thread], timeout_s=timeout_s,
                                             retry=self.fanout_retry)

        targets = [(Target(r.label, r.peer_url, r.thread), r.thread) for r in records]
        return await fan_out(targets, job, concurrency=concurrency or self.concurrency,
                             progress=progress)

    async def intentcast(
        self,
        what: str,
        *,
        vendors: Sequence[str],
        where: str | None = None,
        start: int | None = None,
        end: int | None = None,
        constraints: Sequence[str] = (),
        memberships: Sequence[str] = (),
        max_price: Money | None = None,
        terms: Sequence[TermRef] | None = None,
        deadline_ms: int = 30_000,
        progress: Progress | None = None,
        concurrency: int | None = None,
    ) -> IntentcastResult:
        """Broadcast a personal RFP to ``vendors`` (base URLs) from a throw-away key (§5.4.1).

        One fresh identity for this intentcast (§2.4), a fresh thread per vendor; answers are
        collected until every vendor answered or ``deadline_ms`` passed (the intentcast's
        ``reply_by``, which is also when its envelopes expire). Offers are ranked by price.
        """
        intent_id = self.random_id()
        identity = self.ledger.master.for_intent(intent_id)
        reply_by = self.clock() + deadline_ms
        body = Intentcast(
            what=what, reply_by=reply_by, constraints=tuple(constraints),
            memberships=tuple(memberships), where=where, start=start, end=end,
            max_price=max_price, terms=tuple(terms) if terms else None,
        )
        docs: dict[bytes, DiscoveryDocument] = {}

        async def job(url: str) -> Delivery:
            remaining = (reply_by - self.clock()) / 1000
            if remaining <= 0:
                raise Transient("the intentcast's deadline passed")
            doc = await self.client.fetch_discovery(url, role="vendor", timeout_s=remaining,
                                                    retry=NO_RETRY)  # fmt: skip
            if "intentcast" not in doc.types:
                raise ValidationError("this vendor does not receive intentcasts",
                                      code=Problem.UNKNOWN_TYPE, clause="§13.1-10")
            await self._check_pins(url, doc, by_name=False)
            meta = ThreadMeta(kind=KIND_INTENT, vendor_key=doc.key, name=doc.name,
                              inbox=doc.inbox, history=doc.history, lifetime_ms=deadline_ms,
                              intent_id=intent_id)
            thread = self.random_id()
            docs[thread] = doc
            rel = Relationship(role=Role.CUSTOMER, identity=identity, thread=thread,
                               peer_key=doc.key, peer_enc_key=doc.enc_key, limits=self.limits)
            draft = self._draft("intentcast", body=body.to_wire(), reply_by=reply_by)
            remaining = (reply_by - self.clock()) / 1000
            return await self.outbox.send(
                thread, draft, new=Thread(rel, meta, _norm_url(url)),
                timeout_s=max(remaining, 0.001), retry=NO_RETRY,  # the deadline bounds it all
            )

        report = await fan_out([(Target(_norm_url(u), _norm_url(u)), u) for u in vendors], job,
                               concurrency=concurrency or self.concurrency, progress=progress)
        offers: list[Offer] = []
        declines: list[tuple[str, str]] = []
        for result in report.results:
            d = result.delivery
            if d is None or not d.confirmed:
                continue
            doc = docs[d.thread]
            for r in d.replies:
                b = r.message.body
                if isinstance(b, IntentOffer):
                    offers.append(Offer(
                        vendor=doc.name, url=result.url, vendor_key=doc.key, thread=d.thread,
                        intent=b.intent, hash=r.message.hash, description=b.description,
                        price=b.price, valid_until=b.valid_until, conditions=b.conditions,
                        accepts_terms=b.accepts_terms,
                    ))
                elif isinstance(b, IntentDecline):
                    declines.append((doc.name, b.reason))
        offers.sort(key=lambda o: (o.price.amount, o.price.currency, o.vendor))
        return IntentcastResult(intent_id, reply_by, tuple(offers), tuple(declines), report)

    async def take_offer(
        self, offer: Offer, terms: Sequence[TermRef] | None = None, *, note: str | None = None
    ) -> ConnectResult:
        """Take up an intentcast offer: connect to that vendor under our terms, now with our
        pairwise key, naming the offer (``in_reply_to``, §5.2.1)."""
        return await self.connect(offer.url, terms, note=note, in_reply_to=offer.hash,
                                  expected_key=offer.vendor_key)

    # -- control ---------------------------------------------------------------------------

    async def rotate_key(self, ref: Ref, *, reason: str = "rotate") -> Delivery:
        """Move this relationship to our next pairwise key (§2.6); ``reason="compromise"``
        revokes the old one."""
        return await self._send(ref, self._draft("key.rotate", reason=reason))

    async def end(self, ref: Ref, reason: str | None = None) -> Delivery:
        """End the relationship (§5.6.4); nothing more may be sent in it."""
        return await self._send(ref, self._draft("relationship.end", reason=reason))

    # -- the outbox ------------------------------------------------------------------------

    async def run_outbox(self, now: int | None = None) -> OutboxRun:
        """Deliver every due queued message (call it periodically); see :class:`Outbox`."""
        return await self.outbox.run(now)

    async def pending(self) -> list[OutboxItem]:
        """Every signed message waiting in the outbox, oldest first."""
        return await self.store.outbox_all()

    # -- looking back ----------------------------------------------------------------------

    async def relationships(self) -> list[RelationshipView]:
        """Every relationship, most recently active first."""
        waiting: dict[bytes, int] = {}
        for item in await self.store.outbox_all():
            waiting[item.thread] = waiting.get(item.thread, 0) + 1
        views = []
        for record in await self.store.relationships():
            if record.role != "customer":
                continue
            try:
                t = await self.ledger.load(record.thread)
            except LookupError:
                continue
            rel = t.rel
            views.append(RelationshipView(
                thread=record.thread, kind=t.meta.kind, vendor=t.meta.name, url=t.url,
                state=rel.state.value, terms=rel.terms, agreement=rel.agreement,
                shares=tuple(sorted(rel.shares.items())),
                last_activity_ms=t.meta.last_activity_ms or record.updated_ms,
                pending=waiting.get(record.thread, 0) + len(t.meta.drafts),
                last_problem=t.meta.last_problem, local_key=rel.identity.public_key,
                peer_key=record.peer_key, generation=t.meta.generation,
            ))
        views.sort(key=lambda v: v.last_activity_ms, reverse=True)
        return views

    async def history(self, ref: Ref) -> list[Entry]:
        """Our history of the relationship, every link and signature verified (§8.2)."""
        return await self.ledger.entries(await self.resolve(ref))

    async def compare_history(self, ref: Ref) -> Divergence | None:
        """Fetch the vendor's copy of the history, verify it, and compare it with ours (§8.3).

        None when both are identical; otherwise where they part. Raises
        :class:`~vrmproto.ProtocolError` if the vendor's copy does not verify.
        """
        thread = await self.resolve(ref)
        async with self.ledger.lock(thread):
            t = await self.ledger.load(thread)
            ours = await self.ledger.entries(thread)
        if t.rel.peer_key is None:
            raise StateError("the vendor's key is not known", clause="§12.5")
        theirs = await self._their_history(t)
        return compare(ours, theirs)

    async def _their_history(self, t: Thread) -> list[Entry]:
        """The vendor's copy of ``t``'s history, verified (§8.3-2).

        The vendor answers only our current key (§12.5-4). A store restored from a backup may
        not know of rotations made after it was taken, so when the vendor says we are not a
        party, the next pairwise keys are tried: the master seed derives them all (§2.3).
        """
        assert t.rel.peer_key is not None
        meta = t.meta
        generations = 1 if meta.kind == KIND_INTENT else 1 + MAX_LOST_ROTATIONS
        for generation in range(meta.generation, meta.generation + generations):
            identity = self.ledger.identity(replace(meta, generation=generation))
            try:
                theirs = await self.client.fetch_history(
                    meta.history, identity, t.id, t.rel.peer_key
                )
            except PeerProblemError as exc:
                if exc.problem is not Problem.NOT_A_PARTY or generation + 1 == (
                    meta.generation + generations
                ):
                    raise
                continue
            verify_entries(theirs)
            return theirs
        raise AssertionError("unreachable")  # pragma: no cover

    def _next_identity(self, t: Thread) -> Identity:
        """Our key in ``t`` after one more rotation (§2.3, §2.6)."""
        return self.ledger.identity(replace(t.meta, generation=t.meta.generation + 1))

    async def reconcile(self, ref: Ref) -> Reconciliation:
        """Compare our history with the vendor's and, if ours lacks entries, adopt them (§8.3).

        The vendor's copy is verified first (§8.3-2); each entry we lack is then applied in
        order, by the rules we would have applied at the time (:meth:`Relationship.adopt`), and
        everything adopted is stored in one commit. The thread stays locked throughout, so
        nothing is sent in it while we are behind (§8.3-3). Call it for every relationship after
        restoring a backup of the store, before sending anything (§8.3-4). Raises
        :class:`~vrmproto.ProtocolError` if the vendor's copy does not verify.
        """
        thread = await self.resolve(ref)
        async with self.ledger.lock(thread):
            t = await self.ledger.load(thread)
            if t.rel.peer_key is None:
                raise StateError("the vendor's key is not known", clause="§12.5")
            ours = await self.ledger.entries(thread)
            theirs = await self._their_history(t)
            div = compare(ours, theirs)
            if div is None:
                return Reconciliation(thread, "equal")
            if div.kind != "behind":
                return Reconciliation(thread, div.kind, divergence=div)
            work, rows, stopped = t.copy(), [], None
            now = self.clock()
            rotated_to = self._next_identity(work)  # should the entries hold a rotation of ours
            for entry in theirs[div.index :]:
                try:
                    adopted = work.rel.adopt(entry.envelope, rotated_to=rotated_to)
                except ProtocolError as exc:
                    stopped = exc
                    break
                if work.rel.identity is rotated_to:
                    work.meta.generation += 1
                    rotated_to = self._next_identity(work)
                rows.append(to_row(thread, adopted, now))
            if rows:
                work.meta.last_activity_ms = now
                try:
                    await self.store.commit(Commit(
                        relationships=(self.ledger.record(work, now),),
                        history=tuple(rows),
                        meta=(self.ledger.meta_item(work),),
                    ))  # fmt: skip
                except BaseException:
                    self.ledger.forget(thread)
                    raise
                self.ledger.adopt(work)
            kind: Literal["adopted", "fork"] = "fork" if stopped is not None else "adopted"
            return Reconciliation(thread, kind, len(rows), div, stopped)
