"""Opening a relationship: our terms proffered, the vendor's answer read (§5.2)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from vrmproto._binding import DiscoveryDocument, discovery_url
from vrmproto._errors import Problem, ProtocolError, ValidationError
from vrmproto._fields import check_fields
from vrmproto._messages import RelationshipEnd, TermsAccept, TermsOffer, TermsReject
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto._vocab import TermRef
from vrmproto.client._agent_base import AgentBase, norm_url, refusal
from vrmproto.client._drafts import AcceptCounterDraft, DeclineDraft, TermsOfferDraft
from vrmproto.client._errors import InvalidResponse, PeerRuleError, Unreachable
from vrmproto.client._ledger import Thread, ThreadKind, ThreadMeta
from vrmproto.client._meta import lost_by_vendor
from vrmproto.client._moved import dated, left, moved_to
from vrmproto.client._outbox import Delivery
from vrmproto.client._views import ConnectResult, ConnectStatus, Offer, Ref

__all__ = ["TermsOps"]

#: The store lock a connect holds per vendor key, from the live-relationship check to the new
#: thread's commit (one live relationship per vendor key, across processes).
CONNECT_LOCK = b"client.connect:"


def connect_result(t: Thread, offered: tuple[TermRef, ...], d: Delivery) -> ConnectResult:
    """What the vendor answered to our terms offer, read from the replies of ``d``."""
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
                         refused, counter, d)  # fmt: skip


class TermsOps(AgentBase):
    """:meth:`connect`, :meth:`accept_counter`, :meth:`decline_counter`, :meth:`take_offer`."""

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

        One live relationship per vendor key: if we already have one with the vendor whose
        document this is — under any URL naming it (``localhost`` or ``127.0.0.1``) — that
        one is answered, nothing is sent (``existing`` is true; end it first to proffer other
        terms, :meth:`end`). Unless the vendor's last answer in it was ``no_relationship``: it
        no longer holds it (it lost its data, §4.5-5), nothing sent there is taken, and it
        cannot be ended either, so a new relationship opens beside it. If that document names
        other inbox or history URLs, the vendor moved: the relationship follows it
        (:meth:`_follow`).

        Fetches and verifies the vendor's discovery document (pinned to ``expected_key`` if
        given), derives our pairwise identity for that vendor, sends a terms offer on a fresh
        thread and reads the answer. A verified refusal raises
        :class:`~vrmproto.PeerProblemError`.

        A vendor we already know — by URL, or by the name it claims — must sign with a key we
        hold for it: otherwise :class:`KeyChangedError`, unless ``accept_new_key`` is the new
        key's fingerprint (a person's explicit decision, §11.10-1). The document must be a
        vendor's, speak our version and list ``terms.offer`` (§13.1-10): otherwise
        :class:`~vrmproto.client.InvalidResponse` (a ``PeerRuleError``, also the
        :class:`~vrmproto.ProtocolError` it carries as ``error``).

        ``timeout_s`` bounds the whole wait for the vendor — its document, then our offer's
        delivery, every retry: an offer not delivered by then is ``queued`` in the outbox.
        """
        # What every vendor would refuse, before anything is asked, signed or kept (§5.2.1)
        check_fields(TermsOffer, "$.body", note=note, in_reply_to=in_reply_to,
                     terms=tuple(terms) if terms is not None else self.terms)  # fmt: skip
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        doc = await self._vendor_document(base_url, expected_key, deadline)
        await self._check_pins(base_url, doc, by_name=True, accept_new_key=accept_new_key)
        # Ours, then the store's: the store's excludes other processes on the same data
        # (two `vrm connect` at once, §11.11-2); it sorts before the thread's lock ("client.t…").
        async with self.vendor_locks.hold(doc.key), self.store.lock(CONNECT_LOCK + doc.key):
            live = await self.live_thread(doc.key)
            if live is not None and not await self._lost(live):
                await self._follow(live, base_url, doc)
                return await self._existing(live)
            return await self._open(base_url, doc, terms, note=note, in_reply_to=in_reply_to,
                                    timeout_s=left(deadline))  # fmt: skip

    async def _lost(self, thread: bytes) -> bool:
        """Whether the vendor's last answer in ``thread`` was that it holds no such
        relationship (§4.5-5; the thread's ``last_problem``)."""
        t = await self.ledger.load(thread)
        return lost_by_vendor(t.meta.last_problem)

    async def _vendor_document(self, base_url: str, expected_key: bytes | None,
                               deadline: float | None) -> DiscoveryDocument:  # fmt: skip
        """The vendor's discovery document, verified (§13.1), by ``deadline`` (the loop's time;
        retries included). What is wrong with it is the vendor's:
        :class:`~vrmproto.client._errors.PeerRuleError`, whatever the transport — as is a
        document that does not list ``terms.offer``: it opens no relationships (§13.1-10)."""
        what = f"the discovery document of {norm_url(base_url)}"
        try:
            async with asyncio.timeout_at(deadline):
                doc = await self.client.fetch_discovery(base_url, expected_key, role="vendor",
                                                        timeout_s=left(deadline))  # fmt: skip
        except TimeoutError:  # the deadline's: the transport's own failures are Unreachable
            raise Unreachable(f"GET {discovery_url(base_url)}: timed out") from None
        except ProtocolError as exc:
            raise InvalidResponse.of(exc, what) from None
        if TermsOffer.TYPE not in doc.types:
            raise PeerRuleError(f"the vendor at {norm_url(base_url)} opens no relationships: "
                                "its discovery document does not list terms.offer",
                                error=ValidationError(
                                    "this endpoint does not receive terms.offer: it opens no "
                                    "relationships", code=Problem.UNKNOWN_TYPE,
                                    clause="§13.1-10", path="$.types"))  # fmt: skip
        return doc

    async def _open(self, base_url: str, doc: DiscoveryDocument, terms: Sequence[TermRef] | None,
                    *, note: str | None, in_reply_to: bytes | None, timeout_s: float | None
                    ) -> ConnectResult:  # fmt: skip
        """A new relationship with the vendor of ``doc``: our terms offer on a fresh thread."""
        meta = ThreadMeta(
            kind=ThreadKind.VENDOR, vendor_key=doc.key, name=doc.name, inbox=doc.inbox,
            history=doc.history, lifetime_ms=self._lifetime(doc),
            generation=await self._generation_for(doc.key), types=tuple(doc.types),
            doc_expires_ms=doc.expires,
        )  # fmt: skip
        thread = self.random_id()
        rel = Relationship(
            role=Role.CUSTOMER, identity=self.ledger.identity(meta), thread=thread,
            peer_key=doc.key, peer_enc_key=doc.enc_key, limits=self.limits,
        )
        t = Thread(rel, meta, norm_url(base_url))
        offered = tuple(terms) if terms is not None else self.terms
        draft = TermsOfferDraft(msg_id=self.random_id(), terms=offered, note=note,
                                in_reply_to=in_reply_to, endpoint=self.endpoint_for(thread))
        d = await self.outbox.send(thread, draft, new=t, timeout_s=timeout_s)
        return connect_result(t, offered, refusal(d))

    async def _follow(self, thread: bytes, base_url: str, doc: DiscoveryDocument) -> None:
        """The vendor of ``thread``, reached at ``base_url`` with a document its key signed
        (pinned, :meth:`_check_pins`) that names other inbox or history URLs than the ones the
        relationship was using: it moved, and the relationship follows it (§13.1) — what waits
        in the outbox goes there next. Before, ``vrm connect NEW-URL`` answered "already
        connected" and every message kept going to the old address until it expired. Either
        way the document's expiry is stored with the thread (§13.1-8): the relationship uses
        it, whoever delivers next, until then (:mod:`vrmproto.client._moved`)."""
        async with self.ledger.lock(thread):
            t = await self.ledger.load(thread)
            self.outbox.documents.read(thread)
            moved = moved_to(t, doc)
            if not dated(t, doc) and not moved:
                return
            if moved:
                t.url = norm_url(base_url)
            try:
                await self.store.commit(self.ledger.commit((t,), self.clock()))
            except BaseException:
                self.ledger.forget(thread)
                raise
            self.ledger.adopt(t)

    async def _existing(self, thread: bytes) -> ConnectResult:
        """The live relationship we already have with a vendor, as a connect's answer."""
        t = await self.ledger.load(thread)
        rel = t.rel
        status: ConnectStatus = "pending"
        if rel.state is State.AGREED:
            status = "accepted"
        elif rel.state is State.COUNTERED:
            status = "countered"
        elif await self.ledger.pending(thread) or t.meta.drafts:
            status = "queued"
        terms = rel.terms if rel.state is State.AGREED else rel.offered
        return ConnectResult(t.id, t.meta.name, t.url, status, terms, rel.agreement,
                             counter=rel.counter, existing=True)  # fmt: skip

    async def accept_counter(self, ref: Ref, *, timeout_s: float | None = None) -> ConnectResult:
        """Offer the vendor's counter-terms back as our new offer (§5.2.3); ``timeout_s``
        bounds the whole wait, as for :meth:`connect`."""
        thread = await self.resolve(ref)
        t = await self.ledger.load(thread)
        offered = t.rel.counter or ()
        d = refusal(await self.outbox.send(thread, AcceptCounterDraft(msg_id=self.random_id()),
                                           timeout_s=timeout_s))  # fmt: skip
        return connect_result(await self.ledger.load(thread), offered, d)

    async def decline_counter(self, ref: Ref, reason: str = "the counter-offer is declined",
                              *, timeout_s: float | None = None) -> Delivery:  # fmt: skip
        """Decline the vendor's counter-offer: end the relationship (§5.6.4); ``timeout_s`` as
        for :meth:`connect`. :class:`~vrmproto.StateError` if no counter-offer is open (it was
        accepted meanwhile, or never made): a relationship is not ended for it."""
        check_fields(RelationshipEnd, "$.body", reason=reason)  # before it is signed or kept
        return await self._send(ref, DeclineDraft(msg_id=self.random_id(), reason=reason),
                                timeout_s=timeout_s)  # fmt: skip

    async def take_offer(
        self, offer: Offer, terms: Sequence[TermRef] | None = None, *, note: str | None = None,
        timeout_s: float | None = None,
    ) -> ConnectResult:
        """Take up an intentcast offer: connect to that vendor under our terms, now with our
        pairwise key, naming the offer (``in_reply_to``, §5.2.1); ``timeout_s`` as for
        :meth:`connect`."""
        return await self.connect(offer.url, terms, note=note, in_reply_to=offer.hash,
                                  expected_key=offer.vendor_key, timeout_s=timeout_s)  # fmt: skip
