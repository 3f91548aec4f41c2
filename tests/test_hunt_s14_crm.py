"""The Tryton bridge given a customer's value that Tryton itself refuses for its type.

Tryton checks a contact mechanism when it is saved: with ``email_validator`` installed (a
common companion of trytond) an email address whose domain has no mail server is refused
(``check_valid_email`` checks deliverability), and with ``phonenumbers`` installed a phone
number it cannot parse is. The bridge checked emails for their syntax only, and phones not at
all. Before: a customer who shared ``email=doc@gmial.con`` (or ``phone=call me after 6``) made
``TrytonCRM.apply`` raise ``InvalidEMail`` (``InvalidPhoneNumber``) at that event, so
``vrm vendor tryton`` stopped there, and again at the same event on every restart: the CRM
never saw another event. Now the value is kept as a contact mechanism of type ``other``,
named after the field, as for any field Tryton has no type for.

The test needs neither library (nor the network): Tryton's check is made to refuse what those
libraries would refuse. Slow where it is the first to need the session's Tryton database
(tests/_tryton.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("trytond", reason="trytond is not installed: pip install 'vrmproto[tryton]'")
pytest.importorskip("trytond.modules.sale_opportunity",
                    reason="trytond-sale-opportunity is not installed: pip install "
                           "'vrmproto[tryton]'")  # fmt: skip

from trytond.modules.party import contact_mechanism
from trytond.pool import Pool
from trytond.tools.email_ import EmailNotValidError
from trytond.transaction import Transaction

from tests._tryton import open_crm
from vrmproto.crm._tryton import TrytonCRM

pytestmark = pytest.mark.slow

REL = "ab" * 16


def shared(pos: int, fields: dict[str, str], rel: str = REL) -> dict[str, Any]:
    now = time.time_ns() // 1_000_000
    return {"id": f"evt_{pos:032x}", "pos": pos, "relationship": rel, "kind": "data.shared",
            "created": now, "from": "customer", "body": {},
            "personal": {"fields": fields, "expires": now + 86_400_000}}  # fmt: skip


def contacts(name: str, rel: str = REL) -> list[tuple[str, str, str]]:
    with Transaction().start(name, 0, readonly=True):
        party = Pool().get("party.party").search([("code", "=", "vrm-" + rel)])[0]
        return sorted((c.type, c.name or "", c.value) for c in party.contact_mechanisms)


def address(name: str, rel: str) -> tuple[str | None, str | None]:
    """The held address's country and subdivision codes."""
    with Transaction().start(name, 0, readonly=True):
        party = Pool().get("party.party").search([("code", "=", "vrm-" + rel)])[0]
        (a,) = party.addresses
        return (a.country.code if a.country else None,
                a.subdivision.code if a.subdivision else None)  # fmt: skip


