"""The intentcast as a Nostr event, and the sealed answer that comes back (§15.3, §15.4).

Sans-IO: every function takes the time (``now_ms``) and random bytes it needs. The vendor's
checks run in the order of §15.3-6 — kind, expiry, proof of work, then the VRM envelope — so an
event that costs nothing to make costs next to nothing to drop.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vrmproto._envelope import Signed, open_envelope
from vrmproto._errors import Problem
from vrmproto._hosts import HostClass, host_class, url_class
from vrmproto._limits import DEFAULT_LIMITS, Limits
from vrmproto._messages import Intentcast
from vrmproto.nostr._crypto import (
    Nip44Error,
    NostrKey,
    conversation_key,
    nip44_decrypt,
    nip44_encrypt,
)
from vrmproto.nostr._event import Event, EventError, sign_event

__all__ = [
    "KIND_ANSWER",
    "KIND_INTENTCAST",
    "Answer",
    "HostClass",
    "answer_event",
    "answer_filter",
    "answer_url_class",
    "check_answer_url",
    "followed",
    "host_class",
    "intentcast_event",
    "intentcast_filter",
    "is_geohash",
    "keywords",
    "open_answer",
    "open_intentcast",
    "tag_words",
    "url_class",
]

#: Where a host is: this machine, a local network, or the Internet.
#: The event kind of a relayed intentcast (§15.3-1) and of a vendor's sealed answer (§15.4-1).
KIND_INTENTCAST = 7390
KIND_ANSWER = 7391
#: At most this many keyword (``t``) tags, each at most this long (§15.3-3).
MAX_KEYWORDS, MAX_KEYWORD_LEN = 32, 64
#: A geohash is at most this long; every prefix of it is a ``g`` tag (§15.3-3).
MAX_GEOHASH = 12
_GEOHASH = re.compile(r"[0-9b-hjkmnp-z]{1,12}")
_WORD = re.compile(r"[a-z0-9]+")


def tag_words(texts: Iterable[str]) -> list[str]:
    """The distinct lower-case words of ``texts`` that a ``t`` tag may hold, first first
    (§15.3-3): runs of ``a``-``z`` and ``0``-``9`` of 2 to 64 characters."""
    seen: dict[str, None] = {}
    for text in texts:
        for w in _WORD.findall(text.lower()):
            if 2 <= len(w) <= MAX_KEYWORD_LEN:
                seen.setdefault(w)
    return list(seen)


def keywords(texts: Iterable[str]) -> list[str]:
    """The ``t`` tags of an intentcast: its distinct lower-case words, first first, at most
    :data:`MAX_KEYWORDS` (§15.3-3)."""
    return tag_words(texts)[:MAX_KEYWORDS]


def is_geohash(text: str) -> bool:
    """Whether ``text`` is a geohash of at most 12 characters (§15.3-3)."""
    return _GEOHASH.fullmatch(text) is not None


def _expiration(reply_by_ms: int) -> int:
    return -(-reply_by_ms // 1000)  # reply_by, rounded up to whole seconds (§15.3-4)


def _tags(body: Intentcast, geohash: str | None) -> list[list[str]]:
    tags = [["t", w] for w in keywords((body.what, *body.constraints))]
    if geohash is not None:
        if not is_geohash(geohash):
            raise ValueError(f"not a geohash: {geohash!r}")
        tags += [["g", geohash[:n]] for n in range(1, len(geohash) + 1)]
    if body.max_price is not None:
        tags.append(["price", str(body.max_price.amount), body.max_price.currency])
    tags += [["terms", t.id] for t in body.terms or ()]
    tags.append(["expiration", str(_expiration(body.reply_by))])
    return tags


def intentcast_event(message: Signed[Intentcast], key: NostrKey, *, geohash: str | None = None,
                     pow_difficulty: int = 0, aux: bytes,
                     stop: Callable[[], bool] | None = None) -> Event:  # fmt: skip
    """The Nostr event that carries ``message`` unchanged (§15.3-1, -2, -3, -4); ``stop`` as
    :func:`~vrmproto.nostr.mine` takes it."""
    h = message.header
    if h.recipient != h.sender or h.prev is not None:
        raise ValueError("a relayed intentcast is addressed to its own identity (§15.3-2)")
    content = base64.b64encode(message.envelope).decode()
    return sign_event(key, h.created // 1000, KIND_INTENTCAST, _tags(message.body, geohash),
                      content, aux=aux, pow_difficulty=pow_difficulty, stop=stop)  # fmt: skip


def _decode_content(content: str, limits: Limits) -> bytes:
    if len(content) > 4 * (limits.max_envelope_bytes // 3 + 1):
        raise EventError("the content is larger than any envelope", code=Problem.TOO_LARGE,
                         clause="§15.3-6")  # fmt: skip
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EventError("the content is not base64", clause="§15.3-1") from exc


def open_intentcast(event: Event, *, now_ms: int, min_pow: int = 0,
                    limits: Limits = DEFAULT_LIMITS) -> Signed[Intentcast]:  # fmt: skip
    """Check a relayed intentcast in the order of §15.3-6 and return its verified message.

    ``event`` was read with :meth:`Event.from_json` (its id and signature hold). Raises
    :class:`EventError`, or the envelope's own :class:`~vrmproto.ProtocolError`.
    """
    if event.kind != KIND_INTENTCAST:
        raise EventError("not an intentcast event", code=Problem.UNKNOWN_TYPE, clause="§15.3-1")
    expiration = event.expiration
    if expiration is None:
        raise EventError("no expiration tag", clause="§15.3-4", code=Problem.INVALID_FIELD)
    if now_ms >= expiration * 1000:
        raise EventError("the event has expired", code=Problem.EXPIRED, clause="§15.1-3")
    if event.difficulty < min_pow:
        raise EventError(f"proof of work {event.difficulty} is below {min_pow}",
                         code=Problem.RATE_LIMITED, clause="§15.1-4")  # fmt: skip
    message = open_envelope(_decode_content(event.content, limits), now=now_ms, limits=limits)
    h = message.header
    if h.type != Intentcast.TYPE:
        raise EventError("the envelope is not an intentcast", code=Problem.UNKNOWN_TYPE,
                         clause="§15.3-1")  # fmt: skip
    if h.recipient != h.sender or h.prev is not None:
        raise EventError("a relayed intentcast is addressed to its own identity",
                         code=Problem.INVALID_FIELD, clause="§15.3-2")  # fmt: skip
    if expiration != _expiration(message.body.reply_by):
        raise EventError(
            "the expiration tag is not the intentcast's reply_by",
            clause="§15.3-4",
            code=Problem.INVALID_FIELD,
        )
    return message


@dataclass(frozen=True, slots=True)
class Answer:
    """A vendor's answer to a relayed intentcast: where to send it over HTTP (§15.4-2)."""

    url: str
    intent: bytes  # the hash of the relayed intentcast message
    event_id: str


