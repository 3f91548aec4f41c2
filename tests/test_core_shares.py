"""A relationship's live shares, stored in fixed-width entries that keep their places (spec §12
storage; issue #12).

:class:`~vrmproto._relationship.ShareMap` keeps each share as a 40-byte entry (hash, expiry) in
the order the shares came, the last entry moving into a dropped one's place, inside a region
with room to spare. Whatever the changes, the region must hold exactly the map's entries, read
back to the same map and the same bytes, and a change of one share must change only that
share's entry and the one that moved — so that a store overwriting the row in place writes a
page or two, whatever the number of shares. The array and map headers the codec frames parts
with must be msgpack's shortest ones (§3.3-7).
"""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Callable

import msgpack
import pytest

from vrmproto import _codec
from vrmproto._relationship import SHARE_ENTRY, ShareMap

YEAR_2027 = 1_800_000_000_000  # ms: a uint64, as every realistic expiry


def entries(region: bytes) -> dict[bytes, int]:
    """What a region holds, read by msgpack and by hand (zero entries are unused room)."""
    room = msgpack.unpackb(region)
    assert isinstance(room, bytes)
    assert len(room) % SHARE_ENTRY == 0
    out = {}
    for i in range(0, len(room), SHARE_ENTRY):
        h, e = room[i : i + 32], int.from_bytes(room[i + 32 : i + SHARE_ENTRY], "big")
        if h != bytes(32):
            assert h not in out
            out[h] = e
    return out


def changed_entries(before: bytes, after: bytes) -> int:
    assert len(before) == len(after)
    return sum(before[i : i + SHARE_ENTRY] != after[i : i + SHARE_ENTRY]
               for i in range(0, len(before), SHARE_ENTRY))  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_the_region_holds_the_map_and_reads_back_to_the_same_bytes(seed: int) -> None:
    """Adds, replacements, deletions, pops, popitem, update and clear, read back now and then."""
    rng = random.Random(seed)
    shares = ShareMap()
    mirror: dict[bytes, int] = {}
    for step in range(400):
        r = rng.random()
        if r < 0.55 or not mirror:
            key = rng.randbytes(32)
            shares[key] = mirror[key] = YEAR_2027 + rng.randrange(10**6)
        elif r < 0.7:
            key = rng.choice(sorted(mirror))
            shares[key] = mirror[key] = YEAR_2027 + rng.randrange(10**6)  # replaced
        elif r < 0.85:
            key = rng.choice(sorted(mirror))
            del shares[key], mirror[key]
        elif r < 0.95:
            key = rng.choice(sorted(mirror))
            assert shares.pop(key) == mirror.pop(key)
        elif r < 0.97:
            key, _ = shares.popitem()
            del mirror[key]
        elif r < 0.99:
            more = {rng.randbytes(32): YEAR_2027 for _ in range(3)}
            shares.update(more)
            mirror.update(more)
        else:
            shares.clear()
            mirror.clear()
        assert dict(shares) == mirror
        region = shares.region()
        # the region's header and length give its entries: its tail is zero
        assert entries(region) == mirror, step
        if step % 7 == 0:
            again = ShareMap.stored(msgpack.unpackb(region), len(mirror))
            assert again.region() == region
            assert dict(again) == mirror
            if rng.random() < 0.5:
                shares = again  # go on from the map read back


def test_one_share_more_or_less_changes_its_entry_and_the_one_that_moved() -> None:
    rng = random.Random(1)
    shares = ShareMap()
    same_length = 0
    for i in range(600):
        before = shares.region()
        if i % 5 == 4:
            del shares[rng.choice(list(shares))]
            most = 2  # the entry dropped and the last one, moved into its place
        else:
            shares[rng.randbytes(32)] = YEAR_2027 + i
            most = 1
        after = shares.region()
        if len(after) == len(before):
            same_length += 1
            header = len(before) - len(msgpack.unpackb(before))
            assert before[:header] == after[:header]
            assert changed_entries(before[header:], after[header:]) <= most, i
    assert same_length > 550  # the room changes now and then, not with every share


def test_the_room_is_a_quarter_more_and_kept_while_it_fits() -> None:
    shares = ShareMap()
    rooms = []
    for i in range(1000):
        shares[i.to_bytes(32, "big")] = YEAR_2027
        rooms.append(len(msgpack.unpackb(shares.region())) // SHARE_ENTRY)
    assert all(n + 1 <= room <= 2 * (n + 1) + 8 for n, room in enumerate(rooms))
    assert len(set(rooms)) < 30  # O(log n) lengths in all
    for key in list(shares)[:400]:
        del shares[key]
    kept = len(msgpack.unpackb(shares.region())) // SHARE_ENTRY
    assert kept == rooms[-1]  # 600 left still fill more than half of it
    for key in list(shares)[:300]:
        del shares[key]
    assert len(msgpack.unpackb(shares.region())) // SHARE_ENTRY < kept  # 300: given back


@pytest.mark.parametrize("value", [-1, True])
def test_a_share_that_does_not_fit_an_entry_is_kept_unfixed(value: int) -> None:
    shares = ShareMap([(b"a" * 32, 1)])
    shares[b"b" * 32] = value
    assert not shares._fixed
    assert shares.sorted_packed() == _codec.pack_sorted(
        [[k, shares[k]] for k in sorted(shares)])
    del shares[b"b" * 32]  # what is left fits again
    assert shares._fixed
    assert entries(shares.region()) == {b"a" * 32: 1}


def test_a_share_that_cannot_be_stored_changes_nothing() -> None:
    shares = ShareMap([(b"a" * 32, 1)])
    region = shares.region()
    with pytest.raises((OverflowError, TypeError, ValueError)):
        shares[b"b" * 32] = 2**70
    assert dict(shares) == {b"a" * 32: 1}
    assert shares.region() == region


def test_a_short_hash_is_kept_unfixed() -> None:
    shares = ShareMap()
    shares[b"short"] = YEAR_2027
    assert not shares._fixed


@pytest.mark.parametrize("bad", [
    (bytes(SHARE_ENTRY * 2), 3),  # more entries than room
    (bytes(SHARE_ENTRY + 1), 1),  # not whole entries
    (bytes(32) + YEAR_2027.to_bytes(8, "big") + bytes(32) + YEAR_2027.to_bytes(8, "big"), 2),
])  # fmt: skip
def test_a_damaged_region_is_refused(bad: tuple[bytes, int]) -> None:
    with pytest.raises(ValueError, match=r"region|twice"):
        ShareMap.stored(*bad)


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy,
                                 lambda m: pickle.loads(pickle.dumps(m))])
def test_a_copy_keeps_the_places_and_the_room(how: Callable[[ShareMap], ShareMap]) -> None:
    shares = ShareMap()
    for i in range(30):
        shares[i.to_bytes(32, "big")] = YEAR_2027 + i
    del shares[(3).to_bytes(32, "big")]  # the last entry moves into its place
    again = how(shares)
    assert type(again) is ShareMap
    assert dict(again) == dict(shares)
    assert again.region() == shares.region()


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 255, 256, 65535, 65536, 2**32 - 1])
def test_headers_are_msgpacks_shortest(n: int) -> None:
    assert _codec.array_header(n) == msgpack.Packer().pack_array_header(n)
    assert _codec.map_header(n) == msgpack.Packer().pack_map_header(n)


def test_headers_refuse_what_msgpack_refuses() -> None:
    for n in (-1, 2**32):
        with pytest.raises((ValueError, OverflowError)):
            _codec.array_header(n)
        with pytest.raises((ValueError, OverflowError)):
            _codec.map_header(n)
