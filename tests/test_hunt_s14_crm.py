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
libraries would refuse. Slow: it creates a Tryton database (see tests/test_crm_tryton.py).
"""

from __future__ import annotations

import time
from pathlib import Path
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

from vrmproto.crm._tryton import TrytonCRM

pytestmark = pytest.mark.slow

REL = "ab" * 16


def shared(pos: int, fields: dict[str, str]) -> dict[str, Any]:
    now = time.time_ns() // 1_000_000
    return {"id": f"evt_{pos:032x}", "pos": pos, "relationship": REL, "kind": "data.shared",
            "created": now, "from": "customer", "body": {},
            "personal": {"fields": fields, "expires": now + 86_400_000}}  # fmt: skip


def contacts(name: str) -> list[tuple[str, str, str]]:
    with Transaction().start(name, 0, readonly=True):
        party = Pool().get("party.party").search([("code", "=", "vrm-" + REL)])[0]
        return sorted((c.type, c.name or "", c.value) for c in party.contact_mechanisms)


def test_a_value_tryton_refuses_for_its_type_is_kept_as_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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

    crm = TrytonCRM.create("crm", path=tmp_path, company="Vendor")
    monkeypatch.setattr(contact_mechanism, "validate_email", strict)
    monkeypatch.setattr(contact_mechanism, "phonenumbers", Phones())
    monkeypatch.setattr(contact_mechanism.ContactMechanism, "_parse_phonenumber", parse)
    monkeypatch.setattr(contact_mechanism.ContactMechanism, "format_value",
                        lambda self, value=None, type_=None: value)  # fmt: skip
    monkeypatch.setattr(contact_mechanism.ContactMechanism, "format_value_compact",
                        lambda self, value=None, type_=None: value)  # fmt: skip
    assert crm.apply(shared(1, {"email": "doc@gmial.con", "phone": "call me after 6"}))
    assert crm.apply(shared(2, {"email": "doc@example.org", "phone": "+1 801 555 0142"}))
    assert crm.cursor() == 2
    assert contacts("crm") == [("email", "", "doc@example.org"),
                               ("phone", "", "+1 801 555 0142")]  # fmt: skip
    assert crm.apply(shared(3, {"email": "doc@gmial.con"}))
    assert ("other", "email", "doc@gmial.con") in contacts("crm")
