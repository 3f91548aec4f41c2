"""TLS for the endpoint's connections, done here rather than by the event loop (spec §12.1-1).

asyncio's and uvloop's TLS transports end the connection at the client's end of input —
a ``close_notify`` alert, or the TCP FIN alone — whatever the protocol answers: they stop
sending at once (and log a warning when asked to stay open). Over plain TCP a client that
half-closes after whole requests gets them answered, then the connection closes (RFC 9112
§9.6; :meth:`~vrmproto.server._connections._ConnectionHandler.eof_received`); over TLS an
inbox message was handled — stored — and its receipt never sent. TLS allows the same: a
``close_notify`` closes its sender's write side only (RFC 8446 §6.1), and OpenSSL goes on
sending after it has read one.

:class:`TLSProtocol` is the TCP connection's protocol for its whole life: it does the
handshake over an :class:`ssl.SSLObject` and memory buffers, then serves a protocol of the
endpoint's (the lean connection or aiohttp's handler) through a :class:`TLSTransport`. The
client's end of input, either kind, is that protocol's ``eof_received``: what it answers is
done, as over TCP. Closing sends a ``close_notify`` and closes the TCP connection once what was
written is sent; it does not wait for the client's (RFC 8446 §6.1 does not ask it to).
Flow control is the TCP transport's: records are encrypted as they are written, so the bytes
waiting to be sent are its write buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast

__all__ = ["TLSProtocol", "TLSTransport"]

log = logging.getLogger("vrmproto.server")

_READ = 16 * 1024  # a TLS record's most plaintext (RFC 8446 §5.1): what one read returns

#: ``TLSProtocol``'s handshake is over: None when it succeeded, else why it failed.
HandshakeDone = Callable[["TLSProtocol", BaseException | None], None]


class TLSTransport(asyncio.Transport):
    """The plaintext side of a :class:`TLSProtocol`, as the protocol it serves sees it."""

    __slots__ = ("_tls",)

    def __init__(self, tls: TLSProtocol) -> None:
        super().__init__()
        self._tls = tls

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.info(name, default)

    def is_closing(self) -> bool:
        return self._tls.closing()

    def close(self) -> None:
        self._tls.close()

    def abort(self) -> None:
        self._tls.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write(data)

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no end of output but its close (close_notify)")

    def get_write_buffer_size(self) -> int:
        return self._tls.raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._tls.raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._tls.raw.set_write_buffer_limits(high, low)

    def is_reading(self) -> bool:
        return not self._tls.paused

    def pause_reading(self) -> None:
        self._tls.pause_reading()

    def resume_reading(self) -> None:
        self._tls.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls.app = cast(asyncio.Protocol, protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return cast(asyncio.BaseProtocol, self._tls.app)


class TLSProtocol(asyncio.Protocol):
    """A server-side TLS connection over a TCP transport (see the module).

    ``made`` is called when the TCP connection is made; ``done`` once, when the handshake is
    over: on success the caller hands the connection to the protocol that serves it with
    :meth:`serve`.
    """

    __slots__ = ("_closing", "_done", "_end", "_in", "_loop", "_made", "_notified", "_out",
                 "_ssl", "_transport", "app", "context", "paused", "raw")  # fmt: skip

    def __init__(self, context: ssl.SSLContext, done: HandshakeDone,
                 made: Callable[[TLSProtocol], None] | None = None) -> None:  # fmt: skip
        self.context = context
        self._done: HandshakeDone | None = done
        self._made = made
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._in, self._out, server_side=True)
        self.raw: asyncio.Transport = cast(asyncio.Transport, None)
        self.app: asyncio.Protocol | None = None
        self._transport: TLSTransport | None = None
        self.paused = False
        self._end = False  # the client's end of input came (close_notify or FIN)
        self._notified = False  # ... and the protocol served was told
        self._closing = False
        self._loop = asyncio.get_running_loop()

    # -- the TCP side ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = cast(asyncio.Transport, transport)
        if self._made is not None:
            self._made(self)

    def data_received(self, data: bytes) -> None:
        if self._end:  # after the client's close_notify: nothing more is read (RFC 8446 §6.1)
            return
        self._in.write(data)
        if self._done is not None:
            self._handshake()
        else:
            self._read()

    def eof_received(self) -> bool:
        """The TCP FIN: the client sends no more, with or without a close_notify first."""
        if self._done is not None:
            self._shaken(ConnectionResetError("the client ended its input in the handshake"))
            return False
        self._end = True
        self._read()  # what came before it; then the end, unless reading is paused
        return True  # the TCP side stays open to send: :meth:`close` closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._done is not None:
            self._shaken(exc or ConnectionResetError("the connection was lost in the handshake"))
        elif self.app is not None:
            self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.app is not None:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.app is not None:
            self.app.resume_writing()

    # -- the handshake ---------------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._flush()  # the alert saying why, if any
            self._shaken(exc)
            return
        self._flush()
        self._shaken(None)

    def _shaken(self, exc: BaseException | None) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(self, exc)

    def serve(self, app: asyncio.Protocol) -> None:
        """Serve the connection, its handshake done, with ``app``; the records that came with
        the end of the handshake are its first bytes."""
        self.app = app
        self._transport = TLSTransport(self)
        app.connection_made(self._transport)
        self._read()

    # -- records in ------------------------------------------------------------------------------

    def _read(self) -> None:
        """Give the protocol served what the records taken in hold (all at once), then the
        client's end of input if it came."""
        app = self.app
        if app is None or self._closing or self.paused:
            return
        tls, incoming = self._ssl, self._in
        chunks: list[bytes] = []
        try:
            while incoming.pending or tls.pending():  # else a read only says "want more"
                chunk = tls.read(_READ)
                if not chunk:  # the client's close_notify: whatever follows it is read
                    self._end = True  # and dropped (data_received), not left to pile up
                    incoming.read()
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass  # part of a record: the rest comes with the next bytes
        except (ssl.SSLError, OSError) as exc:  # a bad record: nothing more can be read
            log.debug("TLS error from %s: %r", self.raw.get_extra_info("peername"), exc)
            self.abort()
            return
        if chunks:
            app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            app = self.app  # handed over (the lean path's to aiohttp's): the new one is told
        self._flush()  # anything the reads made the TLS object say (a key update)
        if (self._end and not self._notified and not self.paused and not self._closing
                and app is not None):  # fmt: skip
            self._notified = True
            if not app.eof_received():
                self.close()

    def pause_reading(self) -> None:
        if not self.paused:
            self.paused = True
            if not self._end:
                self.raw.pause_reading()

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            if not self._end:
                self.raw.resume_reading()
            self._loop.call_soon(self._read)  # records already taken in, and the end

    # -- records out -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        try:
            view = memoryview(data)
            while view:  # all of it at once, unless OpenSSL was told to allow partial writes
                view = view[self._ssl.write(view):]
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS error writing to %s: %r", self.raw.get_extra_info("peername"), exc)
            self.abort()
            return
        self._flush()

    def _flush(self) -> None:
        if self._out.pending and not self.raw.is_closing():
            self.raw.write(self._out.read())

    def close(self) -> None:
        """A close_notify after what was written, then the TCP close (once all is sent)."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(ssl.SSLError, OSError, ValueError):
            self._ssl.unwrap()  # writes the close_notify; the client's is not waited for
        self._flush()
        self.raw.close()

    def abort(self) -> None:
        self._closing = True
        self.raw.abort()

    def closing(self) -> bool:
        return self._closing or self.raw.is_closing()

    def info(self, name: str, default: Any) -> Any:
        if name == "sslcontext":
            return self.context
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        if name == "compression":
            return self._ssl.compression()
        return self.raw.get_extra_info(name, default)