def test_a_region_is_taken_only_where_it_is_one_and_as_written(crm: TrytonCRM) -> None:
    """The README's move (region=UT) in a Tryton that knows the world's subdivisions: "UT" is
    Utah, Utrecht and Uttarakhand. Before, the first one Tryton listed was taken whatever the
    country (a region or country of "%" matched anything), and Tryton refused to save an address
    whose subdivision is not in its country (or has none): the bridge stopped at that event,
    for good — as it did when a later share changed the country under a held region."""
    with Transaction().start("crm", 0):
        pool = Pool()
        countries, regions = pool.get("country.country"), pool.get("country.subdivision")
        made = {c: countries(name=n, code=c) for c, n in
                (("NL", "Netherlands"), ("IN", "India"), ("US", "United States"))}  # fmt: skip
        countries.save(list(made.values()))
        regions.save([regions(name=n, code=c, type="state", country=made[c[:2]]) for c, n in
                      (("NL-UT", "Utrecht"), ("IN-UT", "Uttarakhand"),
                       ("US-UT", "Utah"))])  # fmt: skip
    pos = 100
    for rel, fields, want in [
        ("01" * 16, {"street": "1 Main Street", "region": "UT", "country": "US"}, ("US", "US-UT")),
        ("02" * 16, {"street": "1 Main Street", "region": "utah"}, (None, None)),
        ("03" * 16, {"street": "1 Main Street", "region": "UT"}, (None, None)),
        ("04" * 16, {"street": "1 Main Street", "region": "%", "country": "%"}, (None, None)),
        ("05" * 16, {"street": "Oudegracht 1", "country": "Netherlands", "region": "UT"},
         ("NL", "NL-UT")),
    ]:  # fmt: skip
        pos += 1
        assert crm.apply(shared(pos, fields, rel))
        assert address("crm", rel) == want, fields
    assert ("other", "region", "UT") in contacts("crm", "03" * 16)
    # the country changes (or goes): the region leaves the address, kept in the customer's words
    assert crm.apply(shared(pos + 1, {"country": "India"}, "01" * 16))
    assert address("crm", "01" * 16) == ("IN", None)
    assert ("other", "region", "Utah") in contacts("crm", "01" * 16)
    assert crm.apply(shared(pos + 2, {"country": "Atlantis"}, "05" * 16))
    assert address("crm", "05" * 16) == (None, None)
    assert ("other", "region", "Utrecht") in contacts("crm", "05" * 16)


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> TrytonCRM:
    return open_crm(tmp_path_factory, tmp_path_factory.mktemp("tryton"))


def test_a_value_tryton_refuses_for_its_type_is_kept_as_other(
    crm: TrytonCRM, monkeypatch: pytest.MonkeyPatch
) -> None:
    def strict(email: str, check_deliverability: bool = True) -> str:
        if check_deliverability and email.endswith("@gmial.con"):  # no MX: email_validator's
            raise EmailNotValidError(f"The domain name gmial.con does not exist: {email}")
        return email

    class Phones:  # what trytond's party module sees of an installed `phonenumbers`
        def __bool__(self) -> bool:
            return True

    def parse(self: Any, value: str) -> Any:
        return value if value.startswith("+") else None

    monkeypatch.setattr(contact_mechanism, "validate_email", strict)
    monkeypatch.setattr(contact_mechanism, "phonenumbers", Phones())
    monkeypatch.setattr(contact_mechanism.ContactMechanism, "_parse_phonenumber", parse)
    monkeypatch.setattr(contact_mechanism.ContactMechanism, "format_value",
                        lambda self, value=None, type_=None: value)  # fmt: skip
    monkeypatch.setattr(contact_mechanism.ContactMechanism, "format_value_compact",
                        lambda self, value=None, type_=None: value)  # fmt: skip
    assert crm.apply(shared(1, {"email": "doc@gmial.con", "phone": "call me after 6"}))
    assert crm.apply(shared(2, {"email": "doc@example.org", "phone": "+1 801 555 0142"}))
    assert crm.cursor() >= 2
    assert contacts("crm") == [("email", "", "doc@example.org"),
                               ("phone", "", "+1 801 555 0142")]  # fmt: skip
    assert crm.apply(shared(3, {"email": "doc@gmial.con"}))
    assert ("other", "email", "doc@gmial.con") in contacts("crm")


def test_an_empty_value_clears_what_was_held(crm: TrytonCRM) -> None:
    """``vrm share VENDOR phone=`` (the protocol carries an empty value): the value held under
    that name is replaced by nothing. Before, Tryton refused the contact mechanism (its value is
    required) and the bridge stopped at that event for good."""
    rel = "0f" * 16
    assert crm.apply(shared(200, {"email": "doc@example.org", "phone": "+1 801 555 0142",
                                  "street": "1 Main Street"}, rel))  # fmt: skip
    assert crm.apply(shared(201, {"phone": "", "street": " ", "note": ""}, rel))
    assert contacts("crm", rel) == [("email", "", "doc@example.org")]
    with Transaction().start("crm", 0, readonly=True):
        party = Pool().get("party.party").search([("code", "=", "vrm-" + rel)])[0]
        assert [a.street_unstructured for a in party.addresses] == []
