"""What a person met using ``vrm`` for a day (README walkthrough, examples/vendors on
loopback), each fixed with the test that shows it."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from tests._cli_helpers import fails, new_home, ok, vendor_host, vrm
from vrmproto import Identity, fingerprint
from vrmproto._messages import AddressUpdate
from vrmproto.cli._cmd_outbox import _report_run
from vrmproto.cli._context import Env
from vrmproto.cli._errors import explain
from vrmproto.cli._history_bodies import summary
from vrmproto.client import Delivery, OutboxRun, TransportError, Unreachable
from vrmproto.client._waiting import Waiting, WaitReason
from vrmproto.store import MemoryStore

THREAD = os.urandom(16)


def test_history_says_what_an_address_update_is() -> None:
    """``vrm history`` showed an address update as "AddressUpdate" (the class's name) where
    every other message says what it is in words."""
    agreement = os.urandom(32)
    said = summary(AddressUpdate(agreement=agreement, sealed=b"\x00" * 64))
    assert said == f"new contact details, under agreement {agreement.hex()[:12]} (sealed)"


def test_outbox_run_names_a_message_by_the_id_outbox_shows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``vrm outbox`` lists a waiting message by its id — what ``vrm outbox retry ID`` and
    ``drop ID`` take — but ``vrm outbox run`` named it by its hash: the same message by two
    numbers, and no way to tell which row was which."""
    msg_id, msg_hash = os.urandom(16), os.urandom(32)
    d = Delivery(THREAD, msg_id, msg_hash, "queued", type="address.update",
                 error=TransportError("POST x: connection refused"))  # fmt: skip
    left = [Waiting(THREAD, msg_id, "address.update", WaitReason.UNREACHABLE, 1, msg_hash)]
    with pytest.raises(click.exceptions.Exit):
        _report_run(Env(json=False), OutboxRun((d,)), {THREAD: "Silver Star Lodge"}, left)
    shown = capsys.readouterr().out
    assert f"address.update {msg_id.hex()[:12]}" in shown, shown
    assert msg_hash.hex()[:12] not in shown, shown


def test_address_set_names_the_vendors_its_update_waits_for(tmp_path: Path) -> None:
    """It said "not delivered to every vendor yet: their update waits …" (or, before the exit
    codes were one contract, "some vendors refused or failed the update"), and the person
    looked for which one in the table above."""
    home = new_home(tmp_path)
    with vendor_host("outfitters", "lodge") as host:
        for key in ("outfitters", "lodge"):
            ok(vrm("connect", host[key].url, home=home))
        host.stop("lodge")
        fails(vrm("address", "set", "city=Park City", home=home), 3,
              "not delivered to Silver Star Lodge yet", "do not send it again")  # fmt: skip
        host.stop("outfitters")
        host["outfitters"].store = MemoryStore()  # back without our relationship: refused
        host.start("outfitters")
        fails(vrm("address", "set", "city=Salt Lake City", home=home), 1,
              "not taken by Wasatch Outfitters")  # fmt: skip


def test_intent_show_marks_the_offer_taken_up(tmp_path: Path) -> None:
    """After `vrm intent accept ID`, `vrm intent show` still ended "Take one with `vrm intent
    accept ID`" naming the offer already taken, and nothing said which one was."""
    home = new_home(tmp_path)
    with vendor_host("avis", "outfitters") as host:
        cast = ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--no-discover",
                      "--no-relays", "--deadline", "3s", "--vendor", host["avis"].url,
                      "--vendor", host["outfitters"].url, "--json", home=home)).json  # fmt: skip
        (offer,) = cast["offers"]
        shown = ok(vrm("intent", "show", cast["intent"][:8], "--json", home=home)).json
        assert [o["taken"] for o in shown["offers"]] == [False]
        ok(vrm("intent", "accept", offer["id"], home=home))
        shown = ok(vrm("intent", "show", cast["intent"][:8], "--json", home=home)).json
        assert [o["taken"] for o in shown["offers"]] == [True]
        text = " ".join(ok(vrm("intent", "show", cast["intent"][:8], home=home)).stdout.split())
        assert "✓ taken up" in text, text
        assert f"You took up {offer['id']} from Avis Park City" in text, text
        assert "Take one with" not in text, text


