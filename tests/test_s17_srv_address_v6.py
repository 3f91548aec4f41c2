"""The per-address request rate counts an IPv6 address with the rest of its /64 (spec §10-7,
§12.9-5).

Before, each IPv6 address had a bucket of its own: a client holding a /64 — what one subscriber
usually gets — could send ``rate_per_address_per_minute`` requests from each of 2⁶⁴ addresses.
The connection limits (§10.1-4) and the first-contact budgets (§10-15 to §10-17) already counted
by prefix; the request rate was the one left.
"""

from __future__ import annotations

import _postgres
import pytest
from test_admission import VENDOR
from test_admission_shared import now_clock, two_endpoints

from vrmproto import Limits
from vrmproto.server import Endpoint, ReferencePolicy
from vrmproto.server._ratelimit import address_key
from vrmproto.store import MemoryStore, PostgresConfig

postgres_cluster = _postgres.postgres_cluster
postgres_config = _postgres.postgres_config

RATE = 5
SUBSCRIBER = [f"2001:db8:1:2::{n:x}" for n in range(1, RATE + 2)]  # one /64, RATE + 1 addresses
NEIGHBOUR = "2001:db8:1:3::1"  # the next /64


@pytest.mark.parametrize(("client", "key"), [
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::9", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),  # a zone does not make another client
    ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: the IPv4 address
    ("192.0.2.1", "192.0.2.1"),  # IPv4 alone: a NAT may put many people behind one
    ("192.0.2.2", "192.0.2.2"),
    ("unix:/run/vrm.sock", "unix:/run/vrm.sock"),  # not an address: as itself
    ("2001:db8::zz", "2001:db8::zz"),
])  # fmt: skip
def test_what_an_address_counts_under(client: str, key: str) -> None:
    assert address_key(client) == key


def endpoint() -> Endpoint:
    return Endpoint(VENDOR, store=MemoryStore(), limits=Limits(rate_per_address_per_minute=RATE),
                    policy=ReferencePolicy(accepts_terms=("vrm.no-tracking",)))  # fmt: skip


def test_the_addresses_of_one_ipv6_64_share_the_allowance() -> None:
    ep = endpoint()
    answers = [ep.check_address(client) for client in SUBSCRIBER]
    assert answers[:RATE] == [None] * RATE
    refused = answers[RATE]
    assert refused is not None
    assert refused.status == 429
    assert ep.check_address(NEIGHBOUR) is None  # another subscriber
    assert ep.check_address("192.0.2.1") is None


async def test_a_replay_is_charged_to_the_64_too() -> None:
    ep = endpoint()
    for client in SUBSCRIBER[:RATE - 1]:
        assert await ep.acheck_address(client) is None
    await ep.charge_address(SUBSCRIBER[-1])  # a replay from yet another address of the /64
    refused = await ep.acheck_address(SUBSCRIBER[0])
    assert refused is not None
    assert refused.status == 429


async def test_processes_sharing_their_buckets_count_the_64_together(
    postgres_config: PostgresConfig,
) -> None:
    """With the buckets in PostgreSQL (§12.9-8): the /64's requests, spread over two server
    processes and as many addresses, share one allowance."""
    clock = now_clock()
    limits = Limits(rate_per_address_per_minute=RATE)
    async with two_endpoints(postgres_config, limits, clock) as (a, b):
        answers = [await (a, b)[n % 2].acheck_address(client)
                   for n, client in enumerate(SUBSCRIBER)]  # fmt: skip
        assert answers[:RATE] == [None] * RATE
        refused = answers[RATE]
        assert refused is not None
        assert refused.status == 429
        assert await b.acheck_address(NEIGHBOUR) is None
