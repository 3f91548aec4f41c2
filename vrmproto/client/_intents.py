"""Intentcasts: a personal RFP to many vendors from a throw-away key, and their offers (§5.4).

The intentcast is stored (:class:`~vrmproto.store.IntentRecord`) before it is sent, and each
vendor's offer (:class:`~vrmproto.store.OfferRecord`) as soon as it arrives, so an intentcast cut
short — the program stopped, the deadline reached — keeps every offer that had come in; the
offers can be taken up later (:meth:`IntentOps.offers`, :meth:`~vrmproto.client.Agent.take_offer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from vrmproto._binding import DiscoveryDocument
from vrmproto._errors import Problem, StateError, ValidationError
from vrmproto._fields import check_record
from vrmproto._messages import Intentcast, IntentDecline, IntentOffer, Money
from vrmproto._relationship import Relationship
from vrmproto._state import Role, State
from vrmproto._vocab import TermRef
from vrmproto.client._agent_base import AgentBase, norm_url
from vrmproto.client._drafts import IntentcastDraft
from vrmproto.client._errors import Transient
from vrmproto.client._fanout import FanoutReport, Progress, Target, fan_out
from vrmproto.client._ledger import Thread, ThreadKind, ThreadMeta
from vrmproto.client._outbox import Delivery
from vrmproto.client._transport import NO_RETRY
from vrmproto.client._views import IntentcastResult, Offer
from vrmproto.store import Commit, IntentRecord, OfferRecord

__all__ = ["IntentOps", "answers", "intent_record_of", "offer_of", "offer_record"]

_ENDED = (State.ENDED.value,)


def intent_record_of(body: Intentcast, intent_id: bytes, sent_ms: int, *,
                     relay_index: int | None = None, relays: Sequence[str] = ()
                     ) -> IntentRecord:  # fmt: skip
    """The stored form of the intentcast ``body`` sent as ``intent_id`` (no vendors asked yet)."""
    price = body.max_price
    return IntentRecord(
        intent_id=intent_id, what=body.what, where=body.where, start_ms=body.start,
        end_ms=body.end, reply_by_ms=body.reply_by, sent_ms=sent_ms,
        max_price=(price.amount, price.currency) if price else None,
        constraints=body.constraints, memberships=body.memberships,
        relay_index=relay_index, relays=tuple(relays),
    )  # fmt: skip


def offer_record(o: Offer, intent_id: bytes, received_ms: int) -> OfferRecord:
    """The stored form of an offer to the intentcast ``intent_id``."""
    return OfferRecord(
        intent_id=intent_id, hash=o.hash, thread=o.thread, vendor=o.vendor, url=o.url,
        vendor_key=o.vendor_key, description=o.description,
        price=(o.price.amount, o.price.currency), valid_until_ms=o.valid_until,
        conditions=o.conditions, accepts_terms=o.accepts_terms, received_ms=received_ms,
    )  # fmt: skip


def offer_of(r: OfferRecord, intent: bytes) -> Offer:
    """An offer as it was stored, ready to take up; ``intent`` is the hash of the intentcast
    message it answers (its thread's)."""
    return Offer(
        vendor=r.vendor, url=r.url, vendor_key=r.vendor_key, thread=r.thread,
        intent=intent, hash=r.hash, description=r.description,
        price=Money(r.price[0], r.price[1]), valid_until=r.valid_until_ms,
        conditions=r.conditions, accepts_terms=r.accepts_terms,
    )  # fmt: skip


def _offers_in(d: Delivery, doc: DiscoveryDocument, url: str) -> list[Offer]:
    return [
        Offer(vendor=doc.name, url=url, vendor_key=doc.key, thread=d.thread, intent=b.intent,
              hash=r.message.hash, description=b.description, price=b.price,
              valid_until=b.valid_until, conditions=b.conditions,
              accepts_terms=b.accepts_terms)
        for r in d.replies if isinstance(b := r.message.body, IntentOffer)
    ]  # fmt: skip


def answers(report: FanoutReport, docs: dict[bytes, DiscoveryDocument]
            ) -> tuple[list[Offer], list[tuple[str, str]]]:  # fmt: skip
    """The offers (cheapest first) and declines that came back with an intentcast's receipts."""
    offers: list[Offer] = []
    declines: list[tuple[str, str]] = []
    for result in report.results:
        d = result.delivery
        if d is None or not d.confirmed:
            continue
        doc = docs[d.thread]
        offers.extend(_offers_in(d, doc, result.url))
        declines.extend((doc.name, b.reason) for b in d.reply_bodies()
                        if isinstance(b, IntentDecline))  # fmt: skip
    offers.sort(key=lambda o: (o.price.amount, o.price.currency, o.vendor))
    return offers, declines


class IntentOps(AgentBase):
    """:meth:`intentcast`."""

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
        An intentcast the wire can't carry (``what`` over 500 characters, §5.4.1) raises
        :class:`~vrmproto.ValidationError` before it is stored or sent.
        """
        reply_by = self.clock() + deadline_ms
        body = Intentcast(
            what=what, reply_by=reply_by, constraints=tuple(constraints),
            memberships=tuple(memberships), where=where, start=start, end=end,
            max_price=max_price, terms=tuple(terms) if terms else None,
        )
        check_record(body, "$.body")  # what every vendor would refuse, before it is kept
        record = intent_record_of(body, self.random_id(), self.clock())
        return await self.intentcast_more(record, body, vendors, progress=progress,
                                          concurrency=concurrency)  # fmt: skip

    async def intentcast_more(self, record: IntentRecord, body: Intentcast,
                              vendors: Sequence[str], *, progress: Progress | None = None,
                              concurrency: int | None = None) -> IntentcastResult:  # fmt: skip
        """Send the stored intentcast ``record`` (whose body is ``body``) to ``vendors`` too:
        each in a fresh thread from the intentcast's identity (§5.4.1), the vendors added to the
        record, their offers stored with the record's as they arrive. For an intentcast whose
        vendors answer through relays later (§15.4-3)."""
        intent_id, reply_by = record.intent_id, body.reply_by
        deadline_ms = max(reply_by - self.clock(), 1)
        record = replace(record, vendors=tuple(dict.fromkeys(
            [*record.vendors, *(norm_url(u) for u in vendors)])))  # fmt: skip
        await self.store.commit(Commit(intents=(record,)))
        docs: dict[bytes, DiscoveryDocument] = {}
        urls, skipped = await self._cast_targets(vendors)
        asked: dict[bytes, str] = {}  # vendor key → the URL it was asked at

        async def job(url: str) -> Delivery:
            d = await self._cast_one(url, body, intent_id, deadline_ms, docs, asked=asked)
            if d.confirmed:  # kept as it arrives: a cut-short intentcast loses no offer
                now = self.clock()
                found = _offers_in(d, docs[d.thread], norm_url(url))
                await self.store.commit(Commit(offers=tuple(offer_record(o, intent_id, now)
                                                            for o in found)))  # fmt: skip
            return d

        def name_of(d: Delivery) -> str | None:
            doc = docs.get(d.thread)
            return doc.name if doc is not None else None

        report = await fan_out([(Target(u, u), u) for u in urls], job,
                               concurrency=concurrency or self.concurrency, progress=progress,
                               name_of=name_of)  # fmt: skip
        offers, declines = answers(report, docs)
        record = await self.store.get_intent(intent_id) or record
        declines = list(dict.fromkeys([*record.declines, *declines]))
        await self.store.commit(Commit(intents=(replace(record, declines=tuple(declines)),)))
        return IntentcastResult(intent_id, reply_by, tuple(offers), tuple(declines), report,
                                skipped=tuple(skipped))  # fmt: skip

    async def _cast_targets(self, vendors: Sequence[str]
                            ) -> tuple[list[str], list[tuple[str, str]]]:  # fmt: skip
        """The base URLs to ask, and each one left out with why: a URL of a vendor key
        already asked, or of a vendor whose relationship with us was ended and none is live
        (checked again by key once each vendor's document is in, :meth:`_cast_one`)."""
        urls: list[str] = []
        skipped: list[tuple[str, str]] = []
        taken: dict[bytes, str] = {}
        for url in dict.fromkeys(norm_url(u) for u in vendors):
            keys = {r.peer_key for r in await self._ours(peer_url=url)}
            why = None
            for key in sorted(keys):
                why = await self._not_to_ask(key, taken)
                if why is not None:
                    break
            if why is not None:
                skipped.append((url, why))
                continue
            taken.update((k, url) for k in keys)
            urls.append(url)
        return urls, skipped

    async def _not_to_ask(self, key: bytes, asked: dict[bytes, str]) -> str | None:
        """Why the vendor signing with ``key`` is not to receive this intentcast, if so."""
        if key in asked:
            return f"the same vendor as {asked[key]}"
        if await self.live_thread(key) is None and await self._ended(key):
            return "you ended your relationship with this vendor"
        return None

    async def _ended(self, key: bytes) -> bool:
        """Whether a vendor relationship of ours with ``key`` was ended (§5.6.4)."""
        for r in await self._ours(peer_key=key, states=_ENDED):
            meta = await self.store.get_thread(r.thread)
            if meta is not None and meta.kind is ThreadKind.VENDOR:
                return True
        return False

    async def intents(self) -> list[IntentRecord]:
        """Every intentcast sent, oldest first."""
        return await self.store.intents()

    async def offers(self, intent_id: bytes | None = None) -> list[Offer]:
        """The offers that answered our intentcasts (``intent_id``'s only, if given), as they
        were stored when they arrived."""
        found = []
        for r in await self.store.offers(intent_id):
            try:
                intent = (await self.ledger.load(r.thread)).rel.intent
            except LookupError:  # the thread expired: the offer still names its intentcast
                intent = None
            found.append(offer_of(r, intent or r.intent_id))
        return found

    async def _cast_one(self, url: str, body: Intentcast, intent_id: bytes, deadline_ms: int,
                        docs: dict[bytes, DiscoveryDocument], *, asked: dict[bytes, str]
                        ) -> Delivery:  # fmt: skip
        """One vendor's branch: its document, a fresh thread, the intentcast sent in it —
        unless the document's key was asked already under another URL, or ended with."""
        reply_by = body.reply_by
        remaining = (reply_by - self.clock()) / 1000
        if remaining <= 0:
            raise Transient("the intentcast's deadline passed")
        doc = await self.client.fetch_discovery(url, role="vendor", timeout_s=remaining,
                                                retry=NO_RETRY)  # fmt: skip
        if Intentcast.TYPE not in doc.types:
            raise ValidationError("this vendor does not receive intentcasts",
                                  code=Problem.UNKNOWN_TYPE, clause="§13.1-10")
        await self._check_pins(url, doc, by_name=False)
        why = await self._not_to_ask(doc.key, asked)
        if why is not None:
            raise StateError(f"not asked: {why}", clause="§5.4.1")
        asked[doc.key] = norm_url(url)
        meta = ThreadMeta(kind=ThreadKind.INTENT, vendor_key=doc.key, name=doc.name,
                          inbox=doc.inbox, history=doc.history, lifetime_ms=deadline_ms,
                          intent_id=intent_id, types=tuple(doc.types),
                          doc_expires_ms=doc.expires)  # fmt: skip
        thread = self.random_id()
        docs[thread] = doc
        rel = Relationship(role=Role.CUSTOMER, identity=self.ledger.identity(meta),
                           thread=thread, peer_key=doc.key, peer_enc_key=doc.enc_key,
                           limits=self.limits)  # fmt: skip
        draft = IntentcastDraft(msg_id=self.random_id(), body=body, reply_by=reply_by)
        remaining = (reply_by - self.clock()) / 1000
        return await self.outbox.send(
            thread, draft, new=Thread(rel, meta, norm_url(url)),
            timeout_s=max(remaining, 0.001), retry=NO_RETRY,  # the deadline bounds it all
        )
