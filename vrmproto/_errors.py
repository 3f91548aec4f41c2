"""The exception tree and the problem-code registry (spec §9).

Every error vrmproto raises derives from :class:`VrmError`::

    VrmError
    ├── ProtocolError            a message broke a spec rule; carries .code and .clause: a
    │   │                        peer's, or our own, checked by the same rules before it is
    │   │                        signed (then nothing is sent; the client reports a peer's
    │   │                        answer that breaks one as InvalidResponse, with .error)
    │   ├── DecodeError          bytes that are not a well-formed vrmproto encoding (§3)
    │   ├── SignatureError       a signature that does not verify (§3.5)
    │   ├── ValidationError      a well-formed message with a bad field or header value (§4, §5)
    │   └── StateError           a message the relationship's state does not allow (§7)
    ├── TransportError           the network or the peer failed (raised by the I/O layers)
    └── StoreError               storage failed (defined in vrmproto.store)

A :class:`ProtocolError` is what crosses the wire: its :attr:`~ProtocolError.code` is one of
:class:`Problem`, whose value is the problem code string of §9 and which knows its HTTP status
(§12). "If decoding raises anything besides ProtocolError, that's a bug" — the property tests and
the server's hostile-input tests hold the library to that.
"""

from __future__ import annotations

import enum


class Problem(enum.Enum):
    """The problem-code registry of spec §9.2: one code per distinct failure.

    Each member's value is the wire string; :attr:`status` is the HTTP status of §12.4.
    """

    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    INVALID_FIELD = "invalid_field"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    ENVELOPE_MISMATCH = "envelope_mismatch"
    BAD_SIGNATURE = "bad_signature"
    BAD_KEY = "bad_key"
    EXPIRED = "expired"
    CLOCK_SKEW = "clock_skew"
    WRONG_RECIPIENT = "wrong_recipient"
    ID_CONFLICT = "id_conflict"
    UNKNOWN_TERM = "unknown_term"
    NO_AGREEMENT = "no_agreement"
    NO_RELATIONSHIP = "no_relationship"
    NOT_A_PARTY = "not_a_party"
    ILLEGAL_TRANSITION = "illegal_transition"
    CHAIN_BROKEN = "chain_broken"
    CANNOT_DECRYPT = "cannot_decrypt"
    KEY_ROTATED = "key_rotated"
    KEY_REVOKED = "key_revoked"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_FOUND = "not_found"
    REQUEST_TIMEOUT = "request_timeout"
    UNAUTHORIZED = "unauthorized"
    INTERNAL = "internal_error"
    STORAGE_FULL = "storage_full"

    @property
    def status(self) -> int:
        """The HTTP status a server answers this problem with (spec §12.4)."""
        return _STATUS[self]

    @property
    def retryable(self) -> bool:
        """True when the same bytes may be delivered again later and be accepted (§9.2-3):
        the refusal said "not now", not "never". Every other code is final, and so is a code
        this version does not know (§9.1-8)."""
        return self in RETRYABLE

    @classmethod
    def from_wire(cls, code: str) -> Problem | None:
        """The member for a wire string, or None for a code this version does not know."""
        try:
            return cls(code)
        except ValueError:
            return None


_STATUS: dict[Problem, int] = {
    Problem.MALFORMED: 400,
    Problem.INVALID_FIELD: 400,
    Problem.UNSUPPORTED_VERSION: 400,
    Problem.UNKNOWN_TYPE: 400,
    Problem.ENVELOPE_MISMATCH: 400,
    Problem.BAD_KEY: 400,
    Problem.EXPIRED: 400,
    Problem.CLOCK_SKEW: 400,
    Problem.UNKNOWN_TERM: 422,
    Problem.BAD_SIGNATURE: 401,
    Problem.UNAUTHORIZED: 401,
    Problem.KEY_ROTATED: 403,
    Problem.KEY_REVOKED: 403,
    Problem.NOT_A_PARTY: 403,
    Problem.NOT_FOUND: 404,
    Problem.NO_RELATIONSHIP: 404,
    Problem.METHOD_NOT_ALLOWED: 405,
    Problem.REQUEST_TIMEOUT: 408,
    Problem.ID_CONFLICT: 409,
    Problem.ILLEGAL_TRANSITION: 409,
    Problem.CHAIN_BROKEN: 409,
    Problem.TOO_LARGE: 413,
    Problem.UNSUPPORTED_MEDIA_TYPE: 415,
    Problem.WRONG_RECIPIENT: 421,
    Problem.NO_AGREEMENT: 422,
    Problem.CANNOT_DECRYPT: 422,
    Problem.RATE_LIMITED: 429,
    Problem.INTERNAL: 500,
    Problem.STORAGE_FULL: 507,
}
assert set(_STATUS) == set(Problem), "every problem code needs an HTTP status"

