"""Issue 11 (the customer's agent for everyday use): the command line's own items, each driven
as a person would, as a subprocess against reference vendors on 127.0.0.1.

Item 5: intentcasts have verbs (``new``, ``list``, ``show``, ``accept``) and nothing is broadcast
without ``new``. Item 7: ``vrm history`` shows what each message says, and ``--export`` writes
evidence ``vrm verify`` checks. Item 9: ids, currencies and durations are read as people write
them. Item 10: short failure texts that do not lie.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cli_helpers import VendorHost, fails, new_home, ok, vendor_host, vrm


@pytest.fixture(scope="module")
def host() -> Iterator[VendorHost]:
    with vendor_host("avis", "budget", "hertz", "outfitters") as h:
        yield h


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return new_home(tmp_path)




def cast(home: Path, host: VendorHost) -> dict[str, object]:
    args = ["intent", "new", "4-wheel-drive SUV rental", "--where", "Park City, UT",
            "--max-price", "300USD", "--deadline", "10s", "--no-discover", "--json"]
    for key in ("avis", "budget", "hertz", "outfitters"):
        args += ["--vendor", host[key].url]
    result: dict[str, object] = ok(vrm(*args, home=home)).json
    return result


# -- item 5: verbs, and no broadcast without one -------------------------------------------------


def test_intent_list_and_show_broadcast_nothing(home: Path, host: VendorHost) -> None:
    ok(vrm("connect", host["avis"].url, home=home))  # a known vendor an intentcast would reach
    listed = ok(vrm("intent", "list", "--json", home=home)).json
    assert listed == {"intents": []}
    fails(vrm("intent", "show", "abcdef12", home=home), 2, "no intentcast")
    r = fails(vrm("intent", "SUV rental", home=home), 2, "vrm intent new")
    assert "not a subcommand" in r.stderr
    assert ok(vrm("intent", "list", "--json", home=home)).json == {"intents": []}
    rels = ok(vrm("relationships", "--all", "--json", home=home)).json["relationships"]
    assert [r["kind"] for r in rels] == ["vendor"]  # no intent thread was ever opened


def test_intent_new_list_show_accept(home: Path, host: VendorHost) -> None:
    sent = cast(home, host)
    (listed,) = ok(vrm("intent", "list", "--json", home=home)).json["intents"]
    assert listed["intent"] == sent["intent"]
    assert listed["offers"] == 3
    assert [d["vendor"] for d in listed["declines"]] == ["Wasatch Outfitters"]
    assert listed["max_price"]["text"] == "300.00 USD"
    human = ok(vrm("intent", "list", home=home)).stdout
    assert listed["id"] in human
    assert "4-wheel-drive SUV rental" in human
    assert " UTC" in human  # item 10: times name their zone
    shown = ok(vrm("intent", "show", listed["id"][:4], "--json", home=home)).json
    assert [o["vendor"] for o in shown["offers"]] == ["Avis Park City", "Budget Salt Lake",
                                                      "Hertz Wasatch"]
    assert shown["offers"] == sent["offers"]
    text = ok(vrm("intent", "show", listed["id"], home=home)).stdout
    assert "Wasatch Outfitters declined" in text
    assert "vrm intent accept" in text
    best = shown["offers"][0]["id"]
    taken = ok(vrm("intent", "accept", best[:4], "--json", home=home)).json
    assert taken["vendor"] == "Avis Park City"


# -- item 9: the id-prefix rule says itself ------------------------------------------------------


def test_a_short_offer_id_says_the_rule(home: Path, host: VendorHost) -> None:
    offers = cast(home, host)["offers"]
    assert isinstance(offers, list)
    r = fails(vrm("intent", "accept", offers[0]["id"][:3], "--json", home=home), 2,
              "at least 4 characters")
    assert "several" not in r.stderr
    assert r.json["error"]["kind"] == "short_id"
    fails(vrm("intent", "accept", "ffffffff", home=home), 2, "no offer")


# -- item 7: history says what each message says -------------------------------------------------


def _entries(home: Path, who: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = ok(vrm("history", who, "--json", home=home)).json["entries"]
    return entries


def test_history_shows_the_rejection_reason_and_counter_terms(home: Path, host: VendorHost
                                                              ) -> None:  # fmt: skip
    fails(vrm("connect", host["hertz"].url, home=home), 1, "rejected")
    (reject,) = [e for e in _entries(home, "Hertz Wasatch") if e["type"] == "terms.reject"]
    body = reject["body"]
    assert isinstance(body, dict)
    assert body["refused"] == ["vrm.delete-after"]
    assert body["reason"]
    assert str(body["reason"]) in str(reject["summary"])
    human = ok(vrm("history", "Hertz Wasatch", home=home)).stdout
    assert str(body["reason"])[:30] in human
    assert " UTC" in human  # item 10: times name their zone
    ok(vrm("connect", host["budget"].url, "--accept-counter", home=home))
    (counter,) = [e for e in _entries(home, "Budget Salt Lake") if e["type"] == "terms.reject"]
    assert isinstance(counter["body"], dict)
    assert "vrm.purpose-only" in [t["id"] for t in counter["body"]["counter"]]
    assert "counter-offer: " in str(counter["summary"])
    assert "purpose-only" in str(counter["summary"])


def test_history_shows_an_offers_price(home: Path, host: VendorHost) -> None:
    offers = cast(home, host)["offers"]
    assert isinstance(offers, list)
    entries = _entries(home, offers[0]["thread"][:12])
    (offer,) = [e for e in entries if e["type"] == "intent.offer"]
    assert isinstance(offer["body"], dict)
    assert offer["body"]["price"] == {"amount": 28900, "currency": "USD", "text": "289.00 USD"}
    assert "289.00 USD" in str(offer["summary"])


def test_history_opens_what_it_can_and_exports_evidence(home: Path, host: VendorHost,
                                                        tmp_path: Path) -> None:  # fmt: skip
    ok(vrm("connect", host["outfitters"].url, home=home))
    ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", home=home))
    ok(vrm("data", "Wasatch Outfitters", home=home))
    entries = _entries(home, "Wasatch Outfitters")
    (share,) = [e for e in entries if e["type"] == "data.share"]
    assert share["content"] == {"email": "doc@example.org"}
    (returned,) = [e for e in entries if e["type"] == "data.return"]
    assert returned["sealed"] == "opened with your key"
    assert isinstance(returned["content"], dict)
    assert returned["content"]["email"] == "doc@example.org"
    evidence = tmp_path / "evidence.json"
    ok(vrm("history", "Wasatch Outfitters", "--export", str(evidence), home=home))
    doc = json.loads(evidence.read_text())
    assert doc["format"] == "vrm-evidence/1"
    assert len(doc["entries"]) == len(entries)
    assert doc["recipe"]
    checked = ok(vrm("verify", str(evidence), "--json", home=None)).json
    assert checked["valid"] is True
    assert checked["entries"] == len(entries)
    raw = bytearray(base64.b64decode(doc["entries"][1]["envelope"]))
    raw[-1] ^= 1
    doc["entries"][1]["envelope"] = base64.b64encode(bytes(raw)).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    fails(vrm("verify", str(forged), home=None), 1, "does not verify")
    fails(vrm("verify", str(home / "settings.json"), home=None), 2, "not an evidence file")


# -- item 10: failure texts that do not lie, one prefix, times with their zone ------------------


def test_brief_names_a_signed_refusal_by_its_code() -> None:
    from vrmproto.cli._output import brief  # noqa: PLC0415

    forgot = brief("peer refused: no_relationship: no relationship was refused or found")
    assert "no_relationship" in forgot
    assert "connection refused" not in forgot
    assert brief("POST http://127.0.0.1:9/vrm/inbox: connection refused") == \
        "unreachable: connection refused"
    assert brief("POST http://h/vrm/inbox: ClientConnectorError: Cannot connect to host h:9 "
                 "ssl:default [Connect call failed ('h', 9)]") == "unreachable: connection refused"


def test_last_error_has_no_http_library_text(home: Path, host: VendorHost) -> None:
    ok(vrm("connect", host["avis"].url, home=home))
    host.stop("avis")
    try:
        # queued: exit 3, "do not send it again" (the contract; it was 0, as if delivered)
        queued = fails(vrm("share", "Avis Park City", "email=doc@example.org", "--json",
                           home=home), 3, "waits in the outbox")  # fmt: skip
        assert queued.json["status"] == "queued"
        (item,) = ok(vrm("outbox", "--json", home=home)).json["pending"]
    finally:
        host.start("avis")
    assert item["last_error"].endswith(": connection refused"), item
    for raw in ("ClientConnectorError", "Connect call failed", "ssl:default"):
        assert raw not in item["last_error"]


def test_conformance_errors_start_like_every_other_command() -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests._cli_helpers import ROOT, cli_env  # noqa: PLC0415

    proc = subprocess.run([sys.executable, "-m", "vrmproto.testing"], capture_output=True,
                          text=True, env=cli_env(), cwd=ROOT, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("vrm: missing URL"), proc.stderr
    r = fails(vrm("conformance", home=None), 2, "missing URL")
    assert r.stderr.startswith("vrm: ")


def test_times_name_their_zone(home: Path, host: VendorHost) -> None:
    ok(vrm("connect", host["avis"].url, home=home))
    text = ok(vrm("relationships", home=home)).stdout
    assert " UTC" in text
    assert " UTC" in ok(vrm("history", "Avis Park City", home=home)).stdout


# -- item 9: currencies and durations as people write them --------------------------------------


def test_currencies_are_iso_4217() -> None:
    import click  # noqa: PLC0415

    from vrmproto import Money  # noqa: PLC0415
    from vrmproto.cli._parse import parse_money  # noqa: PLC0415

    with pytest.raises(click.BadParameter, match=r"ISO 4217.*USD"):
        parse_money("300UDS")
    for bad in ("10 XYZ", "5 ABC"):
        with pytest.raises(click.BadParameter, match="ISO 4217"):
            parse_money(bad)
    assert parse_money("300usd") == Money(30000, "USD")
    assert parse_money("12.345 BHD") == Money(12345, "BHD")


@pytest.mark.parametrize(("text", "ms"), [
    ("1h30m", 90 * 60_000), ("2 weeks", 14 * 86_400_000), ("P30D", 30 * 86_400_000),
    ("PT1H30M", 90 * 60_000), ("P1W", 7 * 86_400_000), ("1 day, 12 hours", 36 * 3_600_000),
    ("1d12h", 36 * 3_600_000), ("P1DT12H", 36 * 3_600_000), ("90 minutes", 90 * 60_000),
    ("PT0.5S", 500), ("30d", 30 * 86_400_000), ("500ms", 500),
])  # fmt: skip
def test_compound_and_iso_8601_durations(text: str, ms: int) -> None:
    from vrmproto.cli._parse import parse_duration  # noqa: PLC0415

    assert parse_duration(text) == ms


def test_dates_are_durations_until_then() -> None:
    import click  # noqa: PLC0415

    from vrmproto.cli._parse import parse_date, parse_duration  # noqa: PLC0415

    now = parse_date("2026-12-01")
    assert parse_duration("2027-01-01", now_ms=now) == 31 * 86_400_000
    assert parse_duration("2027-01-01T12:00:00Z", now_ms=now) == 31 * 86_400_000 + 12 * 3_600_000
    for bad in ("2026-11-30", "P", "PT", "1h 30", "soon", "0s", "P1DT"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad, now_ms=now)


def test_share_and_intent_read_what_people_type(home: Path, host: VendorHost) -> None:
    import datetime as dt  # noqa: PLC0415

    ok(vrm("connect", host["outfitters"].url, home=home))
    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=40)).date()
    s = ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--expires",
               day.isoformat(), "--json", home=home)).json
    until = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000
    assert abs(s["expires"] - until) < 60_000
    ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--expires", "P30D",
           home=home))  # the other forms: test_compound_and_iso_8601_durations
    fails(vrm("intent", "new", "SUV", "--max-price", "300UDS", "--vendor", host["avis"].url,
              "--no-discover", home=home), 2, "ISO 4217", "USD")
    assert ok(vrm("intent", "list", "--json", home=home)).json == {"intents": []}


# -- item 8: words that say what happened -------------------------------------------------------


def test_an_accepted_counter_offer_is_on_the_vendors_terms(home: Path, host: VendorHost) -> None:
    r = ok(vrm("connect", host["budget"].url, "--accept-counter", home=home))
    assert "you accepted the counter-offer" in r.stdout
    assert "on the vendor's terms" in r.stdout
    assert "on your terms" not in r.stdout
    mine = ok(vrm("connect", host["avis"].url, home=home))
    assert "on your terms" in mine.stdout


def test_a_decline_is_not_shown_as_confirmed(home: Path, host: VendorHost) -> None:
    r = ok(vrm("intent", "new", "SUV", "--no-discover", "--vendor", host["outfitters"].url,
               "--vendor", host["avis"].url, "--deadline", "10s", home=home))
    outfitters, avis = host["outfitters"].name, host["avis"].name
    (line,) = [ln for ln in r.stdout.splitlines() if outfitters in ln and "declined:" in ln
               and "—" in ln and "✓" not in ln]  # fmt: skip
    assert "confirmed" not in line
    (offer,) = [ln for ln in r.stdout.splitlines() if avis in ln and "offer:" in ln]
    assert "✓ offer" in offer


def test_progress_names_a_vendor_given_by_url_as_the_final_table_does(
    home: Path, host: VendorHost
) -> None:
    """Item 8: a vendor named only by ``--vendor URL`` showed as its URL while the intentcast
    ran and by its name in the offers table after; now its discovered name in both."""
    r = ok(vrm("intent", "new", "SUV", "--no-discover", "--vendor", host["avis"].url,
               "--vendor", host["hertz"].url, "--deadline", "10s", home=home))
    progress = [ln for ln in r.stdout.splitlines() if "✓ offer" in ln]
    assert len(progress) == 2, r.stdout
    for key in ("avis", "hertz"):
        (line,) = [ln for ln in progress if host[key].name in ln]
        assert host[key].url not in line
    assert all(host[k].url not in r.stdout for k in ("avis", "hertz")), r.stdout
    table = r.stdout[r.stdout.index("offers for"):]
    assert host["avis"].name in table
    assert host["hertz"].name in table


def test_the_live_table_gives_way_to_the_final_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vrm address set` printed its table twice: the live one stayed on screen above the final
    one. The live table is transient now."""
    from rich.console import Console  # noqa: PLC0415

    from vrmproto.cli import _progress  # noqa: PLC0415
    from vrmproto.cli._output import Out  # noqa: PLC0415

    made: list[dict[str, object]] = []
    real_live = _progress.Live

    def live(*args: object, **kwargs: object) -> object:
        made.append(kwargs)
        return real_live(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_progress, "Live", live)
    monkeypatch.setattr(Out, "live", property(lambda self: True))
    out = Out(json_mode=False, console=Console(file=io.StringIO(), force_terminal=True))
    with _progress.FanoutDisplay(out, "address update"):
        pass
    assert made
    assert made[0].get("transient") is True


# -- item 14: shell completion, as the README says -----------------------------------------------


def test_the_completion_scripts_the_readme_names_generate() -> None:
    import re  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from tests._cli_helpers import ROOT, cli_env  # noqa: PLC0415

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for shell in ("bash", "zsh", "fish"):
        assert re.search(rf"_VRM_COMPLETE={shell}_source vrm", readme)
    env = {**cli_env(), "_VRM_COMPLETE": "bash_source"}
    proc = subprocess.run([sys.executable, "-m", "vrmproto.cli"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "complete -o nosort -F _vrm_completion vrm" in proc.stdout
    complete = {**cli_env(), "_VRM_COMPLETE": "bash_complete", "COMP_WORDS": "vrm int",
                "COMP_CWORD": "1"}  # fmt: skip
    words = subprocess.run([sys.executable, "-m", "vrmproto.cli"], capture_output=True,
                           text=True, env=complete, cwd=ROOT, timeout=60, check=False)  # fmt: skip
    assert "intent" in words.stdout
