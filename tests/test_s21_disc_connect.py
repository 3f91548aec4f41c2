"""``vrm connect``: the vendor's key fingerprint is shown whenever the agent holds it (s21).

Before: ``vrm connect URL --json`` said ``"vendor_fingerprint": null`` (and the text omitted the
key) whenever no receipt came back in this run — connecting again to a vendor we are already
connected with (the key was just checked against the one we hold), and a first contact whose
offer was queued after the vendor's signed document had verified and its key was pinned. A
script reading the fingerprint to compare it with one the vendor publishes (§11.10-2, §13.3-3)
got nothing, as if the agent knew no key. Now it is the key the relationship holds.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm
from vrmproto import Identity
from vrmproto._keys import fingerprint
from vrmproto.client import DEFAULT_TERMS
from vrmproto.server import Endpoint, ReferencePolicy, Server, serve
from vrmproto.server._proxy import Deployment
from vrmproto.store import MemoryStore


@pytest.fixture(scope="module")
def vendors() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


def test_connecting_again_shows_the_key_held_for_the_vendor(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = new_home(tmp_path)
    url = vendors["outfitters"].url
    first = ok(vrm("connect", url, "--json", home=home)).json
    fp = first["vendor_fingerprint"]
    assert fp is not None
    again = ok(vrm("connect", url, "--json", home=home)).json
    assert again["existing"] is True
    assert again["vendor_fingerprint"] == fp
    text = ok(vrm("connect", url, home=home))
    assert "already connected" in text.stdout
    assert f"key {fp}" in text.stdout, text


def _dead_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections to it are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_queued_first_offer_shows_the_key_pinned_from_the_document(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """The document verifies (its key is pinned), its inbox does not answer: queued, and the
    fingerprint of the pinned key is shown."""
    who = Identity(os.urandom(32))
    policy = ReferencePolicy(accepts_terms=[t.id for t in DEFAULT_TERMS], name="Far Away")
    endpoint = Endpoint(who, store=MemoryStore(), policy=policy, name="Far Away")
    # its document names an inbox where nothing listens (as behind a proxy that is down)
    deployment = Deployment(public_url=f"http://127.0.0.1:{_dead_port()}")
    server: Server = vendors.call(serve(endpoint, deployment=deployment))
    try:
        home = new_home(tmp_path)
        said = fails(vrm("connect", server.url, "--json", "--timeout", "3", home=home), 3)
        assert said.json["status"] == "queued"
        assert said.json["vendor_fingerprint"] == fingerprint(who.public_key)
    finally:
        vendors.call(server.close())
