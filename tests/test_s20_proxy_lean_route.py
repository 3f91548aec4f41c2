"""The lean path's choice of route reads the request's framing once per head (s20; §12.2-3).

:meth:`LeanRoutes.route` scanned a request's fields three times (``Content-Type``,
``Content-Encoding``, ``Content-Length``) on every request; the reader now reads them once with
the head it keeps (:attr:`Request.body_type`). The choice is the same: checked here against the
three scans, over heads drawn with and without each field, in any case and order.
"""

from __future__ import annotations

from _broken_vendor import make_endpoint
from hypothesis import given
from hypothesis import strategies as st

from vrmproto._http1_server import Request, RequestReader
from vrmproto.server._lean import LeanRoutes
from vrmproto.server._observe import INBOX_ROUTE
from vrmproto.server._proxy import Deployment
from vrmproto.server._response import Response
from vrmproto.store import MemoryStore

ENDPOINT = make_endpoint(MemoryStore())
ROUTES = LeanRoutes(ENDPOINT, "/vrm/inbox", "/vrm/history", Deployment(),
                    lambda: Response(200, b""))  # fmt: skip
BINDING = b"application/vnd.vrmproto+msgpack"


def three_scans(request: Request) -> str | None:
    """The choice as it was made before, for a POST to the inbox."""
    declared = request.field(b"content-type")
    if declared is None or declared.lower() != BINDING:
        return None
    if request.field(b"content-encoding") is not None:
        return None
    if request.field(b"content-length") is None:
        return None
    if len(request.body) > ENDPOINT.limits.max_envelope_bytes:
        return None
    return INBOX_ROUTE


_FIELD = st.sampled_from([
    b"Content-Type: " + BINDING, b"content-type: " + BINDING.upper(),
    b"Content-Type: text/plain", b"Content-Type: " + BINDING + b"; x=y",
    b"Content-Encoding: gzip", b"Content-Encoding: identity", b"Accept: */*",
    b"User-Agent: x", b"Content-Length: 3", b"Content-Length: 0",
])  # fmt: skip


@given(st.lists(_FIELD, max_size=6, unique=True))
def test_the_route_is_the_one_three_scans_chose(fields: list[bytes]) -> None:
    names = [f.split(b":")[0].lower() for f in fields]
    if len(set(names)) != len(names):
        return  # a repeated field: the reader takes no such head
    head = b"POST /vrm/inbox HTTP/1.1\r\nHost: x\r\n" + b"".join(f + b"\r\n" for f in fields)
    length = 3 if b"Content-Length: 3" in fields else 0
    reader = RequestReader(max_line=8190, max_body=ENDPOINT.limits.max_envelope_bytes)
    reader.feed(head + b"\r\n" + b"abc"[:length])
    request = reader.next()
    assert request is not None
    assert ROUTES.route(request) == three_scans(request)


def test_body_type_is_the_lower_cased_type_of_a_plainly_framed_body() -> None:
    def body_type(*fields: bytes) -> bytes | None:
        reader = RequestReader(max_line=8190, max_body=100)
        reader.feed(b"POST / HTTP/1.1\r\nHost: x\r\n" + b"".join(f + b"\r\n" for f in fields)
                    + b"\r\n")  # fmt: skip
        request = reader.next()
        assert request is not None
        return request.body_type

    assert body_type(b"Content-Type: A/B", b"Content-Length: 0") == b"a/b"
    assert body_type(b"Content-Type: a/b") is None  # no Content-Length
    assert body_type(b"Content-Type: a/b", b"Content-Length: 0",
                     b"Content-Encoding: gzip") is None  # fmt: skip
    assert body_type(b"Content-Length: 0") is None
