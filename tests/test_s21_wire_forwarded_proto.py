"""The scheme a client used, behind proxies that write ``X-Forwarded-*`` (s21 hunt; §12.13-1,
§12.13-2).

§12.13-1 takes the client's address *and the scheme the client used* from the forwarding
fields of trusted proxies; §12.13-2 finds the client by walking the elements from the right for
as long as each is a trusted proxy's. The scheme was taken from ``X-Forwarded-Proto`` only when
the walk reached the leftmost ``X-Forwarded-For`` element, and then from the leftmost
``X-Forwarded-Proto`` element: a client that wrote an ``X-Forwarded-For`` of its own (which a
proxy configured as nginx's ``$proxy_add_x_forwarded_for`` keeps, appending the real address)
was taken to have used plain ``http`` though its proxy wrote ``https``; and a client that wrote
an ``X-Forwarded-Proto`` of its own, to which a proxy appends, chose its scheme. Now each
element the walk reads is paired with its own ``X-Forwarded-Proto`` element, counted from the
right as the proxies append them; a single value, which a proxy sets for the whole request, is
every element's.
"""

from __future__ import annotations

import pytest

from vrmproto.server import Deployment
from vrmproto.server._proxy import client_from

PROXY = Deployment.of(None, ["127.0.0.1/32", "10.0.0.0/8"])


def _walk(headers: dict[str, str], peer: str = "127.0.0.1") -> tuple[str, str]:
    lowered = {k.lower(): [v] for k, v in headers.items()}
    return client_from(peer, "http", lambda n: lowered.get(n.lower(), []), PROXY)


@pytest.mark.parametrize(("headers", "expected"), [
    # the client wrote an X-Forwarded-For; its proxy appended its address and set the proto
    ({"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "X-Forwarded-Proto": "https"},
     ("203.0.113.7", "https")),
    # the client wrote an X-Forwarded-Proto; its proxy appended the one it saw
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http, https"},
     ("203.0.113.7", "https")),
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https, http"},
     ("203.0.113.7", "http")),
    # one element per hop: the client's own is the one its proxy added
    ({"X-Forwarded-For": "203.0.113.7, 10.0.0.5", "X-Forwarded-Proto": "https, http"},
     ("203.0.113.7", "https")),
    ({"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 10.0.0.5",
      "X-Forwarded-Proto": "http, https, http"}, ("203.0.113.7", "https")),
])  # fmt: skip
def test_the_proto_is_the_one_of_the_element_the_walk_chose(
    headers: dict[str, str], expected: tuple[str, str]
) -> None:
    assert _walk(headers) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    # one value set by the proxies, the walk at the leftmost element (as before)
    ({"X-Forwarded-For": "198.51.100.9, 10.0.0.8, 10.0.0.5", "X-Forwarded-Proto": "https"},
     ("198.51.100.9", "https")),
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, ("203.0.113.7", "https")),
    ({"X-Forwarded-For": "203.0.113.7"}, ("203.0.113.7", "http")),
    # not a trusted peer: nothing of it is believed
    ({"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, ("198.51.100.1", "http")),
])  # fmt: skip
def test_what_held_still_holds(headers: dict[str, str], expected: tuple[str, str]) -> None:
    peer = "198.51.100.1" if expected[0] == "198.51.100.1" else "127.0.0.1"
    assert _walk(headers, peer) == expected