#: The problems that refuse nothing for good (Table 9-1, §9.2-3): both nodes keep a message so
#: refused and may deliver the same bytes again; the spec's "retry" column is generated from it.
RETRYABLE: frozenset[Problem] = frozenset({
    Problem.CLOCK_SKEW, Problem.RATE_LIMITED, Problem.REQUEST_TIMEOUT, Problem.INTERNAL,
    Problem.STORAGE_FULL,
})


#: Most characters of received input a problem's ``detail`` quotes, after escaping (§11.12-1).
EXCERPT_CHARS = 40


def _escape(ch: str) -> str:
    if " " <= ch <= "~":
        return "\\" + ch if ch in '"\\' else ch
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x1_0000 else f"\\U{code:08x}"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped quote of received input, for a problem's ``detail`` (§11.12-1).

    At most ``limit`` characters of output between double quotes: every character outside
    printable ASCII is escaped (``\\n``, ``\\x1b``, ``\\u202e``), and a cut value ends in ``…``
    and says how long it was. A number is shown as it is; any other value that is not text is
    named by its type only.
    """
    if type(value) is int and -(2**64) < value < 2**64:
        return str(value)
    if type(value) is not str:
        return f"<{type(value).__name__}>"
    out: list[str] = []
    used = 0
    for ch in value:
        piece = _escape(ch)
        if used + len(piece) > limit:
            return '"' + "".join(out) + f'"… ({len(value)} characters)'
        out.append(piece)
        used += len(piece)
    return '"' + "".join(out) + '"'


def printable(text: str) -> str:
    """``text`` with every control, format or other non-printable character escaped as
    :func:`excerpt` does; printable characters (``§``, ``≤``) stay. For what a party signs into
    a problem (§11.12-1), whatever it was built from."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


class VrmError(Exception):
    """Root of every exception vrmproto raises."""


class ProtocolError(VrmError):
    """A message, or bytes claiming to be one, broke a rule of the spec: a peer's, or our own
    before it is signed (§7: the sender checks the rules the receiver will).

    ``code`` is the problem code to send back, ``clause`` the spec clause broken (e.g.
    ``"§3.3-2"``), ``path`` the offending field where one is known (``"$.body.terms[2].hash"``).
    """

    default_code: Problem = Problem.MALFORMED

    def __init__(
        self,
        detail: str,
        *,
        code: Problem | None = None,
        clause: str = "",
        path: str = "",
    ) -> None:
        self.code: Problem = code if code is not None else self.default_code
        self.detail = detail
        self.clause = clause
        self.path = path
        where = f" at {path}" if path else ""
        cite = f" ({clause})" if clause else ""
        super().__init__(f"{self.code.value}: {detail}{where}{cite}")


class DecodeError(ProtocolError):
    """Bytes that are not a well-formed, canonical vrmproto encoding (§3.3)."""

    default_code = Problem.MALFORMED


class SignatureError(ProtocolError):
    """A signature or key that fails the strict verification rule (§3.5)."""

    default_code = Problem.BAD_SIGNATURE


class ValidationError(ProtocolError):
    """A well-formed message whose header or body breaks a field rule (§4, §5)."""

    default_code = Problem.INVALID_FIELD


class StateError(ProtocolError):
    """A message the relationship's current state does not allow (§7)."""

    default_code = Problem.ILLEGAL_TRANSITION


class TransportError(VrmError):
    """A network failure or an unusable answer from a peer (raised by the I/O layers)."""


class PeerProblemError(TransportError):
    """The peer answered with a signed ``problem`` message."""

    def __init__(self, code: str, detail: str, *, status: int = 0, clause: str = "") -> None:
        self.code = code
        self.problem = Problem.from_wire(code)
        self.detail = detail
        self.status = status
        self.clause = clause
        super().__init__(f"peer refused: {code}: {detail}")
