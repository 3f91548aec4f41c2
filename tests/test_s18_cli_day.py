"""What a person and a vendor's operator met using ``vrm`` every day (session 18: the rough
edges left by session 17, then the README walkthrough on loopback), each fixed with the test
that shows it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import click
from pydantic import BaseModel

from tests._cli_helpers import (
    VendorHost,
    fails,
    history_length,
    new_home,
    ok,
    relationships,
    vendor_host,
    vrm,
)
from tests._ports import closed_port
from tests._vendor_proc import ACCEPTED, VENDOR_SEED, Customer, InProcessVendor
from vrmproto import Identity, fingerprint
from vrmproto.cli._app import cli
from vrmproto.server._config import VendorFile
from vrmproto.server._retention import Retention, trim_feed
from vrmproto.store import Commit, SQLiteStore


def test_an_intentcast_says_each_decline_and_failure_once_on_a_pipe(tmp_path: Path) -> None:
    """Off a terminal the progress lines say each vendor's outcome as it comes; the summary
    after them said every decline (and every vendor not reached) a second time."""
    home = new_home(tmp_path)
    down = f"http://127.0.0.1:{closed_port()}"
    with vendor_host("avis", "outfitters") as host:
        r = ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--no-discover", "--no-relays",
                   "--deadline", "3s", "--vendor", host["avis"].url, "--vendor",
                   host["outfitters"].url, "--vendor", down, home=home))  # fmt: skip
    assert r.stdout.count("nothing we offer matches this request") == 1, r
    assert "Wasatch Outfitters declined: nothing we offer" in r.stdout, r
    assert r.stdout.count("127.0.0.1:" + down.rsplit(":", 1)[1]) == 1, r
    assert "Avis Park City" in r.stdout, r


# -- a vendor's operator and the event feed ---------------------------------------------------


def _trimmed_feed(tmp_path: Path, customers: int = 3, keep: int = 2) -> tuple[Path, Path, str]:
    """A vendor file and its data directory whose feed holds two events per customer, all but
    the last ``keep`` trimmed; and the id of the first event."""
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n')
    data = tmp_path / "data"
    data.mkdir(mode=0o700)

    async def fill() -> str:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            vendor = InProcessVendor(store)
            for _ in range(customers):
                c = Customer(Identity(VENDOR_SEED))
                await vendor.deliver(c, c.offer(*ACCEPTED))
            first = (await store.events(0, 1))[0].id
            head = await store.feed_head()
            await store.trim_events(head - keep, recorded_before=2**62)
            return first

    return config, data, asyncio.run(fill())


def test_reading_the_feed_from_before_what_was_trimmed_says_where_it_goes_on(
    tmp_path: Path,
) -> None:
    """``--since 1`` after retention trimmed positions 2-4 ended with the library's sentence
    for a reader in code ("… read again from the oldest event kept (position 0) …"): not
    where the feed goes on, nor which option reads it."""
    config, data, first = _trimmed_feed(tmp_path)
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data)]
    r = fails(vrm(*args, "--since", "1", home=tmp_path), 1,
              "the events after position 1 up to 4 are no longer in the feed",
              "It now goes on at position 5", "`--since 4`")  # fmt: skip
    assert r.stdout == "", r
    told = ok(vrm(*args, "--since", "4", "--json", home=tmp_path))
    assert [json.loads(line)["pos"] for line in told.stdout.splitlines()] == [5, 6]
    assert first.startswith("evt_")
    fails(vrm(*args, "--since", first, home=tmp_path), 2, f"no event '{first}' in the feed",
          "trimmed up to position 4", "`--since 4`")  # fmt: skip


SECRET = "whsec_" + "a2tra2tra2tra2tra2tra2tra2tra2tr"


def test_an_operator_forgets_the_cursor_of_a_tryton_database_removed(tmp_path: Path) -> None:
    """A removed Tryton database left its ``tryton:<db>`` cursor, which kept the whole feed
    after it until ``[feed] max_days`` (365), and the operator had no command to drop it (the
    docs said: delete its ``event_cursors`` row)."""
    config, data, _ = _trimmed_feed(tmp_path, customers=4, keep=8)  # positions 1-8, none gone
    config.write_text(config.read_text() + '[feed]\nkeep_days = 0\nconsumers = ["bi"]\n'
                      f'[[webhooks]]\nurl = "https://crm.example/vrm"\nname = "crm"\n'
                      f'secret = "{SECRET}"\n')  # fmt: skip

    async def cursors(*names: tuple[str, int]) -> None:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            await store.commit(Commit(event_cursors=names))

    async def trim() -> list[int]:
        async with await SQLiteStore.open(data / "vendor.db") as store:
            now = time.time_ns() // 1_000_000 + 1_000  # every event older than keep_days (0)
            await trim_feed(store, Retention(keep_s=0, consumers=("bi",)), ["crm"], now)
            return [e.pos for e in await store.events(0, 100)]

    asyncio.run(cursors(("tryton:old", 2), ("crm", 7), ("bi", 7), ("a-webhook-removed", 1)))
    assert asyncio.run(trim()) == [2, 3, 4, 5, 6, 7, 8]  # held back by tryton:old
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data)]
    listed = ok(vrm(*args, "--cursors", "--json", home=tmp_path)).stdout.splitlines()
    assert {(c["consumer"], c["pos"], c["behind"], c["keeps_feed"])
            for c in map(json.loads, listed)} == {
        ("tryton:old", 2, 6, True), ("crm", 7, 1, True), ("bi", 7, 1, True),
        ("a-webhook-removed", 1, 7, False)}  # fmt: skip
    fails(vrm(*args, "--forget", "crm", home=tmp_path), 2, "crm", "take it out of the file first")
    fails(vrm(*args, "--forget", "bi", home=tmp_path), 2, "take it out of the file first")
    fails(vrm(*args, "--forget", "tryton:0ld", home=tmp_path), 2, "no consumer named",
          "tryton:old")  # fmt: skip
    said = ok(vrm(*args, "--forget", "tryton:old", home=tmp_path)).stdout
    assert "forgot tryton:old (its cursor was at position 2)" in said, said
    assert asyncio.run(trim()) == [7, 8]  # what crm and bi still need
    left = ok(vrm(*args, "--cursors", home=tmp_path)).stdout
    assert "tryton:old" not in left
    assert "a-webhook-removed  at 1, 7 behind  (not in the vendor file: does not keep the feed)" \
        in left, left


# -- a vendor that changed its key -------------------------------------------------------------


def _rekeyed(host: VendorHost, key: str = "outfitters") -> tuple[Identity, str]:
    """The vendor ``key`` back under a new key, with its data: the old identity, and the new
    key's fingerprint."""
    v = host[key]
    old = v.identity
    host.stop(key)
    v.identity = Identity(os.urandom(32))
    host.start(key)
    return old, fingerprint(v.identity.public_key)


