"""Shortcuts on the vendor's message path (#12) that must decide exactly what the long way does:
the sealed content's outer map read in place (vrmproto/_envelope.py ``_sealed_parts``), the
storage budget's last measure asked without a coroutine (``StorageGauge.known``), and a lean
answer that nobody logs or counts skipping the request log (vrmproto/server/_lean.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from unittest import mock

import pytest
from _vendor_proc import Customer, Reply, now_ms
from hypothesis import example, given
from hypothesis import strategies as st

from vrmproto import Identity, _codec
from vrmproto._binding import DEFAULT_INBOX_PATH
from vrmproto._envelope import _sealed_parts
from vrmproto._errors import DecodeError
from vrmproto.server import (
    Endpoint,
    ReferencePolicy,
    Response,
    StorageBudget,
    _lean,
    _observe,
    serve,
)
from vrmproto.server._first_contact import Room, StorageGauge
from vrmproto.server._logging import REQUEST_LOG
from vrmproto.store import MemoryStore, StoreUsage

VENDOR = Identity(bytes(range(32)))


def _bin(data: bytes, form: int) -> bytes:
    """``data`` as msgpack bin ``form`` (0xC4, 0xC5, 0xC6), shortest or not."""
    size = {0xC4: 1, 0xC5: 2, 0xC6: 4}[form]
    return bytes([form]) + len(data).to_bytes(size, "big") + data


def _long_way(plain: bytes) -> tuple[bytes, bytes] | None:
    """What open_sealed concluded before the shortcut: the payload and a 64-byte sig of a
    canonical ``{payload: bin, sig: bin}``, or None (it then refuses or walks the value)."""
    try:
        outer = _codec.decode_form(plain)
    except DecodeError:
        return None
    if type(outer) is not dict or list(outer) != ["payload", "sig"]:
        return None
    payload, sig = outer["payload"], outer["sig"]
    if type(payload) is not bytes or type(sig) is not bytes or len(sig) != 64:
        return None
    return payload, sig


@st.composite
def sealed_maps(draw: st.DrawFn) -> bytes:
    """Encodings near the canonical one: other bin forms, sig lengths, keys, cut or extended."""
    payload = draw(st.binary(max_size=300) | st.sampled_from([b"p" * 256, b"q" * 65_536]))
    sig = draw(st.binary(min_size=64, max_size=64) | st.binary(max_size=70))
    form = draw(st.sampled_from([0xC4, 0xC5, 0xC6]))
    needed = 0xC4 if len(payload) < 0x100 else 0xC5 if len(payload) < 0x1_0000 else 0xC6
    form = max(form, needed)
    key = draw(st.sampled_from([b"\xa7payload", b"\xa7payloaD", b"\xd9\x07payload"]))
    head = draw(st.sampled_from([b"\x82", b"\x83", b"\xde\x00\x02"]))
    data = head + key + _bin(payload, form) + b"\xa3sig" + _bin(sig, 0xC4)
    cut = draw(st.integers(-3, 3))
    return data[:cut] if cut < 0 else data + bytes(cut)


@given(sealed_maps() | st.binary(max_size=120))
@example(_codec.pack_sorted({"payload": b"x" * 255, "sig": bytes(64)}))
@example(_codec.pack_sorted({"payload": b"x" * 256, "sig": bytes(64)}))
@example(_codec.pack_sorted({"payload": b"x" * 65_536, "sig": bytes(64)}))
def test_the_sealed_map_read_in_place_is_what_decoding_it_gives(plain: bytes) -> None:
    assert _sealed_parts(plain) == _long_way(plain)


def test_the_canonical_sealed_map_is_read_in_place() -> None:
    for size in (0, 1, 255, 256, 65_535, 65_536):
        plain = _codec.pack_sorted({"payload": b"x" * size, "sig": b"s" * 64})
        assert _sealed_parts(plain) == (b"x" * size, b"s" * 64)


class _Disk(MemoryStore):
    free = 10 * 2**30

    async def usage(self) -> StoreUsage:
        used = await super().usage()
        return StoreUsage(used.stored_bytes, self.free)


def _reply(response: Response) -> Reply:
    return Reply(response.status, response.body, dict(response.headers))


async def test_the_last_storage_measure_is_taken_without_measuring_again() -> None:
    """Within ``check_every_ms`` a message's step uses the last measure (§11.8-4) without
    asking for a new one: a full store refuses, until the next measure finds room."""
    ahead = [0]  # the vendor's clock, ahead of the customer's by this (within the skew)
    disk = _Disk()
    budget = StorageBudget(min_free_bytes=1000, reserve_free_bytes=100, check_every_ms=60_000)
    ep = Endpoint(VENDOR, store=disk, policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"]),
                  storage=budget, clock=lambda: now_ms() + ahead[0])  # fmt: skip
    gauge = StorageGauge(disk, lambda: 5000 + ahead[0])
    assert gauge.known(budget) is None  # never measured
    disk.free = 99
    assert await gauge.room(budget) is Room.FULL
    assert gauge.known(budget) is Room.FULL
    ahead[0] += 60_000
    assert gauge.known(budget) is None  # too old

    customer = Customer(VENDOR)
    offer = customer.offer("vrm.no-tracking")
    disk.free = 10 * 2**30
    customer.absorb(_reply(await ep.handle_inbox(offer.envelope)), offer)
    share = customer.share({"email": "ann@example.org"})
    with mock.patch.object(StorageGauge, "room", side_effect=AssertionError("measured")):
        disk.free = 99  # not seen before the next measure
        customer.absorb(_reply(await ep.handle_inbox(share.envelope)), share)
    ahead[0] += 60_000
    late = customer.share({"phone": "+15550001"})
    assert (await ep.handle_inbox(late.envelope)).status == 507


def _post(body: bytes) -> bytes:
    return (b"POST " + DEFAULT_INBOX_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/vnd.vrmproto+msgpack\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body  # fmt: skip


@pytest.mark.parametrize("level", [logging.WARNING, logging.INFO])
async def test_a_lean_answer_is_recorded_only_for_someone(
    level: int, caplog: pytest.LogCaptureFixture
) -> None:
    """No metrics and no request log: the answer is sent without building the record."""
    ep = Endpoint(VENDOR, store=MemoryStore(),
                  policy=ReferencePolicy(accepts_terms=["vrm.no-tracking"]))  # fmt: skip
    server = await serve(ep)
    calls: list[Any] = []
    real = _observe.record

    def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        real(*args, **kwargs)

    try:
        with (
            mock.patch.object(_lean, "record", counted),
            caplog.at_level(level, logger=REQUEST_LOG.name),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_post(Customer(VENDOR).offer("vrm.no-tracking").envelope))
            answer = await reader.read()
            writer.close()
    finally:
        await server.close()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    logged = [r for r in caplog.records if r.name == REQUEST_LOG.name]
    assert len(calls) == len(logged) == (1 if level == logging.INFO else 0)
