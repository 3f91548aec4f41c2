"""TLS for the tests, on 127.0.0.1 only: a throw-away certificate authority (trustme) that no
one else trusts."""

from __future__ import annotations

import contextlib
import socket
import ssl

import trustme


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 from a fresh CA, and a client context
    that trusts that CA (and verifies the host name, as the default context does)."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def tls_exchange(port: int, context: ssl.SSLContext, data: bytes, end: str,
             after: bytes = b"") -> tuple[bytes, bool]:  # fmt: skip
    """Over TLS: send ``data``, end the sending side as ``end`` says (then ``after``, raw),
    read until the server closes. Returns what was read, and whether the server ended with a
    close_notify."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        tls.write(data)
        if end != "fin":
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.unwrap()  # the close_notify, into ``outgoing``
        raw.sendall(outgoing.read() + after)
        if end != "close_notify":
            raw.shutdown(socket.SHUT_WR)
        got, notified = b"", False
        while chunk := raw.recv(65536):
            incoming.write(chunk)
            try:
                while plain := tls.read(65536):
                    got += plain
                notified = True  # an empty read: the server's close_notify (ours not sent)
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLZeroReturnError:  # the same, after ours
                notified = True
        return got, notified
