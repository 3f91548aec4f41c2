"""The vendor's event feed keeps a term's parameters, and the CRM's notes say them.

A customer proffers ``vrm.delete-after`` with ``days=30`` and the vendor agrees: what it agreed
to is "delete after 30 days". The feed shows every term as ``{id, version}``
(vrmproto/server/_events.py:88-89, ``_plain``), so ``vrm vendor events``, the webhooks and the
CRM fed from them (``vrmproto.crm``: "Terms agreed: vrm.delete-after v1") never learn the 30
days — nor ``vrm.return-on-request``'s format, nor any parameter — and the vendor's CRM cannot
keep the promise it made. Now each term in the feed has its ``params`` when it has any
(docs/events.md), and the CRM note reads "vrm.delete-after v1 (days=30)".
"""

from __future__ import annotations

from typing import Any

from _vendor_proc import VENDOR_SEED, Customer, Reply, now_ms

from vrmproto._keys import Identity
from vrmproto.crm import Note, changes_of
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._events import follow
from vrmproto.store import MemoryStore


async def test_the_feed_says_what_parameters_the_terms_were_agreed_with() -> None:
    vendor = Identity(VENDOR_SEED)
    agrees = ReferencePolicy(accepts_terms=("vrm.no-tracking", "vrm.delete-after"))
    endpoint = Endpoint(vendor, store=MemoryStore(), clock=now_ms, policy=agrees)
    c = Customer(vendor)
    msg = c.offer("vrm.no-tracking", "vrm.delete-after")  # delete-after with days=30
    response = await endpoint.handle_inbox(msg.envelope)
    c.absorb(Reply(response.status, response.body, dict(response.headers)), msg)
    feed: list[dict[str, Any]] = [e.as_json() async for e in follow(endpoint.store, None)]
    opened = next(e for e in feed if e["kind"] == "relationship.opened")
    agreed = next(e for e in feed if e["kind"] == "terms.accepted")
    assert {"id": "vrm.delete-after", "version": 1, "params": {"days": 30}} in opened["body"][
        "terms"]  # fmt: skip
    assert any(t.get("params") == {"days": 30} for t in agreed["body"].get("terms", ()))
    assert {"id": "vrm.no-tracking", "version": 1} in opened["body"]["terms"]  # none: no key
    (note,) = changes_of(opened)
    assert isinstance(note, Note)
    assert "vrm.delete-after v1 (days=30)" in note.text
    assert "vrm.no-tracking v1," in note.text or note.text.endswith("vrm.no-tracking v1")
