"""A relationship's live shares kept packed (spec §12 storage; issue #12).

:class:`~vrmproto._relationship.ShareMap` keeps ``[[hash, expires], ...]`` packed; when every
entry packs to the same length (expiry times of one size, the usual case) a change cuts the new
entry into the packed bytes instead of joining every entry again. Whatever the changes, the
bytes must be exactly those of packing the sorted list whole, and the array and map headers
the codec frames parts with must be msgpack's shortest ones (§3.3-7).
"""

from __future__ import annotations

import random

import msgpack
import pytest

from vrmproto import _codec
from vrmproto._relationship import ShareMap

YEAR_2027 = 1_800_000_000_000  # ms: a uint64, 9 bytes, as every realistic expiry


def whole(shares: dict[bytes, int]) -> bytes:
    return _codec.pack_sorted([[k, shares[k]] for k in sorted(shares)])


@pytest.mark.parametrize("seed", range(6))
def test_spliced_bytes_are_the_whole_packing(seed: int) -> None:
    """Adds, replacements, deletions and pops across the 16 and 65536 header boundaries's
    first, with one-size expiries (spliced) and, now and then, a value of another size."""
    rng = random.Random(seed)
    shares = ShareMap()
    mirror: dict[bytes, int] = {}
    spliced = 0
    for step in range(400):
        r = rng.random()
        if r < 0.6 or not mirror:
            key = rng.randbytes(32)
            value = YEAR_2027 + rng.randrange(10**6)
            if seed % 2 and rng.random() < 0.05:
                value = rng.choice([0, 200, 70_000, 2**33])  # another size: rebuilt, not cut
            shares[key] = mirror[key] = value
        elif r < 0.75:
            key = rng.choice(sorted(mirror))
            shares[key] = mirror[key] = YEAR_2027 + rng.randrange(10**6)  # replaced
        elif r < 0.9:
            key = rng.choice(sorted(mirror))
            del shares[key], mirror[key]
        else:
            key = rng.choice(sorted(mirror))
            assert shares.pop(key) == mirror.pop(key)
        spliced += shares._packed is not None  # cut in place, not left to rebuild
        if step % 3 or r > 0.95:  # sometimes several changes before the bytes are asked for
            assert shares.packed() == whole(mirror), step
            assert dict(shares) == mirror
    assert shares.packed() == whole(mirror)
    assert spliced > (200 if seed % 2 == 0 else 20)  # (a mixed size stops the cutting)


def test_a_map_read_back_splices_from_its_second_change() -> None:
    shares = ShareMap((bytes([i]) * 32, YEAR_2027 + i) for i in range(20))
    shares[b"\x80" * 32] = YEAR_2027  # the first change: packed whole when asked
    assert shares._packed is None
    assert shares.packed() == whole(dict(shares))
    shares[b"\x81" * 32] = YEAR_2027  # the second: cut into the bytes
    assert shares._packed is not None
    assert shares.packed() == whole(dict(shares))
    del shares[b"\x05" * 32]
    assert shares._packed is not None
    assert shares.packed() == whole(dict(shares))


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