def _advice(home: Path) -> tuple[str, list[list[str]]]:
    """The held message's advice, and the commands it gives, in its order, as argv."""
    (held,) = ok(vrm("outbox", "--json", home=home)).json["pending"]
    said: str = held["last_error"]
    assert said.startswith("held, not retried"), held
    return said, [shlex.split(cmd)[1:] for cmd in re.findall(r"`(vrm [^`]+)`", said)]


def test_the_held_messages_advice_works_when_followed(tmp_path: Path) -> None:
    """It said: accept the new key, then "`vrm outbox retry` tries it again" — which held it
    again (the message is the old relationship's, to the old key), exit 5 for good. Followed
    now: accept, drop, send again — the share reaches the vendor in the new relationship."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        _, new_fp = _rekeyed(host)
        fails(vrm("share", "Wasatch Outfitters", "email=doc@example.org", home=home), 5)
        said, (accept, drop, retry) = _advice(home)
        assert accept[-1] == new_fp, accept
        assert drop[:2] == ["outbox", "drop"], drop
        # after the accept: drop it and send it again; a retry only if the old key comes back
        assert "you send it again" in said.split("`vrm outbox drop")[1], said
        assert retry[:2] == ["outbox", "retry"], retry
        assert "sign with" in said.split("`vrm outbox retry")[0].rsplit(".", 1)[1], said
        ok(vrm(*accept, home=home))
        ok(vrm(*drop, home=home))
        sent = ok(vrm("share", "Wasatch Outfitters", "email=doc@example.org", "--json",
                      home=home))  # fmt: skip
        assert sent.json["outcome"] == "done", sent
        assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []


def test_the_held_messages_retry_delivers_it_once_the_vendor_signs_with_its_key_again(
    tmp_path: Path,
) -> None:
    """The advice's other way: the vendor went back to the key held (a botched deployment
    undone); the retry it names delivers the held message."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        old, _ = _rekeyed(host)
        fails(vrm("share", "Wasatch Outfitters", "email=doc@example.org", home=home), 5)
        _, (*_, retry) = _advice(home)
        host.stop("outfitters")
        host["outfitters"].identity = old
        host.start("outfitters")
        ok(vrm(*retry, home=home))
        assert ok(vrm("outbox", "--json", home=home)).json["pending"] == []


