"""Intentcasts: a personal RFP to many vendors from a throw-away key, and their offers (§5.4)."""

from __future__ import annotations

from collections.abc import Sequence

from vrmproto._binding import DiscoveryDocument
from vrmproto._errors import Problem, ValidationError
from vrmproto._messages import Intentcast, IntentDecline, IntentOffer, Money
from vrmproto._relationship import Relationship
from vrmproto._state import Role
from vrmproto._vocab import TermRef
from vrmproto.client._agent_base import AgentBase, norm_url
from vrmproto.client._drafts import IntentcastDraft
from vrmproto.client._errors import Transient
from vrmproto.client._fanout import FanoutReport, Progress, Target, fan_out
from vrmproto.client._ledger import Thread, ThreadKind, ThreadMeta
from vrmproto.client._outbox import Delivery
from vrmproto.client._transport import NO_RETRY
from vrmproto.client._views import IntentcastResult, Offer

__all__ = ["IntentOps", "answers"]


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
        for r in d.replies:
            b = r.message.body
            if isinstance(b, IntentOffer):
                offers.append(Offer(
                    vendor=doc.name, url=result.url, vendor_key=doc.key, thread=d.thread,
                    intent=b.intent, hash=r.message.hash, description=b.description,
                    price=b.price, valid_until=b.valid_until, conditions=b.conditions,
                    accepts_terms=b.accepts_terms,
                ))  # fmt: skip
            elif isinstance(b, IntentDecline):
                declines.append((doc.name, b.reason))
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
        """
        intent_id = self.random_id()
        reply_by = self.clock() + deadline_ms
        body = Intentcast(
            what=what, reply_by=reply_by, constraints=tuple(constraints),
            memberships=tuple(memberships), where=where, start=start, end=end,
            max_price=max_price, terms=tuple(terms) if terms else None,
        )
        docs: dict[bytes, DiscoveryDocument] = {}

        async def job(url: str) -> Delivery:
            return await self._cast_one(url, body, intent_id, deadline_ms, docs)

        report = await fan_out([(Target(norm_url(u), norm_url(u)), u) for u in vendors], job,
                               concurrency=concurrency or self.concurrency, progress=progress)
        offers, declines = answers(report, docs)
        return IntentcastResult(intent_id, reply_by, tuple(offers), tuple(declines), report)

    async def _cast_one(self, url: str, body: Intentcast, intent_id: bytes, deadline_ms: int,
                        docs: dict[bytes, DiscoveryDocument]) -> Delivery:  # fmt: skip
        """One vendor's branch: its document, a fresh thread, the intentcast sent in it."""
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
        meta = ThreadMeta(kind=ThreadKind.INTENT, vendor_key=doc.key, name=doc.name,
                          inbox=doc.inbox, history=doc.history, lifetime_ms=deadline_ms,
                          intent_id=intent_id, types=tuple(doc.types))  # fmt: skip
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