def answer_event(intentcast: Event, message: Signed[Intentcast], vendor_url: str, *,
                 key: NostrKey, now_ms: int, nonce: bytes, aux: bytes) -> Event:  # fmt: skip
    """A vendor's sealed answer: NIP-44 to the intentcast's Nostr key, from ``key``, a key the
    vendor made for this answer alone (§15.4-1, §15.2-3), dated ``now_ms`` but never before the
    intentcast: a vendor whose clock is behind would otherwise date it before the ``since`` of
    the customer's subscription. The intentcast's signed ``created`` is taken, not the event's
    ``created_at``, which anyone re-wrapping it sets: §10-3 keeps the former within minutes."""
    plain = json.dumps({"intent": message.hash.hex(), "url": vendor_url}, sort_keys=True)
    conv = conversation_key(key.secret, bytes.fromhex(intentcast.pubkey))
    tags = [["p", intentcast.pubkey], ["e", intentcast.id],
            ["expiration", str(_expiration(message.body.reply_by))]]  # fmt: skip
    return sign_event(key, max(now_ms // 1000, message.header.created // 1000), KIND_ANSWER, tags,
                      nip44_encrypt(plain, conv, nonce), aux=aux)  # fmt: skip


def _answer_fields(plain: str) -> tuple[str, bytes]:
    try:
        obj: Any = json.loads(plain)
        url, intent = obj["url"], bytes.fromhex(obj["intent"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EventError("the answer is not {intent, url}", code=Problem.INVALID_FIELD,
                         clause="§15.4-2") from exc  # fmt: skip
    if not isinstance(url, str) or not _is_http_url(url):
        raise EventError(
            "the answer's url is not an http(s) URL", clause="§15.4-2", code=Problem.INVALID_FIELD
        )
    return url, intent


def _is_http_url(url: str) -> bool:
    """An ``http``/``https`` URL of at most 2048 characters, with a host, a port in range, and
    no spaces or control characters (§15.4-2): anyone's answer becomes a URL the agent stores,
    shows and sends requests to."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        return False
    return (url.startswith(("https://", "http://")) and len(url) <= 2048
            and bool(parts.hostname)
            and not any(c.isspace() or not c.isprintable() for c in url))  # fmt: skip


def open_answer(event: Event, key: NostrKey, intent: bytes, *, now_ms: int | None = None
                ) -> Answer:  # fmt: skip
    """Open a sealed answer to our intentcast ``intent`` (its message hash) with our Nostr key.

    With ``now_ms``, an answer with no ``expiration`` tag, or one not after ``now_ms``, is
    dropped (§15.1-3) before it is opened; without, only its form is checked (the vectors)."""
    if event.kind != KIND_ANSWER or event.tag_values("p") != [key.public.hex()]:
        raise EventError("not an answer to this key", code=Problem.WRONG_RECIPIENT,
                         clause="§15.4-1")  # fmt: skip
    expiration = event.expiration
    if expiration is None:
        raise EventError("no expiration tag", clause="§15.1-3", code=Problem.INVALID_FIELD)
    if now_ms is not None and now_ms >= expiration * 1000:
        raise EventError("the answer has expired", code=Problem.EXPIRED, clause="§15.1-3")
    try:
        plain = nip44_decrypt(
            event.content, conversation_key(key.secret, bytes.fromhex(event.pubkey))
        )
    except (Nip44Error, ValueError) as exc:
        raise EventError("the answer does not open", code=Problem.CANNOT_DECRYPT,
                         clause="§15.4-1") from exc  # fmt: skip
    url, hashed = _answer_fields(plain)
    if hashed != intent:
        raise EventError(
            "the answer names another intentcast", clause="§15.4-2", code=Problem.INVALID_FIELD
        )
    return Answer(url.rstrip("/"), hashed, event.id)


def answer_url_class(url: str) -> HostClass | None:
    """Where an answer's URL points (§15.4-6): :func:`vrmproto._hosts.url_class`, for which an
    unspecified address (``0.0.0.0/8``, ``::``) is this machine."""
    return url_class(url)


def followed(url: str, relays: Iterable[str]) -> bool:
    """Whether a customer follows an answer naming ``url`` that came through ``relays``
    (:func:`check_answer_url`, §15.4-6)."""
    try:
        check_answer_url(url, relays)
    except EventError:
        return False
    return True


def check_answer_url(url: str, relays: Iterable[str]) -> None:
    """Drop an answer whose ``url`` is on this machine or a local network, unless one of the
    ``relays`` it came through is there too (§15.4-6): answers are sealed to a public key, and
    anyone's would otherwise aim the agent's requests at the person's own machine or network.
    Raises :class:`EventError` (``invalid_field``)."""
    where = answer_url_class(url)
    if where == "public":
        return
    if where is not None and where in {answer_url_class(r) for r in relays}:
        return
    raise EventError(f"the answer names {'a ' + where if where else 'no'} address",
                     code=Problem.INVALID_FIELD, clause="§15.4-6")  # fmt: skip


def intentcast_filter(words: Sequence[str], geohashes: Sequence[str], since: int) -> dict[str, Any]:
    """A vendor's subscription (§15.5-3): intentcasts with one of its catalogue's keywords,
    in one of its areas when it names any, since ``since`` (seconds)."""
    f: dict[str, Any] = {"kinds": [KIND_INTENTCAST], "since": since}
    if words:
        f["#t"] = sorted({w.lower() for w in words})
    if geohashes:
        f["#g"] = sorted(set(geohashes))
    return f


def answer_filter(pubkey: bytes, since: int) -> dict[str, Any]:
    """The customer's subscription to the answers sealed to its intentcast key (§15.4-3)."""
    return {"kinds": [KIND_ANSWER], "#p": [pubkey.hex()], "since": since}