def test_a_relationship_superseded_by_a_vendors_new_key_is_shown_so_and_not_used(
    tmp_path: Path,
) -> None:
    """After `vrm connect URL --accept-new-key FP` the old relationship still read "agreed",
    like the new one; and while the new one waited for the person's answer to a counter-offer,
    `vrm share NAME` went to the old agreed one, where it was held (exit 5)."""
    home = new_home(tmp_path)
    with vendor_host("budget") as host:
        ok(vrm("connect", host["budget"].url, "--accept-counter", home=home))
        _, new_fp = _rekeyed(host, "budget")
        fails(vrm("connect", host["budget"].url, "--accept-new-key", new_fp, home=home), 1,
              "counter-offer is open")  # asked [y/N], no answer: left open  # fmt: skip
        fails(vrm("share", "Budget Salt Lake", "email=doc@example.org", home=home), 1,
              "the relationship is countered")  # fmt: skip
        rows = {r["vendor_fingerprint"]: r for r in relationships(home)}
        old = next(r for fp, r in rows.items() if fp != new_fp)
        assert old["state"] == "agreed"
        assert old["superseded_by"] == rows[new_fp]["thread"]
        assert rows[new_fp]["superseded_by"] is None
        text = ok(vrm("relationships", home=home)).stdout
        assert f"is superseded: you accepted its new key {new_fp}" in text, text
        ok(vrm("connect", "Budget Salt Lake", "--accept-counter", home=home))
        ok(vrm("share", "Budget Salt Lake", "email=doc@example.org", home=home))


# -- vrm conformance in CI ---------------------------------------------------------------------


def _conformance_codes() -> dict[str, str]:
    """The README's table of ``vrm conformance``'s exit codes: code → meaning."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## For vendor implementers: the conformance suite"):]
    table = section[section.index("### Exit codes"):section.index("### Levels")]
    return dict(re.findall(r"^\| `(\d)` \| (.+) \|$", table, re.M))


def test_an_unreachable_endpoint_is_the_code_the_readme_gives_it() -> None:
    """``vrm conformance URL`` with nothing listening ended 2, which the README's table gave
    only to "a bad URL or option, or no discovery document": a CI user could not tell from it
    what the code meant. It is 2, "the suite could not run", and the table says so."""
    r = fails(vrm("conformance", f"http://127.0.0.1:{closed_port()}", home=None), 2,
              "the suite cannot run", "connection refused")  # fmt: skip
    assert "could not be reached" in _conformance_codes()[str(r.code)]
    said = ok(vrm("--help", home=None)).stdout
    assert "2 could not run" in said
    assert "endpoint unreachable" in said


def test_rotate_names_the_key_it_moved_to(tmp_path: Path) -> None:
    """`vrm rotate` said "✓ now under a new key (c1c5dc007bd1, receipt kept)": the number was
    the key.rotate message's hash, read as the new key."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        before = relationships(home)[0]["your_fingerprint"]
        said = ok(vrm("rotate", "Wasatch Outfitters", home=home)).stdout
        now = relationships(home)[0]["your_fingerprint"]
    assert f"✓ now under your new key {now}, was {before} (message " in said, said


