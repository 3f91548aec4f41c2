"""A relationship deleted for never reaching an agreement is told to the feed's consumers
(§11.8-3, session 21b).

Session 21 made the deletion blank the bodies of the relationship's events for a reader that
comes later ("forgotten": true). A consumer reading incrementally — a CRM over a webhook,
``vrm vendor events --follow``, the Tryton bridge — had applied those events before, and the
feed had no event saying the relationship was gone: the CRM kept the intentcast's text, the
terms and the customer's note for ever. Now the deletion writes a ``relationship.expired``
event in the same commit (never forgotten itself, no personal data), readers are woken by it,
and ``changes_of`` makes it a note on a relationship the CRM knows (none for one it never
saw: a resync from scratch, where every event of it is forgotten, creates no party for it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
from _vendor_proc import ACCEPTED, DAY_MS, Customer, terms
from test_s21_store_expired_feed import WHAT, Vendor

from tests._tryton import notes_of, open_crm
from vrmproto._messages import Intentcast, TermsOffer
from vrmproto.crm import Forget, Note, changes_of
from vrmproto.server._events import EXPIRED, follow, kinds, wakeup_of

postgres_cluster = _postgres.postgres_cluster


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def vendor(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Vendor]:
    async with _postgres.opened_store(request, tmp_path, request.param) as store:
        yield Vendor(store)


async def since(v: Vendor, pos: int) -> list[dict[str, Any]]:
    return [e.as_json() async for e in follow(v.store, None, pos, clock=lambda: v.now)]


async def test_an_incremental_reader_is_told_the_relationship_was_deleted(
    vendor: Vendor,
) -> None:
    v = vendor
    caster, agreed = Customer(v.endpoint.identity), Customer(v.endpoint.identity)
    await v.send(caster, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                    memberships=()))  # fmt: skip
    await v.send(agreed, TermsOffer(terms=terms(*ACCEPTED),
                                    enc_key=agreed.identity.enc_public_key))  # fmt: skip
    applied = await since(v, 0)
    cursor = applied[-1]["pos"]
    last_seq = max(e["seq"] for e in applied if e["relationship"] == caster.thread.hex())
    v.now += v.endpoint.limits.open_relationship_ttl_ms + 1
    assert await v.endpoint.expire_unagreed() == 1
    (told,) = await since(v, cursor)
    assert told["kind"] == EXPIRED == "relationship.expired"
    assert told["relationship"] == caster.thread.hex()
    assert told["seq"] > last_seq  # after the relationship's every other event
    assert told["from"] == "vendor"
    assert told["type"] is None  # no message tells it
    assert told["created"] == told["recorded"] == v.now
    assert told["body"] == {"last_message": applied[0]["recorded"],
                            "ttl_ms": v.endpoint.limits.open_relationship_ttl_ms}  # fmt: skip
    assert told["personal"] is None
    assert "forgotten" not in told
    assert told["id"].startswith("evt_")
    assert len(told["id"]) == 4 + 64
    assert WHAT not in json.dumps(told)
    assert EXPIRED in kinds()
    forget, note = changes_of(told)  # what was made of it goes first (session 22)
    assert forget == Forget(caster.thread.hex())
    assert isinstance(note, Note)
    assert note.if_known
    assert note.relationship == caster.thread.hex()
    assert "expired" in note.text
    assert [e["id"] for e in await since(v, cursor)] == [told["id"]]  # stable on a read again


async def test_a_follower_is_woken_by_the_deletion(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = vendor
    caster = Customer(v.endpoint.identity)
    await v.send(caster, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                    memberships=()))  # fmt: skip
    head = await v.store.feed_head()
    read_to_the_end = asyncio.Event()
    events = v.store.events

    async def reading(after: int = 0, limit: int = 1000) -> Any:
        found = await events(after, limit)
        if not found:
            read_to_the_end.set()
        return found

    monkeypatch.setattr(v.store, "events", reading)
    wakeup = wakeup_of(v.endpoint, poll_s=3600.0)  # only a wake-up brings the event in time
    feed = follow(v.store, wakeup, head, clock=lambda: v.now)
    waiting = asyncio.ensure_future(anext(feed))
    try:
        await read_to_the_end.wait()  # the reader found nothing new and waits
        v.now += v.endpoint.limits.open_relationship_ttl_ms + 1
        assert await v.endpoint.expire_unagreed() == 1
        told = await asyncio.wait_for(waiting, 10)
    finally:
        waiting.cancel()
        await feed.aclose()
    assert told.kind == EXPIRED


@pytest.fixture
def crm(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return open_crm(tmp_path_factory, tmp_path)  # it skips without Tryton


@pytest.mark.slow
async def test_tryton_notes_the_deletion_on_a_party_it_has_and_makes_none_for_it(
    crm: Any, tmp_path: Path
) -> None:
    """Applied as it came: the party gets a note that the vendor deleted the relationship (and
    the notes made of it go: tests/test_s22_crm_expired_tryton.py).
    Read later (a resync, or a bridge connected after the deletion): every event of it is
    forgotten, and the deletion's makes no party of its own."""
    from vrmproto.store import MemoryStore  # noqa: PLC0415

    v = Vendor(MemoryStore())
    seen, unseen = Customer(v.endpoint.identity), Customer(v.endpoint.identity)
    await v.send(seen, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                  memberships=()))  # fmt: skip
    for event in await since(v, 0):
        crm.apply(event, v.now)
    applied = await v.store.feed_head()
    await v.send(unseen, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                    memberships=()))  # fmt: skip
    v.now += v.endpoint.limits.open_relationship_ttl_ms + 1
    assert await v.endpoint.expire_unagreed() == 2
    for event in await since(v, applied):
        crm.apply(event, v.now)
    notes = notes_of("crm")
    assert set(notes) == {"vrm-" + seen.thread.hex()}  # none made for the one never seen
    (deleted,) = notes["vrm-" + seen.thread.hex()]  # the intentcast's note went (session 22)
    assert WHAT not in deleted
    assert "expired without an agreement" in deleted
