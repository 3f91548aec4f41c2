"""An address.update replaces the value of a held field and keeps how it is held (§5.3.6-2):
the value a customer shared for a time, or withdrew, goes when the share expires or is
withdrawn, updated or not (§12.10-2, §12.10-4). A field not held before is held as the update
gives it, without expiry.

Against the reference vendor (its :class:`~vrmproto.server.Endpoint`, in this process) on each
store that keeps held rows: memory, SQLite and PostgreSQL (skipped where there is none).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
from _vendor_proc import ACCEPTED, DAY_MS, VENDOR_SEED, Customer, now_ms, terms

from vrmproto import Identity, RecordsContent
from vrmproto._binding import decode_replies
from vrmproto._limits import DEFAULT_LIMITS
from vrmproto._messages import (
    AddressUpdate,
    DataRequest,
    DataShare,
    DataWithdraw,
    FieldsContent,
    TermsOffer,
)
from vrmproto._relationship import Received
from vrmproto._vocab import DATA_FORMAT
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.store import Store

postgres_cluster = _postgres.postgres_cluster

STORES = ["memory", "sqlite", "postgres"]


class Vendor:
    """The reference vendor on ``store``, its clock :attr:`now` (ms), and one customer whose
    messages are made and read at that clock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.now = now_ms()
        self.endpoint = Endpoint(Identity(VENDOR_SEED), store=store, clock=lambda: self.now,
                                 policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip
        self.c = Customer(self.endpoint.identity)

    async def send(self, body: Any, *, msg_id: bytes | None = None) -> list[Received]:
        """``body`` from the customer at :attr:`now`; the vendor's replies, as received."""
        msg = self.c.rel.send(body, now=self.now, msg_id=msg_id or os.urandom(16)).message
        r = await self.endpoint.handle_inbox(msg.envelope)
        assert r.status == 200, r.body
        got = [self.c.rel.receive(env, now=self.now)
               for env in decode_replies(r.body, limits=DEFAULT_LIMITS)]  # fmt: skip
        assert got[0].message.type == "receipt"
        assert got[0].message.body.ack == msg.hash
        return got

    @property
    def agreement(self) -> bytes:
        assert self.c.rel.agreement is not None
        return self.c.rel.agreement

    async def agree(self) -> None:
        enc_key = self.c.identity.enc_public_key
        got = await self.send(TermsOffer(terms=terms(*ACCEPTED), enc_key=enc_key))
        assert [g.message.type for g in got] == ["receipt", "terms.accept"]

    async def share(self, fields: dict[str, str], *, expires: int) -> bytes:
        msg_id = os.urandom(16)
        sealed = self.c.rel.seal(FieldsContent(fields=fields), msg_id=msg_id)
        got = await self.send(DataShare(agreement=self.agreement, purposes=(2,),
                                        categories=(2,), expires=expires, sealed=sealed),
                              msg_id=msg_id)  # fmt: skip
        return got[0].message.body.ack  # type: ignore[no-any-return]

    async def update(self, fields: dict[str, str]) -> bytes:
        msg_id = os.urandom(16)
        sealed = self.c.rel.seal(FieldsContent(fields=fields), msg_id=msg_id)
        got = await self.send(AddressUpdate(agreement=self.agreement, sealed=sealed),
                              msg_id=msg_id)  # fmt: skip
        return got[0].message.body.ack  # type: ignore[no-any-return]

    async def returned(self) -> dict[str, str]:
        """The provided records of a data.return, field -> value."""
        got = await self.send(DataRequest(agreement=self.agreement, format=DATA_FORMAT))
        assert [g.message.type for g in got] == ["receipt", "data.return"]
        content = got[1].content
        assert isinstance(content, RecordsContent)
        return {r.field: r.value for r in content.records if r.source == "provided"}


@pytest.fixture(params=STORES)
async def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Vendor]:
    async with _postgres.opened_store(request, tmp_path, request.param) as store:
        v = Vendor(store)
        await v.agree()
        yield v


async def test_an_updated_field_goes_when_its_share_expires(vendor: Vendor) -> None:
    """1: a share of email for a week, then an address update of email: the new email is held
    until the week ends (§5.3.6-2, §12.10-4), not for ever."""
    v = vendor
    week = v.now + 7 * DAY_MS
    share = await v.share({"email": "old@example.org"}, expires=week)
    await v.update({"email": "new@example.org", "phone": "+1 555 0100"})
    held = {h.field: h for h in await v.store.held(v.c.thread)}
    assert (held["email"].value, held["email"].share, held["email"].expires_ms) == (
        "new@example.org", share, week)  # fmt: skip
    assert held["email"].purposes == (2,)
    assert held["phone"].expires_ms is None  # not held before: as the update gives it
    assert await v.returned() == {"email": "new@example.org", "phone": "+1 555 0100"}

    v.now = week  # a share expires at its expires (§12.10-4)
    assert await v.returned() == {"phone": "+1 555 0100"}
    assert await v.endpoint.expire_shares() == 1
    assert [h.field for h in await v.store.held(v.c.thread)] == ["phone"]


async def test_an_updated_field_goes_when_its_share_is_withdrawn(vendor: Vendor) -> None:
    """2: withdrawing the share after an update of its field deletes the updated value too
    (§12.10-2); a field the update added, and another share's, stay."""
    v = vendor
    share = await v.share({"email": "old@example.org"}, expires=v.now + 7 * DAY_MS)
    other = await v.share({"city": "Paris"}, expires=v.now + 7 * DAY_MS)
    await v.update({"email": "new@example.org", "phone": "+1 555 0100"})
    got = await v.send(DataWithdraw(agreement=v.agreement, shares=(share,)))
    assert [g.message.type for g in got] == ["receipt", "data.erased"]
    assert tuple(got[1].message.body.shares) == (share,)
    assert await v.returned() == {"city": "Paris", "phone": "+1 555 0100"}
    held = {h.field: h.share for h in await v.store.held(v.c.thread)}
    assert held["city"] == other
    assert set(held) == {"city", "phone"}


async def test_an_update_after_expiry_is_held_as_it_gives_it(vendor: Vendor) -> None:
    """A field whose share has expired is no longer held: an update of it is held as a new
    field, without expiry, and a later sweep of the expired share leaves it."""
    v = vendor
    await v.share({"email": "old@example.org"}, expires=v.now + DAY_MS)
    v.now += DAY_MS
    update = await v.update({"email": "new@example.org"})
    held = await v.store.held(v.c.thread)
    assert [(h.field, h.share, h.expires_ms) for h in held] == [("email", update, None)]
    assert await v.endpoint.expire_shares() == 1  # the share's body is erased all the same
    assert await v.returned() == {"email": "new@example.org"}


async def test_a_share_updated_after_it_expired_keeps_no_personal_data_in_the_feed(
    vendor: Vendor,
) -> None:
    """An update that arrives after a share expired but before the sweep replaces the share's
    held row: the sweep must still delete the share's data from its data.shared event
    (§12.10-4), not only erase its body — it found the share by its rows alone."""
    v = vendor
    share = await v.share({"email": "old@example.org"}, expires=v.now + DAY_MS)
    v.now += DAY_MS
    await v.update({"email": "new@example.org"})
    shared = [e for e in await v.store.events() if e.msg_hash == share]
    assert len(shared) == 1
    assert shared[0].personal is not None
    assert await v.endpoint.expire_shares() == 1
    shared = [e for e in await v.store.events() if e.msg_hash == share]
    assert shared[0].personal is None
