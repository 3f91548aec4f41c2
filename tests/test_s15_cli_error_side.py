"""Which side an error came from, as ``vrm`` says it.

Before: every :class:`~vrmproto.ProtocolError` that reached the top of a command read "the
vendor's answer does not verify" — also one raised by our own message before it was signed
(``vrm share --expires 1ms``: the share's expiry has passed, §5.3.1-3), when nothing had been
sent and the vendor had answered nothing. And a vendor's answer that could not be used
(:class:`~vrmproto.client.InvalidResponse`: a receipt that does not verify) read "could not
reach the vendor", as if it were down. Now: our message → "nothing was sent" (kind
``not_sent``); the vendor's bytes → "the vendor's answer could not be used" (kind ``protocol``),
problem codes unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm
from vrmproto import Problem, SignatureError, StateError, ValidationError
from vrmproto.cli._errors import explain, vendor_sent
from vrmproto.client import InvalidResponse


@pytest.fixture(scope="module")
def vendors() -> Iterator[VendorHost]:
    with vendor_host("outfitters") as h:
        yield h


def test_our_own_message_refused_before_it_is_sent_is_not_the_vendors_answer(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """Terms from a hand-edited settings.json that cite a term twice break §6.2-6 in our own
    offer: the agent refuses to sign it (``vrm connect --term`` twice is a usage error)."""
    home = new_home(tmp_path)
    settings = json.loads((home / "settings.json").read_text())
    settings["terms"].append({"id": "vrm.no-tracking", "version": 1})
    (home / "settings.json").write_text(json.dumps(settings))
    url = vendors["outfitters"].url
    r = fails(vrm("connect", url, home=home), 1, "nothing was sent", "cited twice", "§6.2-6")
    assert "vendor" not in r.stderr, r
    r = vrm("connect", url, "--json", home=home)
    assert r.code == 1, r
    error = json.loads(r.stdout)["error"]
    assert error["kind"] == "not_sent"
    assert "invalid_field" in error["message"]  # the problem code, as the rule names it
    assert ok(vrm("relationships", "--json", home=home)).json["relationships"] == []
    twice = ("--term", "vrm.no-tracking", "--term", "vrm.no-tracking")
    fails(vrm("connect", url, *twice, home=home), 2, "--term", "vrm.no-tracking given more "
          "than once")  # fmt: skip


def test_a_vendors_answer_that_cannot_be_used_is_not_an_unreachable_vendor() -> None:
    bad = InvalidResponse("the receipt does not verify: bad_signature: no", status=200)
    said = explain(bad)
    assert said.message.startswith("the vendor's answer could not be used: the receipt"), said
    assert "could not reach" not in said.message
    assert (said.kind, said.exit_code) == ("protocol", 1)


def test_our_own_message_is_worded_as_ours_whatever_its_code() -> None:
    for own in (ValidationError("the share's expiry has passed", clause="§5.3.1-3",
                                path="$.body.expires"),
                ValidationError("no agreement yet", code=Problem.NO_AGREEMENT, clause="§5.3-1"),
                SignatureError("a signature is 64 bytes", code=Problem.MALFORMED)):  # fmt: skip
        said = explain(own)
        assert said.message.startswith("nothing was sent: "), said.message
        assert own.code.value in said.message
        assert "vendor" not in said.message


def test_vendor_sent_turns_the_vendors_bytes_into_invalid_response_code_kept() -> None:
    broken = SignatureError("the signature does not verify", clause="§3.5-3")
    with pytest.raises(InvalidResponse) as caught, vendor_sent("its copy of the history"):
        raise broken
    assert caught.value.error is broken
    assert caught.value.error.code is Problem.BAD_SIGNATURE  # not re-coded
    said = explain(caught.value).message
    assert said.startswith("the vendor's answer could not be used: its copy of the history "
                           "does not verify: bad_signature"), said  # fmt: skip
    with pytest.raises(StateError), vendor_sent("x"):  # about our relationship: as it is
        raise StateError("the vendor's key is not known", clause="§12.5")
    with pytest.raises(InvalidResponse) as expired, vendor_sent("its document"):
        raise ValidationError("outside its validity window", code=Problem.EXPIRED)
    assert "`vrm doctor` compares them" in explain(expired.value).message  # clocks may differ


async def _signed_doc(real: str) -> tuple[bytes, str]:
    """The discovery document of the endpoint at ``real`` and its signature header."""
    async with aiohttp.ClientSession() as s, s.get(real + "/.well-known/vrm") as got:
        return await got.read(), got.headers["Vrm-Signature"]


async def _forger(body: bytes, sig: str, port: int = 0) -> tuple[web.AppRunner, str]:
    """A server of ``body`` with one byte of its name changed, under the same signature: a
    document that does not verify (§13.1-2)."""
    forged = body.replace(b'"name": "', b'"name": "~', 1)
    assert forged != body

    async def doc(_: web.Request) -> web.Response:
        return web.Response(body=forged, content_type="application/json",
                            headers={"Vrm-Signature": sig})  # fmt: skip

    app = web.Application()
    app.router.add_get("/.well-known/vrm", doc)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_a_discovery_document_that_does_not_verify_is_the_vendors(
    tmp_path: Path, vendors: VendorHost
) -> None:
    """`vrm connect` reads the vendor's document apart from sending its offer: a tampered
    document is the vendor's answer (bad_signature), not a message of ours."""
    runner, url = vendors.call(_forger(*vendors.call(_signed_doc(vendors["outfitters"].url))))
    try:
        home = new_home(tmp_path)
        r = fails(vrm("connect", url, "--json", home=home), 1,
                  "the vendor's answer could not be used", "discovery document",
                  "bad_signature")  # fmt: skip
        assert "nothing was sent" not in r.stderr
        assert json.loads(r.stdout)["error"]["kind"] == "protocol"
    finally:
        vendors.call(runner.cleanup())


def test_taking_up_an_offer_whose_vendor_document_does_not_verify(tmp_path: Path) -> None:
    """`vrm intent accept` reads the document first too: the offer's vendor now serves one
    that does not verify (here: a forgery on its port) — the vendor's, not ours."""
    home = new_home(tmp_path)
    with vendor_host("budget") as host:
        budget = host["budget"]
        ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--vendor", budget.url,
               "--no-discover", "--no-relays", "--deadline", "10s", home=home))  # fmt: skip
        (intent,) = ok(vrm("intent", "list", "--json", home=home)).json["intents"]
        (offer,) = ok(vrm("intent", "show", intent["id"], "--json", home=home)).json["offers"]
        body, sig = host.call(_signed_doc(budget.url))
        host.stop("budget")
        runner, _ = host.call(_forger(body, sig, budget.port))
        try:
            r = fails(vrm("intent", "accept", offer["id"], home=home), 1,
                      "the vendor's answer could not be used", "discovery document",
                      "bad_signature")  # fmt: skip
            assert "nothing was sent" not in r.stderr
        finally:
            host.call(runner.cleanup())
            host.start("budget")  # for the host's own close