def test_a_word_of_a_vendors_name_is_not_taken_for_it_but_named(tmp_path: Path) -> None:
    """`vrm data lodge` said only "you have no relationship with 'lodge'" beside a relationship
    with Silver Star Lodge; the name is said now, and nothing is sent (a word is not a name:
    what goes to a vendor goes to the one named)."""
    home = new_home(tmp_path)
    with vendor_host("lodge") as host:
        ok(vrm("connect", host["lodge"].url, home=home))
        fails(vrm("share", "lodge", "email=doc@example.org", home=home), 2,
              "no relationship with 'lodge' (did you mean 'Silver Star Lodge'?)")  # fmt: skip
    assert history_length("Silver Star Lodge", home) == 4  # the offer, the accept, 2 receipts


def test_vendor_serve_help_names_every_section_of_the_vendor_file() -> None:
    """`vrm vendor serve --help` listed "limits, connections, server, store, logging, metrics":
    an operator reading it learnt nothing of [feed] (how long the event feed keeps its events)
    nor [[webhooks]]."""
    said = " ".join(ok(vrm("vendor", "serve", "--help", home=None)).stdout.split())
    sections = [name for name, info in VendorFile.model_fields.items()
                if isinstance(info.default, BaseModel) or name == "webhooks"]  # fmt: skip
    assert {"feed", "webhooks", "store"} <= set(sections), sections
    for name in sections:
        assert name in said, (name, said)


def test_ending_a_relationship_already_ended_is_done_and_sends_nothing(tmp_path: Path) -> None:
    """`vrm end NAME` a second time said "not possible in this relationship: relationship.end
    from the customer is not allowed in state ended", exit 1: the state machine's words, and a
    failure for what the person asked, which holds (nothing needed sending: 0)."""
    home = new_home(tmp_path)
    with vendor_host("market") as host:
        ok(vrm("connect", host["market"].url, home=home))
        ok(vrm("end", "Park City Market", home=home))
        entries = history_length("Park City Market", home)
        again = ok(vrm("end", "Park City Market", home=home))
        assert "already ended" in again.stdout, again
        said = ok(vrm("end", "Park City Market", "--json", home=home)).json
        assert (said["outcome"], said["already_ended"]) == ("done", True)
        assert history_length("Park City Market", home) == entries


def test_rotating_an_ended_relationship_says_so_in_words(tmp_path: Path) -> None:
    """It said "not possible in this relationship: key.rotate from the customer is not
    allowed in state ended": the state machine's words for the person."""
    home = new_home(tmp_path)
    with vendor_host("market") as host:
        ok(vrm("connect", host["market"].url, home=home))
        ok(vrm("end", "Park City Market", home=home))
        fails(vrm("rotate", "Park City Market", home=home), 1,
              "your relationship with Park City Market is ended",
              f"`vrm connect {host['market'].url}` opens a new one")  # fmt: skip


def test_a_zero_duration_is_said_to_be_zero_not_no_duration(tmp_path: Path) -> None:
    """`--deadline 0s` and `--expires 0d` were "'0s' is not a duration; write it like 30d,
    1h30m, …": the person wrote one."""
    home = new_home(tmp_path)
    fails(vrm("intent", "new", "kayak", "--no-relays", "--no-discover", "--deadline", "0s",
              "--vendor", f"http://127.0.0.1:{closed_port()}", home=home), 2,
          "'0s' is no time at all: give more than 0")  # fmt: skip
    fails(vrm("share", "Anyone", "a=b", "--expires", "0d", home=home), 2, "'0d' is no time at all")
    fails(vrm("share", "Anyone", "a=b", "--expires", "soon", home=home), 2,
          "'soon' is not a duration")  # fmt: skip


