"""Where an answer may send the customer, and the limits of the binding (spec §15.4-6, §15.5).

Before:

- an answer naming ``http://0.0.0.0:8421`` (or ``[::]``, or ``0``), read through a relay on a
  local network, was taken: the unspecified address was counted as a local network's, like the
  relay's, yet a connection to it reaches this machine — the customer's agent then sent its
  intentcast to whatever listens on the person's own machine, on a path the answer chose;
- ``vrm relay add`` kept any number of relays, and ``vrm relay intent --relay`` took any number:
  every intentcast then opened a connection to each (a list pasted from a directory of
  hundreds), waited on each, and every later ``vrm relay answers`` did it again (§15.5-7);
- an answer whose ``url`` held a line break, a NUL, a space or a port past 65535 was taken
  (§15.4-2 asks for a URL): it became a vendor of the intentcast, stored, listed to the person
  and requested, its request failing in the HTTP library's words;
- a vendor bound to ``0.0.0.0`` with no ``server.public_url``, on a relay of its local network,
  answered ``http://0.0.0.0:8421`` (its customers' own machines) and was not warned;
- ``vrm relay intent … --deadline 30d`` said "published to 1 of 1 relays" and exit 0, yet the
  envelope lived 30 days where §4.2-11 allows 7: every vendor dropped it, and said nothing
  (§15.4-4). The person waited a month for answers that could not come.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import fails, new_home, ok, vrm

from tests.test_hunt_s14_nostr import cast, now_ms
from vrmproto import ProtocolError
from vrmproto.nostr import Answer, Event, NostrKey, answer_event, open_answer
from vrmproto.nostr._binding import check_answer_url
from vrmproto.nostr._customer import _collect
from vrmproto.nostr._vendor import warn_unreachable_url

LAN_RELAY = "ws://192.168.1.5:7447"


class _Pool:
    """A pool of relays on a local network that hands out the given answers, then ends."""

    def __init__(self, answers: list[Event]) -> None:
        self.urls = [LAN_RELAY]
        self._answers = answers

    async def subscribe(self, *filters: Any, **kw: Any) -> AsyncIterator[Event]:
        for a in self._answers:
            yield a


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "0", "[::ffff:0.0.0.0]", "0.1.2.3"])
async def test_an_answer_naming_the_unspecified_address_is_dropped(host: str) -> None:
    event, message = cast("suv rental")
    # the customer's key is not kept by s14's cast(): seal to a key of the test's own, and
    # put that key in the intentcast event the answers reply to
    key = NostrKey(os.urandom(32))
    ours = Event(event.id, key.public.hex(), event.created_at, event.kind, event.tags,
                 event.content, event.sig)  # fmt: skip

    def answer(url: str) -> Event:
        return answer_event(ours, message, url, key=NostrKey(os.urandom(32)), now_ms=now_ms(),
                            nonce=os.urandom(32), aux=os.urandom(32))  # fmt: skip

    found: dict[str, Answer] = {}
    pool = _Pool([answer(f"http://{host}:8421"), answer("https://hertz.example/vrm")])
    await _collect(pool, key, message, 0, found, expect=None, clock=now_ms)  # type: ignore[arg-type]
    assert list(found) == ["https://hertz.example/vrm"]


@pytest.mark.parametrize(("url", "relays"), [
    ("http://192.168.1.9:8421", [LAN_RELAY]),
    ("http://printer.local/", [LAN_RELAY]),
    ("http://127.0.0.1:8421", ["ws://localhost:7447"]),
    ("https://hertz.example/vrm", [LAN_RELAY]),
])  # fmt: skip
def test_an_answer_as_near_as_a_relay_it_came_through_is_followed(url: str,
                                                                  relays: list[str]) -> None:
    check_answer_url(url, relays)


@pytest.mark.parametrize(("url", "relays"), [
    ("http://127.0.0.1:8421", [LAN_RELAY]),
    ("http://192.168.1.9:8421", ["wss://relay.example"]),
    ("http:///vrm", ["ws://127.0.0.1:7447"]),
    ("http://[::1]:8421", ["wss://relay.example", LAN_RELAY]),
])  # fmt: skip
def test_an_answer_nearer_than_every_relay_it_came_through_is_dropped(url: str,
                                                                      relays: list[str]) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_answer_url(url, relays)
    assert (caught.value.code.value, caught.value.clause) == ("invalid_field", "§15.4-6")


def _relays(n: int) -> list[str]:
    return [f"wss://r{i}.example" for i in range(n)]


def test_at_most_32_relays_are_kept(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    fails(vrm("relay", "add", *_relays(33), home=home), 2, "33 relays", "at most 32")
    assert ok(vrm("relay", "list", "--json", home=home)).json == {"relays": []}
    ok(vrm("relay", "add", *_relays(32), home=home))
    fails(vrm("relay", "add", "wss://one-more.example", home=home), 2, "at most 32")
    # the same relays again (one spelt with a slash) are not more relays
    ok(vrm("relay", "add", *_relays(2), "wss://r3.example/", home=home))
    assert ok(vrm("relay", "list", "--json", home=home)).json == {"relays": _relays(32)}


def test_at_most_32_relays_are_given_to_one_command(tmp_path: Path) -> None:
    """Refused before anything is published, signed or mined (the relays do not exist)."""
    home = new_home(tmp_path)
    many = [a for u in _relays(33) for a in ("--relay", u)]
    fails(vrm("relay", "intent", "kayak for a day", *many, "--pow", "0", home=home), 2,
          "33 relays", "at most 32")  # fmt: skip
    fails(vrm("relay", "answers", *many, home=home), 2, "at most 32")
    fails(vrm("intent", "new", "kayak for a day", *many, "--no-discover", "--pow", "0",
              home=home), 2, "33 relays", "at most 32")  # fmt: skip  (was published to all)
    assert ok(vrm("intent", "list", "--json", home=home)).json["intents"] == []


@pytest.mark.parametrize("url", ["https://hertz.example/vrm\r\nX-Evil: 1", "https://hertz.example/\x00",
                                 "https://hertz example/", "https://hertz.example:99999/",
                                 "https:///vrm", "https://hertz.example/\u2028"])  # fmt: skip
def test_an_answer_whose_url_is_no_url_is_dropped(url: str) -> None:
    event, message = cast("suv rental")
    key = NostrKey(os.urandom(32))
    ours = Event(event.id, key.public.hex(), event.created_at, event.kind, event.tags,
                 event.content, event.sig)  # fmt: skip
    sealed = answer_event(ours, message, url, key=NostrKey(os.urandom(32)), now_ms=now_ms(),
                          nonce=os.urandom(32), aux=os.urandom(32))  # fmt: skip
    with pytest.raises(ProtocolError) as caught:
        open_answer(sealed, key, message.hash, now_ms=now_ms())
    assert (caught.value.code.value, caught.value.clause) == ("invalid_field", "§15.4-2")
    good = answer_event(ours, message, "https://hertz.example/vrm", key=NostrKey(os.urandom(32)),
                        now_ms=now_ms(), nonce=os.urandom(32), aux=os.urandom(32))  # fmt: skip
    assert open_answer(good, key, message.hash, now_ms=now_ms()).url == "https://hertz.example/vrm"


@pytest.mark.parametrize("url", ["http://0.0.0.0:8421", "http://[::]:8421"])
def test_a_vendor_answering_with_the_unspecified_address_is_warned(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    warn_unreachable_url(url, [LAN_RELAY])
    assert "set server.public_url" in caplog.text
    assert "loopback address" in caplog.text


def test_a_relayed_intentcast_no_vendor_could_read_is_not_published(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    fails(vrm("relay", "intent", "kayak for a day", "--relay", "ws://127.0.0.1:9", "--pow", "0",
              "--deadline", "30d", home=home), 2, "at most 7 days", "not 30 days")  # fmt: skip
    assert ok(vrm("intent", "list", "--json", home=home)).json["intents"] == []
