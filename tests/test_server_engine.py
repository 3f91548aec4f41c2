"""The endpoint engine without HTTP: what one accepted message costs (issue 9).

- Nothing re-opened: the endpoint verifies each message it receives once (and a share's sealed
  content once), never bytes it signed or stored itself — not on a withdrawal, not in an expiry
  sweep, not for an export.
- Held data is written per row: what a share costs to store does not grow with the shares
  before it.
- The replies dispatch by message body class (:data:`vrmproto.server._replies.REPLIES`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _vendor_proc import ACCEPTED, DAY_MS, VENDOR_SEED, Customer, Reply, now_ms

from vrmproto import (
    DATA_FORMAT,
    DEFAULT_LIMITS,
    DataRecord,
    MasterSeed,
    Relationship,
    _binding,
    _envelope,
    _keys,
    _rules,
    sign_message,
)
from vrmproto._binding import decode_replies
from vrmproto._keys import Context, Identity
from vrmproto._messages import (
    DataRequest,
    DataWithdraw,
    Intentcast,
    TermsOffer,
)
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._replies import REPLIES
from vrmproto.store import Commit, MemoryStore, SQLiteStore

VENDOR = Identity(VENDOR_SEED)
V2 = Path(__file__).resolve().parent / "data" / "v2"
YEAR_MS = 365 * DAY_MS


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The context of every signature verification made while the test runs, in order."""
    seen: list[bytes] = []
    real = _keys.verify

    def counting(context: bytes, data: bytes, signature: bytes, key: bytes) -> None:
        seen.append(context)
        real(context, data, signature, key)

    for module in (_keys, _envelope, _binding, _rules):
        monkeypatch.setattr(module, "verify", counting)
    return seen


class Vendor:
    """An endpoint on a MemoryStore with a clock the test moves, and one customer of it."""

    def __init__(self, verified: list[bytes]) -> None:
        self.now = now_ms()
        self.store = MemoryStore()
        self.commits: list[Commit] = []
        real_commit = self.store.commit

        async def commit(c: Commit) -> None:
            self.commits.append(c)
            await real_commit(c)

        self.store.commit = commit  # type: ignore[method-assign]  # a spy, for what is written
        self.endpoint = Endpoint(
            VENDOR, store=self.store, clock=lambda: self.now,
            policy=ReferencePolicy(accepts_terms=ACCEPTED),
        )  # fmt: skip
        self.customer = Customer(VENDOR)
        self.verified = verified

    async def deliver(self, msg: Any) -> list[bytes]:
        """Deliver ``msg``; the verifications the endpoint made (not the customer's)."""
        start = len(self.verified)
        response = await self.endpoint.handle_inbox(msg.envelope)
        made = self.verified[start:]
        self.customer.absorb(Reply(response.status, response.body, dict(response.headers)), msg)
        del self.verified[start + len(made) :]
        return made


async def test_nothing_the_vendor_stored_is_verified_again(verified: list[bytes]) -> None:
    """Issue 9: a share is verified once, with its sealed content; withdrawing it, sweeping
    an expired one, verify no stored share again (25ceebf re-verified each)."""
    v = Vendor(verified)
    await v.deliver(v.customer.offer(*ACCEPTED))
    first, second = v.customer.share({"email": "a@example.org"}), v.customer.share({"x": "1"})
    assert await v.deliver(first) == [Context.MESSAGE, Context.SEALED]
    assert await v.deliver(second) == [Context.MESSAGE, Context.SEALED]
    assert await v.deliver(v.customer.withdraw(first.hash)) == [Context.MESSAGE]
    v.now += 2 * DAY_MS  # the second share has expired
    start = len(verified)
    assert await v.endpoint.expire_shares() == 1
    assert verified[start:] == []


