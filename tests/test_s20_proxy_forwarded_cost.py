"""The cost of reading forwarding fields a client wrote (s20 hunt; §12.13-1, §12.13-2).

A trusted proxy passes on what the client wrote before its own part: nginx as the README
configures it sends ``X-Forwarded-For: <the client's own value>, <the client's address>``, and
a proxy that writes ``Forwarded`` appends its element to the client's (RFC 7239 §4). The
endpoint read every element before walking the chain from the right — an address parsed for
each of the 4 000 entries of an 8 KB ``X-Forwarded-For`` (20 ms of the event loop per request;
2.5 s for 128 such lines), and a regular expression tried at every position of a
``Forwarded`` element of 8 000 token characters without ``=`` (0.6 s; 87 s for 128 lines) —
all before the rate limit of that client's address could refuse it. Now the chain is read from
the right only as far as the walk goes, each element in time linear in its length: a
client's own entries, left of its address, are never parsed.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import aiohttp
import pytest
from _broken_vendor import make_endpoint
from _nginx import nginx_in_front
from hypothesis import given
from hypothesis import strategies as st

from vrmproto._binding import WELL_KNOWN_PATH
from vrmproto.server import Deployment, serve
from vrmproto.server._proxy import client_from
from vrmproto.store import MemoryStore

PROXY = Deployment.of(None, ["127.0.0.1/32", "10.0.0.0/8"])


def _cpu_ms(name: str, values: list[str], *, peer: str = "127.0.0.1") -> tuple[float, str]:
    fields = {name.lower(): values}
    started = time.process_time()
    client, _ = client_from(peer, "http", lambda n: fields.get(n.lower(), []), PROXY)
    return (time.process_time() - started) * 1000, client


@pytest.mark.parametrize(("name", "junk"), [
    ("X-Forwarded-For", "1," * 4_000),
    ("X-Forwarded-For", "203.0.113.1," * 666),
    ("Forwarded", "a" * 8_000),
    ("Forwarded", " " * 7_999 + "x"),
    ("Forwarded", "for=" + "a" * 7_996),
])  # fmt: skip
def test_a_clients_own_forwarding_entries_cost_nothing_to_skip(name: str, junk: str) -> None:
    """128 field lines of 8 KB the client wrote, then the element the proxy added: the
    client is found at once (each of these took from 20 ms to 0.6 s a line before)."""
    added = "for=192.0.2.9" if name == "Forwarded" else "192.0.2.9"
    spent, client = _cpu_ms(name, [junk] * 128 + [added])
    assert client == "192.0.2.9"
    assert spent < 20, spent


@pytest.mark.parametrize("junk", ["a" * 8_000, " " * 7_999 + "x", "for=" + "a" * 7_996])
def test_a_forwarded_element_is_read_in_linear_time(junk: str) -> None:
    """An element the walk must read (from a trusted address's hop) is read in time linear
    in its length: it is no address, so the walk ends at the proxy that added it."""
    spent, client = _cpu_ms("Forwarded", [junk + ", for=10.0.0.7"])
    assert client == "10.0.0.7"
    assert spent < 20, spent


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Forwarded": 'for=192.0.2.60;proto=https;by=203.0.113.43'}, ("192.0.2.60", "https")),
    ({"Forwarded": ' For = "[2001:db8:cafe::17]:4711" , for=10.0.0.5'},
     ("2001:db8:cafe::17", "http")),
    ({"Forwarded": "for=192.0.2.1, , for=10.0.0.5"}, ("192.0.2.1", "http")),  # empty element
    ({"Forwarded": "proto=https, for=10.0.0.5"}, ("10.0.0.5", "http")),  # no for: the walk ends
    ({"Forwarded": "for=10.0.0.9;proto=https"}, ("10.0.0.9", "https")),
    ({"X-Forwarded-For": "198.51.100.9, 10.0.0.8, 10.0.0.5", "X-Forwarded-Proto": "https"},
     ("198.51.100.9", "https")),  # the leftmost hop's proto, reached
    ({"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "https"},
     ("203.0.113.7", "https")),  # the proxy's proto, not the client's own element's (s21)
    ({"X-Forwarded-For": ",, 203.0.113.7,", "X-Forwarded-Proto": "https"},
     ("203.0.113.7", "https")),
    ({"X-Forwarded-For": "unknown, 10.0.0.5"}, ("10.0.0.5", "http")),
])  # fmt: skip
def test_the_chain_is_walked_as_before(headers: dict[str, str],
                                       expected: tuple[str, str]) -> None:  # fmt: skip
    lowered = {k.lower(): [v] for k, v in headers.items()}
    assert client_from("127.0.0.1", "http", lambda n: lowered.get(n.lower(), []),
                       PROXY) == expected  # fmt: skip


async def test_through_nginx_a_long_x_forwarded_for_costs_the_endpoint_nothing(
    tmp_path: Path,
) -> None:
    """nginx as the README configures it appends the client's address to the client's own
    X-Forwarded-For: 8 KB of entries cost the endpoint's process no more than a plain
    request (20 ms each before)."""
    upstream = await serve(make_endpoint(MemoryStore()), deployment=PROXY)
    try:
        async with (nginx_in_front(tmp_path, upstream.port) as proxy,
                    aiohttp.ClientSession() as http):
            async def spend(headers: dict[str, str]) -> float:
                started = time.process_time()  # this process: the endpoint's loop is here
                for _ in range(10):
                    async with http.get(f"{proxy}{WELL_KNOWN_PATH}", headers=headers) as r:
                        assert r.status == 200
                        await r.read()
                return time.process_time() - started

            plain = await spend({})
            long = await spend({"X-Forwarded-For": "1," * 3_000 + "1"})
    finally:
        await upstream.close()
    assert long < plain + 0.05, (long, plain)  # 10 requests: 0.2 s more before


_TOKENS = [*' ,;="[]:.%_-\t', "for", "proto", "https", "10.0.0.5", "::1", "a", "unknown"]
_TEXT = st.lists(st.sampled_from(_TOKENS), max_size=12).map("".join)


@given(st.lists(_TEXT, max_size=3), st.lists(_TEXT, max_size=3), st.lists(_TEXT, max_size=2))
def test_any_forwarding_text_gives_an_address(forwarded: list[str], xff: list[str],
                                              proto: list[str]) -> None:  # fmt: skip
    """Whatever a trusted proxy's fields hold: an address (the proxy's, or one of the chain's)
    and a scheme, never an exception."""
    fields = {"forwarded": forwarded, "x-forwarded-for": xff, "x-forwarded-proto": proto}
    client, scheme = client_from("127.0.0.1", "http", lambda n: fields.get(n.lower(), []),
                                 PROXY)  # fmt: skip
    assert client == "127.0.0.1" or ipaddress.ip_address(client.split("%")[0])
    assert scheme in ("http", "https")
