"""Webhooks as a vendor operator meets them (session 16's hunt): what a retry sends after the
customer withdrew the data, while the receiver was failing.

Before: the deliverer read a batch of the feed once and POSTed each event as read, however long
it retried. A share withdrawn while its event waited (the receiver down, answering 500, or the
relationship's earlier events held up) went out again, fields and all, on every retry until
acknowledged — though the store had dropped them from the event in the withdrawal's commit
(§12.10-2) and docs/events.md promises the feed "keeps neither the fields of a withdrawn or
expired share nor sends them again". Now a retry (and a first attempt made long after the read)
reads the event again.

Each test runs on the SQLite store and on PostgreSQL. No test sleeps: the receiver is a Poster
stand-in that answers as told.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import _postgres
import pytest
from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer
from _vendor_proc import InProcessVendor as Vendor
from click.testing import CliRunner

from vrmproto._keys import Identity
from vrmproto.cli._app import cli as main
from vrmproto.server import _webhooks
from vrmproto.server._metrics import Metrics
from vrmproto.server._webhooks import Deliverer, Webhook, parse_secret, running, shown
from vrmproto.store import Commit, DeadLetter, SQLiteStore, Store

VENDOR = Identity(VENDOR_SEED)
postgres_cluster = _postgres.postgres_cluster


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The vendor's store: SQLite, as ``vrm vendor serve`` keeps it by default, or PostgreSQL."""
    async with _postgres.opened_store(request, tmp_path, request.param) as s:
        yield s


SECRET_TEXT = "whsec_" + "a2tra2tra2tra2tra2tra2tra2tra2tr"
SECRET = parse_secret(SECRET_TEXT)




class Flaky:
    """A Poster stand-in: fails the first POST that carries ``failing`` (an event kind), calling
    ``meanwhile`` before it answers 500; acknowledges every other. Keeps each POST's documents."""

    def __init__(self, failing: str, meanwhile: Any) -> None:
        self.failing = "org.vrmproto." + failing
        self.meanwhile = meanwhile
        self.posts: list[list[dict[str, Any]]] = []

    async def post(self, header_lines: bytes, body: bytes) -> int:
        docs = json.loads(body)
        docs = docs if isinstance(docs, list) else [docs]
        self.posts.append(docs)
        if self.meanwhile is not None and any(d["type"] == self.failing for d in docs):
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
            return 500
        return 204

    async def close(self) -> None:
        pass

    def personal(self, kind: str) -> list[Any]:
        """The ``personal`` of each POSTed document of ``kind``, in the order sent."""
        return [d["data"]["personal"] for docs in self.posts for d in docs
                if d["type"] == "org.vrmproto." + kind]  # fmt: skip


def hook(**kw: Any) -> Webhook:
    return Webhook("crm", "http://127.0.0.1:9/unused", SECRET, "https://shop.example/vrm",
                   backoff_s=0.001, backoff_max_s=0.001, **kw)  # fmt: skip


@pytest.mark.parametrize("batched", [False, True], ids=["single", "batched"])
async def test_a_retry_does_not_send_the_fields_of_a_share_withdrawn_meanwhile(
    store: Store, batched: bool
) -> None:
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    share = c.share({"email": "ada@example.org"})
    await v.deliver(c, share)

    async def withdraw() -> None:  # while the receiver fails the share's POST
        await v.deliver(c, c.withdraw(share.hash))

    poster = Flaky("data.shared", withdraw)
    async with Deliverer(hook(batched=batched), store, poster) as d:  # type: ignore[arg-type]
        while await d.step():
            pass
    first, *retries = poster.personal("data.shared")
    assert first["fields"] == {"email": "ada@example.org"}  # sent before the withdrawal
    assert retries
    assert retries == [None] * len(retries)  # never again after it
    assert [e.kind for e in await store.events()][-2:] == ["data.withdrawn", "data.erased"]