def _size(value: Any) -> int:
    """The bytes of every str and bytes value in ``value`` (a record, or a tuple of them)."""
    if isinstance(value, bytes | str):
        return len(value)
    if isinstance(value, tuple):
        return sum(_size(v) for v in value)
    if dataclasses.is_dataclass(value):
        return sum(_size(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def _written(c: Commit) -> tuple[dict[str, int], int]:
    """Rows per part of a commit, and the bytes it writes beside the relationship's own state
    (``RelationshipRecord.data``, the core's ``to_state()``)."""
    rows = {f.name: len(getattr(c, f.name)) for f in dataclasses.fields(c)}
    state = sum(len(r.data) for r in c.relationships)
    return {k: n for k, n in rows.items() if n}, _size(c) - state


async def test_a_share_costs_the_same_after_one_share_or_fifty(verified: list[bytes]) -> None:
    """Issue 9: held data is rows per field, written per message; 25ceebf rewrote one blob of
    every held record on every share (meta ``held:<thread>``, 320 bytes after one share, 7272
    after fifty)."""
    v = Vendor(verified)
    await v.deliver(v.customer.offer(*ACCEPTED))
    written = []
    for i in range(51):
        v.commits.clear()
        await v.deliver(v.customer.share({f"field_{i:02d}": "x" * 20}))
        written.append(_written(v.commits[-1]))
    (rows_1, bytes_1), (rows_50, bytes_50) = written[1], written[50]
    assert rows_1 == rows_50
    assert rows_1.get("meta", 0) == 0
    assert rows_1["held"] == 1  # the one field the share carries
    assert abs(bytes_50 - bytes_1) <= 8  # timestamps and ids may take a byte more or less
    assert len(await v.store.held(v.customer.thread)) == 51


def test_replies_dispatch_by_body_class() -> None:
    """§12.3-2: one entry per message type the endpoint answers beyond its receipt."""
    assert set(REPLIES) == {TermsOffer, Intentcast, DataWithdraw, DataRequest}


class _Seeing(ReferencePolicy):
    """The reference policy, noting the held records the engine hands it for a data.request."""

    def __init__(self) -> None:
        super().__init__(accepts_terms=ACCEPTED)
        self.held: list[DataRecord] = []

    async def on_data_request(self, rel: Any, msg: Any, held: Sequence[DataRecord]) -> (
        Sequence[DataRecord]
    ):
        self.held = list(held)
        return ()


def _fixture_seed(label: str) -> bytes:
    """The fixed key seeds of ``scripts/make_v2_fixtures.py``."""
    return hashlib.sha256(b"vrmproto v2 fixture: " + label.encode()).digest()


async def test_the_vendor_keeps_serving_a_v2_file(tmp_path: Path) -> None:
    """Issue 9, the vendor side of the migration: the reference vendor's file from 25ceebf
    (held data and its save point in meta blobs) opens as schema 3; the customer's next
    data.request gets its receipt and a data.return of what was held — the withdrawn share
    gone, the name an update replaced new — and the sweep drops the shares once expired and
    erases their bodies, keeping what an address update gave."""
    path = tmp_path / "vendor.db"
    shutil.copyfile(V2 / "vendor.db", path)
    path.chmod(0o600)
    vendor = Identity(_fixture_seed("vendor Acme"))
    customer = MasterSeed(_fixture_seed("customer")).pairwise(vendor.public_key)
    async with await SQLiteStore.open(path) as store:
        (record,) = [r for r in await store.relationships() if await store.held(r.thread)]
        assert record.peer_key == customer.public_key
        clock = [now_ms()]
        policy = _Seeing()
        endpoint = Endpoint(vendor, store=store, policy=policy, clock=lambda: clock[0])
        state = Relationship.from_state(record.data, identity=vendor)
        assert state.agreement is not None
        request = sign_message(
            DataRequest(agreement=state.agreement, format=DATA_FORMAT), identity=customer,
            recipient=vendor.public_key, thread=record.thread, prev=state.peer_head,
            now=clock[0], msg_id=bytes(range(16)),
        )  # fmt: skip
        response = await endpoint.handle_inbox(request.envelope)
        assert response.status == 200
        assert len(decode_replies(response.body, limits=DEFAULT_LIMITS)) == 2
        assert {(r.field, r.value, r.source) for r in policy.held} == {
            ("city", "London", "provided"), ("name", "Ada L.", "provided"),
            ("phone", "+1 555 0100", "provided")}  # fmt: skip
        clock[0] += 2 * YEAR_MS
        assert await endpoint.expire_shares() == 2
        assert [h.field for h in await store.held(record.thread)] == ["city"]
        assert await store.get_meta(f"held:{record.thread.hex()}") is None
