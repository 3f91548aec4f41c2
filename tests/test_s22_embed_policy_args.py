"""``ReferencePolicy`` and ``CatalogueItem`` given one string where a list is meant (s22 hunt).

``ReferencePolicy(accepts_terms="vrm.no-tracking")`` read the string as its characters: the
vendor published the terms ``v``, ``r``, ``m``, ``.``… in discovery (§13.1-3, §6.5-1), and
refused every offer of the very term it meant to accept ("we cannot agree to:
vrm.no-tracking"). ``CatalogueItem(keywords="suv")`` matched any intentcast with the words
``s``, ``u`` and ``v``. Now a lone string is refused when the object is made (``TypeError``),
as is a term id that is no string.
"""

from __future__ import annotations

from typing import Any

import pytest

from vrmproto._messages import Money
from vrmproto.server import CatalogueItem, ReferencePolicy


@pytest.mark.parametrize("name", ["accepts_terms", "counter", "catalogue", "observed"])
def test_a_lone_string_for_a_list_is_refused(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        ReferencePolicy(**{name: "vrm.no-tracking"})


def test_a_term_id_that_is_no_string_is_refused() -> None:
    with pytest.raises(TypeError, match="accepts_terms"):
        ReferencePolicy(accepts_terms=["vrm.no-tracking", 7])  # type: ignore[list-item]


def test_the_terms_given_as_a_list_are_the_terms() -> None:
    policy = ReferencePolicy(accepts_terms=["vrm.no-tracking"])
    assert policy.accepts_terms == ("vrm.no-tracking",)


@pytest.mark.parametrize("kw", [{"keywords": "suv"}, {"conditions": "no smoking"}])
def test_a_catalogue_item_with_a_lone_string_is_refused(kw: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"description": "SUV", "keywords": ("suv",),
                              "price": Money(amount=100, currency="USD"), **kw}  # fmt: skip
    with pytest.raises(TypeError, match=next(iter(kw))):
        CatalogueItem(**fields)