async def test_an_event_held_up_behind_a_failing_one_is_read_again_before_it_goes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The share's first attempt comes only once the relationship's earlier event got through:
    with the batch read longer ago than ``FRESH_S`` (0 here: as if that long had passed), it is
    read again, and goes without the fields the customer withdrew meanwhile."""
    monkeypatch.setattr(_webhooks, "FRESH_S", 0.0)
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    share = c.share({"email": "ada@example.org"})
    await v.deliver(c, share)

    async def withdraw() -> None:
        await v.deliver(c, c.withdraw(share.hash))

    poster = Flaky("terms.accepted", withdraw)
    async with Deliverer(hook(), store, poster) as d:  # type: ignore[arg-type]
        while await d.step():
            pass
    assert poster.personal("data.shared") == [None]


async def test_a_hook_for_some_purposes_gets_of_an_address_update_only_their_fields(
    store: Store,
) -> None:
    """An address update names no purposes: each field is held for those of the value it
    replaces, a new one for Core Function (§12.10-1). Before, its event carried no purposes, so
    a webhook configured for marketing (``purposes = [3]``) got every changed email, phone and
    address though the customer had shared them for the contracted service only."""
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    await v.deliver(c, c.share({"email": "a@example.org", "street": "1 Main"}, purposes=(2,)))
    nick = c.share({"nick": "ada"}, purposes=(3, 4))
    await v.deliver(c, nick)
    await v.deliver(c, c.address({"email": "b@example.org", "nick": "bo", "phone": "+1 5"}))
    got = {}
    for purposes in (None, frozenset({3}), frozenset({2}), frozenset({5})):
        poster = Flaky("none", None)
        async with Deliverer(hook(purposes=purposes), store, poster) as d:  # type: ignore[arg-type]
            while await d.step():
                pass
        await store.commit(Commit(event_cursors=(("crm", 0),)))  # the next hook: all again
        (got[purposes],) = poster.personal("address.updated")
    assert got[frozenset({5})] is None  # none of its fields is held for purpose 5
    assert got[frozenset({2})]["fields"] == {"email": "b@example.org"}
    assert got[frozenset({3})] == {"fields": {"nick": "bo"}, "field_purposes": {"nick": [3, 4]},
                                   "purposes": [3, 4],  # and how it is held (§5.3.6-2)
                                   "field_shares": {"nick": "evt_" + nick.hash.hex()},
                                   "field_expires": {"nick": nick.body.expires}}  # fmt: skip
    everything = got[None]
    assert everything["fields"] == {"email": "b@example.org", "nick": "bo", "phone": "+1 5"}
    assert everything["field_purposes"] == {"email": [2], "nick": [3, 4], "phone": [1]}
    assert everything["purposes"] == [1, 2, 3, 4]


# -- a webhook named after its url, password and all ---------------------------------------------

CRM_URL = "https://crm-bot:s3cr3t-pw@crm.example:8443/vrm?tenant=7"


def test_a_url_is_shown_without_its_user_info() -> None:
    assert shown(CRM_URL) == "https://***@crm.example:8443/vrm?tenant=7"
    assert shown("http://TOKEN@127.0.0.1/hook") == "http://***@127.0.0.1/hook"
    assert shown("https://crm.example/vrm") == "https://crm.example/vrm"
    assert shown("crm") == "crm"


async def test_a_password_in_the_url_reaches_no_log_metric_or_listing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``[[webhooks]]`` entry without ``name`` is named after its url, and user info in the
    url is the receiver's password (``Authorization: Basic``, docs/events.md). Before, that name
    went as it was into the webhook's warnings, the ``webhook`` label of ``/metrics`` (served
    on the vendor's public port when ``[metrics] enabled``) and ``vrm vendor events --dead``."""
    caplog.set_level(logging.INFO, logger="vrmproto.server.webhooks")
    v, c = Vendor(store), Customer(VENDOR)
    await v.deliver(c, c.offer(*ACCEPTED))
    named = Webhook(CRM_URL, CRM_URL, SECRET, "https://shop.example/vrm", backoff_s=0.001,
                    backoff_max_s=0.001, dead_after_s=0.0)  # fmt: skip
    poster = Flaky("relationship.opened", _nothing)
    async with Deliverer(named, store, poster) as d:  # type: ignore[arg-type]
        while await d.step():
            pass
    assert await store.dead_letters(CRM_URL)  # keyed by the name itself, as before
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "https://***@crm.example:8443/vrm" in logged
    metrics = Metrics()
    metrics.webhooks = (CRM_URL,)
    await metrics.refresh(store)
    text = metrics.text().decode()
    assert (
        'vrm_webhook_dead_letters{webhook="https://***@crm.example:8443/vrm?tenant=7"} 1.0' in text
    )
    for said in (logged, text):
        assert "s3cr3t-pw" not in said
        assert "crm-bot" not in said


