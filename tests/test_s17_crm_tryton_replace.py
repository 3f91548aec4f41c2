"""The Tryton bridge after the vendor's staff merged the relationship's party into another one
with Tryton's own "Replace" wizard (``party.replace``): the customer turned out to be a party
the vendor already had.

The wizard archives the replaced party, points its ``replaced_by`` at the one that replaces it,
and moves its addresses and contact mechanisms there, archived. Before, the bridge kept finding
the replaced party by its code: every later share, note and lead went to the archived party
nobody looks at, and the values it updated stayed archived where they had been moved. Now the
bridge follows ``replaced_by`` (§12.10-1: what the customer shares is held where the vendor
keeps the customer), and a value it holds and writes again is active there. A withdrawal still
erases every value, wherever it was moved.

Slow: Tryton (its database is the session's, tests/_tryton.py).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("trytond", reason="trytond is not installed: pip install 'vrmproto[tryton]'")

from test_s16_vendor_tryton import event, shared, withdrawn  # skips without sale_opportunity
from trytond.pool import Pool
from trytond.transaction import Transaction

from tests._tryton import open_crm
from vrmproto.crm.tryton import TrytonCRM

pytestmark = pytest.mark.slow

NOW = 1_800_000_000_000
REL = "e1" * 16


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> TrytonCRM:
    return open_crm(tmp_path_factory, tmp_path_factory.mktemp("tryton"))


def replace_with_existing_customer() -> int:
    """What the staff do in Tryton's client: Party > Replace, the relationship's party into
    "Ada Lovelace", a customer they had before. The id of Ada's party."""
    with Transaction().start("crm", 0, context={"_skip_warnings": True}):
        pool = Pool()
        parties = pool.get("party.party")
        ada = parties(name="Ada Lovelace")
        ada.save()
        (source,) = parties.search([("code", "=", "vrm-" + REL)])
        wizard = pool.get("party.replace", type="wizard")
        session, _, _ = wizard.create()
        replace = wizard(session)
        replace.ask.source = source
        replace.ask.destination = ada
        replace.transition_replace()
        return int(ada.id)


def party(party_id: int) -> dict[str, Any]:
    """A party's contacts and streets, with whether each is active (archived ones too)."""
    with Transaction().start("crm", 0, readonly=True, context={"active_test": False}):
        p = Pool().get("party.party")(party_id)
        return {
            "active": bool(p.active),
            "contacts": sorted((c.name or c.type, c.value, bool(c.active))
                               for c in p.contact_mechanisms),
            "streets": sorted((a.street_unstructured, bool(a.active)) for a in p.addresses),
        }


def notes_on(party_id: int) -> int:
    with Transaction().start("crm", 0, readonly=True):
        return len(Pool().get("ir.note").search([("resource", "=", f"party.party,{party_id}")]))


def replaced_party() -> int:
    with Transaction().start("crm", 0, readonly=True, context={"active_test": False}):
        (source,) = Pool().get("party.party").search([("code", "=", "vrm-" + REL)])
        return int(source.id)


def test_what_the_customer_shares_after_a_replace_goes_to_the_party_that_replaced_it(
    crm: TrytonCRM,
) -> None:
    assert crm.apply(shared(1, REL, {"email": "ada@example.org", "street": "1 Main"}), NOW)
    ada = replace_with_existing_customer()
    source = replaced_party()
    assert party(source)["active"] is False

    assert crm.apply(shared(2, REL, {"email": "ada@example.net", "phone": "+1 801 555 0100"}),
                     NOW)  # fmt: skip
    got = party(ada)
    # the email held before, written again, active where the wizard moved it; the phone, new,
    # made there (before: both on the archived party, or the email archived on Ada's)
    assert ("email", "ada@example.net", True) in got["contacts"]
    assert ("phone", "+1 801 555 0100", True) in got["contacts"]
    assert party(source)["contacts"] == []
    assert party(source)["streets"] == []
    notes = {ada: notes_on(ada), source: notes_on(source)}
    refused = event(3, REL, "terms.rejected", body={"refused": ["vrm.no-tracking"], "reason": "no"})
    assert crm.apply(refused, NOW)
    assert (notes_on(ada), notes_on(source)) == (notes[ada] + 1, notes[source])

    assert crm.apply(withdrawn(4, REL, 1, 2), NOW)
    after = party(ada)
    assert after["contacts"] == []  # every value the customer shared is erased, wherever it is
    assert after["streets"] == []