def test_a_seed_restored_into_a_new_directory_says_where_the_relationships_are(
    tmp_path: Path,
) -> None:
    """`vrm key import` into a new directory said only "Seed restored into a new data
    directory"; `vrm relationships` then said "No relationships yet", and nothing told the
    person that they are in agent.db, not in the seed. Followed, the advice brings them back."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
    seed = ok(vrm("key", "export", home=home)).stdout
    restored = tmp_path / "restored"
    said = ok(vrm("key", "import", home=restored, stdin=seed)).stdout
    assert "not in the seed but in agent.db" in said, said
    assert relationships(restored) == []
    shutil.copy(home / "agent.db", restored / "agent.db")  # the backup, as the advice says
    ok(vrm("doctor", home=restored))
    assert [r["vendor"] for r in relationships(restored)] == ["Wasatch Outfitters"]


def test_replay_without_webhooks_says_so(tmp_path: Path) -> None:
    """`vrm vendor events --replay` of a vendor file without [[webhooks]] printed nothing at
    all: the operator could not tell it from a replay that found nothing to deliver."""
    config, data, _ = _trimmed_feed(tmp_path, customers=1, keep=2)
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data)]
    assert "no [[webhooks]]" in ok(vrm(*args, "--replay", home=tmp_path)).stdout
    assert ok(vrm(*args, "--replay", "--json", home=tmp_path)).stdout == ""  # JSON lines: none


def test_relationships_all_says_what_an_intentcast_thread_is(tmp_path: Path) -> None:
    """`vrm relationships --all` showed an intentcast's threads by the states' wire spelling
    ("intent_declined", "intent_answered") among the relationships."""
    home = new_home(tmp_path)
    with vendor_host("avis", "outfitters") as host:
        ok(vrm("intent", "new", "4-wheel-drive SUV rental", "--no-discover", "--no-relays",
               "--vendor", host["avis"].url, "--vendor", host["outfitters"].url,
               home=home))  # fmt: skip
    said = ok(vrm("relationships", "--all", home=home)).stdout
    assert "intentcast, declined" in said, said
    assert "intentcast, offer" in said, said
    assert "intent_" not in said, said
    states = {r["state"] for r in ok(vrm("relationships", "--all", "--json", home=home)).json[
        "relationships"]}  # fmt: skip
    assert states == {"intent_answered", "intent_declined"}  # JSON keeps the spec's spelling


def test_every_option_that_repeats_says_so() -> None:
    """`vrm intent new --help` gave --constraint and --member as "A rule, e.g. 'no prepaid
    gas'." and "A loyalty program you belong to.": nothing said either may be given again,
    which the README's intentcast does (three --member, two --constraint); nor did --interface
    of `vrm connect` and `vrm intent new`. (`vrm conformance` is the suite's own command.)"""
    found = 0
    for path, command in _commands(cli, ()):
        if path[0] == "conformance":
            continue
        for param in command.params:
            if isinstance(param, click.Option) and param.multiple:
                found += 1
                assert "repeatable" in (param.help or ""), (path, param.opts, param.help)
    assert found >= 10  # (the walk reached the commands)


def test_every_timeout_of_a_command_that_sends_is_described_alike() -> None:
    """`vrm connect --help` gave "--timeout FLOAT RANGE  Seconds to wait for the vendor", the
    other commands that send "--timeout S … a message not delivered by then stays queued in
    the outbox" — which holds for a terms offer too (exit 3), as the README says of all."""
    # the README's list: "The commands that send to a vendor (`connect`, `share`, …)"
    sending = {("connect",), ("share",), ("withdraw",), ("data",), ("end",), ("rotate",),
               ("intent", "accept")}  # fmt: skip
    helps = {path: p for path, command in _commands(cli, ()) if path in sending
             for p in command.params if p.name == "timeout"}
    assert helps.keys() == sending, helps
    for path, param in helps.items():
        assert isinstance(param, click.Option)
        assert param.metavar == "S", path
        assert "stays queued in the outbox" in (param.help or ""), path


def _commands(group: click.Command, path: tuple[str, ...]
              ) -> Iterator[tuple[tuple[str, ...], click.Command]]:  # fmt: skip
    """Every ``vrm`` command under ``group``, with its path."""
    if not isinstance(group, click.Group):
        yield path, group
        return
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is not None:
            yield from _commands(command, (*path, name))