async def test_vrm_vendor_events_dead_lists_the_webhook_without_its_password(
    tmp_path: Path,
) -> None:
    config = tmp_path / "vendor.toml"
    config.write_text(f'name = "Shop"\nseed = "{VENDOR_SEED.hex()}"\n'
                      f'[[webhooks]]\nurl = "{CRM_URL}"\nsecret = "{SECRET_TEXT}"\n')  # fmt: skip
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    async with await SQLiteStore.open(data / "vendor.db") as store:
        v, c = Vendor(store), Customer(VENDOR)
        await v.deliver(c, c.offer(*ACCEPTED))
        await store.commit(Commit(dead_letters=(DeadLetter(CRM_URL, 1, 1, "HTTP 500"),)))
    args = ["vendor", "events", "--config", str(config), "--data-dir", str(data), "--dead"]
    for extra in ([], ["--json"]):
        out = await asyncio.to_thread(CliRunner().invoke, main, [*args, *extra],
                                      env=dict(os.environ))  # fmt: skip
        assert out.exit_code == 0, out.output
        assert "https://***@crm.example:8443/vrm?tenant=7" in out.output
        assert "s3cr3t-pw" not in out.output


async def _nothing() -> None:
    pass


class Sizes:
    """A Poster stand-in that acknowledges every POST and keeps each body's documents and size."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, list[str]]] = []

    async def post(self, header_lines: bytes, body: bytes) -> int:
        self.posts.append((len(body), [d["id"] for d in json.loads(body)]))
        return 204

    async def close(self) -> None:
        pass


async def test_a_batched_post_stays_under_batch_bytes(store: Store) -> None:
    """Shares of large fields (a value may be 4,096 bytes, 64 of them; escaped in JSON, up to
    six times that) made a batch of 100 events one body of many megabytes: a receiver behind
    a proxy refuses it (nginx: 1 MiB, 413), and after ``refused_after_s`` the events of every
    customer in the batch became dead letters. Now a batch is cut to ``batch_bytes`` (the
    first event goes however large), in feed order."""
    v = Vendor(store)
    for n in range(1, 7):
        c = Customer(VENDOR)
        await v.deliver(c, c.offer(*ACCEPTED))
        await v.deliver(c, c.share({f"f{i}": "\x01" * 1000 for i in range(n * 4)}))
    events = await store.events(limit=1000)
    poster = Sizes()
    async with Deliverer(hook(batched=True, batch_bytes=40_000), store, poster) as d:  # type: ignore[arg-type]
        while await d.step():
            pass
    assert [i for _, ids in poster.posts for i in ids] == [e.id for e in events]  # once, in order
    assert len(poster.posts) > 1
    for size, ids in poster.posts:
        assert size <= 40_000 or len(ids) == 1  # an event larger than that alone
    assert any(size > 40_000 for size, _ in poster.posts)  # 24 fields of 6,000 bytes each


def test_an_event_failing_for_days_still_gets_a_delay_and_becomes_a_dead_letter() -> None:
    """With the defaults (1 s doubling to 5 min, dead after 3 days) an event answered 500 is
    attempted over a thousand times before it is set aside. Before, the delay before attempt
    1,025 was ``2.0 ** 1024`` (OverflowError), after 2.7 days: delivery failed, started over
    with the event's clock reset, and the event never became a dead letter — the feed stayed
    held back behind it for good."""
    h = Webhook("crm", "http://127.0.0.1:9/hook", SECRET, "https://shop.example/vrm")
    waited, attempt = 0.0, 0
    while waited < h.dead_after_s:  # the shortest waits the jitter allows
        attempt += 1
        delay = h.delay(attempt, lambda: 0.0)
        assert 0 < delay <= h.backoff_max_s
        waited += delay
    assert attempt > 1024
    assert h.delay(10**9, lambda: 1.0) == h.backoff_max_s


async def test_two_webhooks_of_one_name_are_refused_not_left_waiting(tmp_path: Path) -> None:
    """Two ``[[webhooks]]`` for one receiver (one per purpose, say) without names are both named
    after the url. A webhook's name keys its cursor and the lock one deliverer holds: before,
    the second waited for the first's lock as long as the vendor ran, and its events went
    nowhere, without a word. Now ``vrm vendor serve`` stops with a sentence saying so."""
    store = await SQLiteStore.open(tmp_path / "vendor.db")
    try:
        v = Vendor(store)
        url = "https://crm.example/vrm"
        hooks = [Webhook(url, url, SECRET, "https://shop.example/vrm", purposes=frozenset({p}))
                 for p in (2, 3)]  # fmt: skip
        with pytest.raises(ValueError, match=r"two webhooks are named https://crm\.example/vrm"):
            async with running(v.endpoint, hooks):
                pass
        async with running(v.endpoint, [hooks[0]]) as (one,):  # one is fine
            assert one.hook is hooks[0]
    finally:
        await store.close()
