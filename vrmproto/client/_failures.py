"""A failure to reach a peer in a few plain words: what a person reads in ``vrm outbox`` (an
item's ``last_error``), the UI and ``vrm doctor``, whichever HTTP client failed (aiohttp's or
the lean one, :mod:`vrmproto.client._http_conn`)."""

from __future__ import annotations

import errno
import socket

import aiohttp

from vrmproto._http1 import IncompleteResponse, MalformedResponse
from vrmproto.client._http_conn import ConnectError, ServerClosed

__all__ = ["describe_failure", "unreachable_words"]


def describe_failure(exc: BaseException) -> str:
    """A failure to reach a peer in a few plain words, not the HTTP library's own text, which
    is what a person then reads in ``vrm outbox`` (an item's ``last_error``; issue 11 item 10)."""
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectError):
        cause = exc.os_error
        if isinstance(cause, ConnectionRefusedError) or _all_refused(cause):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"the host name {exc.host} does not resolve"
        return f"cannot connect: {cause.strerror or type(cause).__name__}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ServerClosed):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError | IncompleteResponse):
        return "the answer was cut short"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the proxy answered {exc.status} {exc.message}"
    if isinstance(exc, MalformedResponse | aiohttp.ClientResponseError):  # aiohttp's: .message
        return f"a malformed answer ({getattr(exc, 'message', exc)})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _all_refused(cause: OSError) -> bool:
    """Whether ``cause`` is asyncio's one error for several addresses (a name that resolves to
    both ::1 and 127.0.0.1) that each refused the connection."""
    text = str(cause)
    refused = f"[Errno {errno.ECONNREFUSED}]"
    return (cause.errno is None and text.startswith("Multiple exceptions:")
            and text.count("[Errno ") == text.count(refused) > 0)  # fmt: skip


#: Transport failures as :func:`describe_failure` words them (and as stores written by earlier
#: releases hold them, in the HTTP library's own text).
_REFUSED = ("connection refused", "connect call failed", "cannot connect to host")
_TIMED_OUT = ("timed out", "timeouterror", "servertimeouterror")


def unreachable_words(detail: str) -> str | None:
    """A stored delivery failure (an outbox item's ``last_error``) in the words every view
    shows, when it was a failure to reach the peer: "unreachable: connection refused" or
    "unreachable: timed out"; None for anything else (a refusal, a bad answer)."""
    lowered = detail.lower()
    if any(text in lowered for text in _REFUSED):
        return "unreachable: connection refused"
    if any(text in lowered for text in _TIMED_OUT):
        return "unreachable: timed out"
    return None
