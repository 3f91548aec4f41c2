"""The Tryton bridge deletes what it made of a relationship the vendor deleted (§11.8-3,
session 22).

A relationship that never reached an agreement expires: the vendor SHOULD delete it "with its
whole history and the data it holds from it", and the feed tells its consumers so
(``relationship.expired``, session 21b). The bridge only noted it on the party: the notes it
had written from the customer's messages — the intentcast's text (what, where, when, the
memberships), the terms proffered with the customer's own note — stayed in the vendor's CRM
for ever, and the lead for an offer nobody can take up any more stayed open in the sales
pipeline. A vendor running the bridge as its CRM expects the CRM to follow the deletion. Now
``changes_of`` gives a :class:`~vrmproto.crm.Forget` change before the note, and the bridge
deletes the notes it wrote from the relationship's events and any field still held from it,
marks the relationship's open lead lost (an offer taken up lives on the new relationship's
party and is left alone), and keeps what the vendor's staff wrote themselves.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import DAY_MS, Customer, terms
from test_s21_store_expired_feed import MEMBER, NOTE, WHAT, WHERE, Vendor

from tests._tryton import notes_of, open_crm
from vrmproto._messages import Intentcast, TermsOffer
from vrmproto.crm import Forget, Note, changes_of
from vrmproto.server._events import follow
from vrmproto.store import MemoryStore


@pytest.fixture
def crm(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return open_crm(tmp_path_factory, tmp_path)


async def since(v: Vendor, pos: int) -> list[dict[str, Any]]:
    return [e.as_json() async for e in follow(v.store, None, pos, clock=lambda: v.now)]


def staff_note(name: str, code: str, text: str) -> None:
    """What the vendor's staff write on a party in Tryton's client."""
    from trytond.pool import Pool  # noqa: PLC0415
    from trytond.transaction import Transaction  # noqa: PLC0415

    with Transaction().start(name, 0):
        pool = Pool()
        (party,) = pool.get("party.party").search([("code", "=", code)])
        pool.get("ir.note")(resource=str(party), message=text).save()


def leads(name: str) -> dict[str, str]:
    """Each opportunity's state, by its reference."""
    from trytond.pool import Pool  # noqa: PLC0415
    from trytond.transaction import Transaction  # noqa: PLC0415

    with Transaction().start(name, 0, readonly=True):
        return {o.reference: o.state for o in Pool().get("sale.opportunity").search([])}


def test_the_mapping_says_to_forget_before_it_notes() -> None:
    event = {"id": "evt_" + "0" * 64, "pos": 9, "relationship": "ab" * 16, "kind":
             "relationship.expired", "created": 5, "from": "vendor", "type": None,
             "body": {"last_message": 1, "ttl_ms": 2}, "personal": None}  # fmt: skip
    forget, note = changes_of(event)
    assert forget == Forget("ab" * 16)
    assert isinstance(note, Note)
    assert note.if_known


def as_before_session_22(path: Path) -> None:
    """The events applied as a bridge before session 22 recorded them: without their
    relationship (its column is made at open; NULL for the rows before)."""
    with contextlib.closing(sqlite3.connect(path / "crm.sqlite")) as db, db:
        db.execute("UPDATE vrmproto_crm_event SET relationship = NULL")


@pytest.mark.slow
@pytest.mark.parametrize("older", [False, True], ids=["recorded", "applied-before-s22"])
async def test_tryton_deletes_what_it_made_of_an_expired_relationship(
    crm: Any, tmp_path: Path, older: bool
) -> None:
    v = Vendor(MemoryStore())
    caster, refused = Customer(v.endpoint.identity), Customer(v.endpoint.identity)
    await v.send(caster, Intentcast(what=WHAT, reply_by=v.now + DAY_MS, constraints=("suv",),
                                    memberships=(MEMBER,), where=WHERE))  # fmt: skip
    await v.send(refused, TermsOffer(terms=terms("vrm.purpose-only"),
                                     enc_key=refused.identity.enc_public_key, note=NOTE))
    for event in await since(v, 0):
        crm.apply(event, v.now)
    applied = await v.store.feed_head()
    if older:
        as_before_session_22(tmp_path)
    cast, refusing = "vrm-" + caster.thread.hex(), "vrm-" + refused.thread.hex()
    before = notes_of("crm")
    assert any(WHAT in n for n in before[cast])
    assert any(NOTE in n for n in before[refusing])
    assert leads("crm") == {"vrm-" + caster.thread.hex(): "lead"}
    staff_note("crm", cast, "Called the customer back")

    v.now += v.endpoint.limits.open_relationship_ttl_ms + 1
    assert await v.endpoint.expire_unagreed() == 2
    for event in await since(v, applied):
        crm.apply(event, v.now)

    after = notes_of("crm")
    assert set(after) == {cast, refusing}  # the parties stay: the lead and the staff's note
    text = repr(after)
    for said in (WHAT, WHERE, MEMBER, NOTE, "Terms proffered"):
        assert said not in text
    (called, deleted) = sorted(after[cast], key=lambda n: "expired" in n)
    assert called == "Called the customer back"  # the staff's own, kept
    assert "expired without an agreement" in deleted
    assert "deleted" in deleted
    (deleted,) = after[refusing]
    assert "expired without an agreement" in deleted
    assert leads("crm") == {"vrm-" + caster.thread.hex(): "lost"}
    for event in await since(v, applied):  # delivered again: nothing changes
        assert crm.apply(event, v.now) is False
    assert notes_of("crm") == after