def test_after_accepting_a_vendors_new_key_its_name_means_the_new_relationship(
    tmp_path: Path,
) -> None:
    """The README's steps after a vendor changed its key: accept the new key (a new
    relationship), drop the held message. Then `vrm share NAME` went to the old relationship
    again — the one the drop had touched last — and was held again (exit 5), and `vrm
    relationships` showed two identical rows."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        v = host["outfitters"]
        ok(vrm("connect", v.url, home=home))
        host.stop("outfitters")
        v.identity = Identity(os.urandom(32))  # the same vendor and data, under a new key
        host.start("outfitters")
        new_fp = fingerprint(v.identity.public_key)
        fails(vrm("share", "Wasatch", "email=doc@example.org", home=home), 5)
        ok(vrm("connect", v.url, "--accept-new-key", new_fp, home=home))
        (held,) = ok(vrm("outbox", "--json", home=home)).json["pending"]
        ok(vrm("outbox", "drop", held["id"], home=home))
        r = ok(vrm("share", "Wasatch", "email=doc@example.org", "--json", home=home))
        assert r.json["outcome"] == "done"
        text = ok(vrm("relationships", home=home)).stdout
        assert f"key {new_fp}" in text, text  # the two rows of one name tell their keys
        # the old relationship is superseded, not an impostor: `vrm doctor` said "✗ … does
        # not verify by the key you hold" and exit 1, for good, once the person had done it all
        r = ok(vrm("doctor", "--json", home=home))
        (old,) = [c for c in r.json["checks"] if c["status"] == "warn"
                  and c["check"] == "vendor Wasatch Outfitters"]  # fmt: skip
        assert f"you accepted its new key {new_fp}" in old["detail"], old


def test_a_queued_data_request_says_where_its_answer_will_be(tmp_path: Path) -> None:
    """`vrm data` to a vendor that is down said only "`vrm outbox run` delivers it"; the
    vendor's answer then came with the delivery, and nothing said where to read it."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        host.stop("outfitters")
        fails(vrm("data", "Wasatch", home=home), 3, "`vrm outbox run` delivers it",
              "`vrm history 'Wasatch Outfitters'` then shows what it returned")  # fmt: skip
        host.start("outfitters")
        ok(vrm("outbox", "run", home=home))
        rows = ok(vrm("history", "Wasatch Outfitters", "--json", home=home)).json["entries"]
        (returned,) = [r for r in rows if r["type"] == "data.return"]
        assert "boot_size=27.5 mondopoint" in returned["summary"], returned


def test_outbox_run_says_held_once(capsys: pytest.CaptureFixture[str]) -> None:
    """"⏸ held — held, not retried: the vendor …": the mark, then the same word again."""
    d = Delivery(THREAD, os.urandom(16), os.urandom(32), "queued", type="data.share",
                 error=TransportError("held, not retried: the vendor at x now signs with k"))
    with pytest.raises(click.exceptions.Exit):
        _report_run(Env(json=False), OutboxRun((d,)), {THREAD: "Acme"}, [])
    shown = " ".join(capsys.readouterr().out.split())
    assert "⏸ held — the vendor at x" in shown, shown


def test_a_certificate_that_does_not_verify_is_not_a_refused_connection() -> None:
    """`vrm connect https://…` to a vendor whose TLS certificate does not verify said "the
    connection was refused (is it running?)": it was running, and answered; the person looked
    for a stopped server. Nothing will change by itself, so it is not "unreachable" either."""
    said = explain(Unreachable("GET https://127.0.0.1:8443/.well-known/vrm: cannot connect: "
                               "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                               "unable to get local issuer certificate (_ssl.c:1006)"))
    assert (said.exit_code, said.kind) == (1, "tls")
    assert said.message.startswith("the TLS certificate of https://127.0.0.1:8443/.well-known"
                                   "/vrm does not verify (unable to get local issuer "
                                   "certificate)"), said.message
    assert "refused" not in said.message
    other = explain(Unreachable("GET http://h/.well-known/vrm: cannot connect: Network is "
                                "unreachable"))  # not a refusal either
    assert (other.exit_code, other.message) == (
        4, "could not reach http://h/.well-known/vrm: cannot connect: Network is unreachable.")
    refused = explain(Unreachable("GET http://h/.well-known/vrm: connection refused"))
    assert refused.message.endswith("the connection was refused (is it running?).")


def test_a_counter_offer_names_the_refused_terms_once(capsys: pytest.CaptureFixture[str]) -> None:
    """"↺ countered: we cannot agree to: vrm.no-third-party", then "refused:
    vrm.no-third-party": the same words twice. The list stays where the reason does not say."""
    from vrmproto.cli._cmd_connect import _print_connect  # noqa: PLC0415
    from vrmproto.cli._output import Out  # noqa: PLC0415
    from vrmproto.client import ConnectResult  # noqa: PLC0415

    said = ConnectResult(THREAD, "Budget", "http://b", "countered", (),
                         reason="we cannot agree to: vrm.no-third-party",
                         refused=("vrm.no-third-party",))  # fmt: skip
    _print_connect(Out(json_mode=False), said)
    assert capsys.readouterr().out.count("vrm.no-third-party") == 1
    terse = ConnectResult(THREAD, "Budget", "http://b", "rejected", (), reason="no",
                          refused=("vrm.no-third-party",))  # fmt: skip
    _print_connect(Out(json_mode=False), terse)
    assert "refused: vrm.no-third-party" in capsys.readouterr().out


def test_the_offer_suggested_says_when_its_vendor_is_already_related(tmp_path: Path) -> None:
    """An intentcast goes to the vendors you know: the best offer is often from one. The last
    line said "Take one with `vrm intent accept ID`", which then failed "the offer was not
    taken up: you already have a relationship with …"."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        cast = ["intent", "new", "ski rental", "--no-discover", "--no-relays", "--deadline", "3s"]
        r = ok(vrm(*cast, home=home))
        said = " ".join(r.stdout.split())
        assert ("(you already have a relationship with Wasatch Outfitters: `vrm end 'Wasatch "
                "Outfitters'` it first, to take the offer up in a new one)") in said, said
        sent = ok(vrm(*cast, "--json", home=home)).json
        assert [o["related"] for o in sent["offers"]] == [True]
        shown = ok(vrm("intent", "show", sent["intent"][:8], "--json", home=home)).json
        assert [o["related"] for o in shown["offers"]] == [True]
        ok(vrm("end", "Wasatch Outfitters", home=home))
        shown = ok(vrm("intent", "show", sent["intent"][:8], home=home)).stdout
        assert "already have a relationship" not in shown, shown
