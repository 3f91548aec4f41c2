"""The processing order of spec §4.5-1 as data: every check a receiver makes, on its step.

The spec's numbered list is generated from :func:`processing_order` (``scripts/gen_spec.py``,
block ``processing-order``): the steps below, with step 30 — the rules of each message type —
filled in from the rules table (:data:`vrmproto._rules.RULES`), so a rule and its place in the
order cannot drift apart. Step 0 is the HTTP binding's (§12), before the envelope is read;
step R is the replay record's (§4.4-4). Numbers 1 to 31 are stable: vectors, cases and the
spec cite them; sub-steps (``21.2``, ``30.3.1``) say where a check sits inside one.
"""

from __future__ import annotations

from dataclasses import dataclass

from vrmproto._messages import MESSAGE_TYPES
from vrmproto._rules import RULES


@dataclass(frozen=True, slots=True)
class Step:
    """One row of §4.5-1: its number, what is checked, the refusal, and the clauses."""

    number: str
    check: str
    refused: str
    clause: str


def _s(number: str, check: str, refused: str, clause: str) -> Step:
    return Step(number, check, refused, clause)


#: Before step 1: the binding's checks of the request, in this order (§12; the reference's).
BINDING = (
    _s("0.1", "the client address is within `rate_per_address_per_minute`, checked before the "
       "request is routed or its body read", "`rate_limited` (429)", "§12.9-6, §12.9-5"),
    _s("0.2", "the path is a route the receiver serves, then the method is one the route "
       "serves", "`not_found` (404), then `method_not_allowed` (405)", "§12.2-5, §12.2-4"),
    _s("0.3", "the `Content-Type` is the protocol's media type", "`unsupported_media_type` "
       "(415)", "§12.2-3"),
    _s("0.4", "a declared `Content-Length` is at most `max_envelope_bytes`", "`too_large` (413)",
       "§12.9-2"),
    _s("0.5", "the body arrives within `body_read_timeout_ms`, and a body without a declared "
       "length ends by `max_envelope_bytes`", "`request_timeout` (408), or `too_large` (413)",
       "§12.9-4, §12.9-3"),
    _s("0.6", "the sender named by the `from` of the not yet verified header (when one can be "
       "read) is within `rate_per_sender_per_minute`", "`rate_limited` (429)", "§12.9-6"),
)  # fmt: skip

#: Steps 1 to 21: the message alone (``_envelope.open_envelope``).
MESSAGE = (
    _s("1", "the envelope is at most `max_envelope_bytes` long, checked before decoding",
       "`too_large`", "§10-1"),
    _s("2", "the envelope's form: one canonical msgpack item", "`malformed`", "§3.3-8 (1)"),
    _s("3", "the envelope is a map, its keys are among `body`, `hdr`, `sig`, `to`, `type`, in "
       "order", "`malformed`", "§3.4-1"),
    _s("4", "`hdr` and `sig` are present and bin", "`malformed`", "§3.4-2"),
    _s("5", "routing `to`, if present, is bin or nil; routing `type`, if present, is str",
       "`malformed`", "§3.4-4"),
    _s("6", "`sig` is 64 bytes", "`malformed`", "§3.4-3"),
    _s("7", "`body` is present and bin", "`malformed`", "§3.4-2"),
    _s("8", "the header's form: one canonical msgpack item", "`malformed`", "§3.3-8 (1)"),
    _s("9", "the header is a map with keys in canonical order", "`malformed`", "§4.1-1"),
    _s("10", "`v` is an int, then a supported version", "`invalid_field`, then "
       "`unsupported_version`", "§4.2-1"),
    _s("11", "the header has exactly the ten keys", "`invalid_field`", "§4.2-2"),
    _s("12", "`type` is a str, then a known type", "`invalid_field`, then `unknown_type`",
       "§4.2-3"),
    _s("13", "`id`, `from`, `to`, `thread`, `prev`, `body`, `created`, `expires`, in this order",
       "`invalid_field`", "§4.2-4 … §4.2-11"),
    _s("14", "routing `to`, then routing `type`, if present, equal the header's",
       "`envelope_mismatch`", "§3.4-4"),
    _s("15", "the header's `to` is one of the receiver's keys (or nil in a `problem`)",
       "`wrong_recipient`", "§4.5-2"),
    _s("16", "now ≤ `expires`", "`expired`", "§4.5-3"),
    _s("17", "`created` ≤ now + `max_clock_skew_ms`", "`clock_skew`", "§4.5-4"),
    _s("18", "the signature over `\"vrmproto/v1/message\\0\" ‖ hdr` verifies under `from`, a "
       "valid key", "`bad_key` or `bad_signature`", "§2.1-2, §3.5-3"),
    _s("19", "SHA-256 of the `body` bytes equals the header's `body`", "`bad_signature`",
       "§3.4-5"),
    _s("20", "the body's form: one canonical msgpack item", "`malformed`", "§3.3-8 (1)"),
    _s("21", "the body's fields, as its type declares (§5.1)", "`malformed` (key order, "
       "undeclared values) or `invalid_field` (declared fields)", "§3.3-8 (2), §5.1"),
    _s("21.1", "each declared field in canonical key order, by its kind; a term reference by the "
       "form of §6.2-2 and §6.2-4", "`malformed` or `invalid_field`", "§5.1, §6.2-4"),
    _s("21.2", "an `intentcast`'s dates: `end` is not earlier than `start` when both are "
       "present", "`invalid_field`", "§5.4.1-2"),
    _s("R", "`(from, id)` is not recorded, or is recorded with this message hash",
       "`id_conflict` (a replay is answered, not refused)", "§4.4-4"),
)  # fmt: skip

#: Steps 22 to 29: the relationship (``Relationship.receive`` and ``_enter``).
RELATIONSHIP = (
    _s("22", "the message is a `problem`: it is accepted here, outside every relationship", "—",
       "§4.5-9"),
    _s("23", "the `thread` names a relationship the receiver holds, or the message opens a new "
       "one; the header's `to` is the receiver's key in that relationship", "`no_relationship`, "
       "then `wrong_recipient`", "§4.5-5, §4.5-2"),
    _s("24", "`from` is the peer's current key, if the peer's key is known; at first contact, "
       "a valid key", "`key_revoked`, `key_rotated`, or `not_a_party`; `bad_key` at first "
       "contact", "§2.6-4, §2.6-3, §4.5-5, §2.1-2"),
    _s("25", "the type may be sent by the sender's role", "`illegal_transition`", "§7-2"),
    _s("26", "`prev` is the hash of the last message accepted from this sender in this thread",
       "`chain_broken`", "§4.5-6"),
    _s("27", "the message is not already in the history", "`id_conflict`", "§4.5-7"),
    _s("28", "a `data.share`, `data.withdraw`, `data.request` or `address.update` comes in a "
       "relationship that has an agreement", "`no_agreement`", "§5.3-1"),
    _s("29", "the state machine allows this message in the current state",
       "`illegal_transition`", "§7-1"),
)  # fmt: skip

#: Step 31: sealed content, in the order of §5.5-9 (``_envelope.open_sealed``).
SEALED = (
    _s("31.1", "open the seal with the receiver's X25519 key", "`cannot_decrypt`", "§5.5-4"),
    _s("31.2", "the plaintext is a map of `payload` and `sig`", "`malformed`", "§5.5-3"),
    _s("31.3", "`sig` verifies under the message's `from`", "`bad_signature`", "§5.5-7"),
    _s("31.4", "`payload` is a map of `content`, `msg` and `to`", "`malformed`", "§5.5-3"),
    _s("31.5", "`to` is the receiver's key", "`wrong_recipient`", "§5.5-5"),
    _s("31.6", "`msg` is the message's `id`", "`envelope_mismatch`", "§5.5-6"),
    _s("31.7", "`content` by its table (5.5.1) and the rules of 5.1", "`invalid_field`",
       "§5.5-8"),
)  # fmt: skip


def _code(text: str) -> str:
    return f"`{text}`"


def rule_steps() -> list[Step]:
    """Step 30: for each message type with a rule, in the order of §5, its checks in order."""
    rows = [_s("30", "the rules of the message type (§5), as listed below for each type",
               "as §5 gives", "§5")]
    types = [cls for cls in MESSAGE_TYPES.values() if cls in RULES]
    for i, cls in enumerate(types, 1):
        checks = RULES[cls].checks
        if not checks:
            rows.append(_s(f"30.{i}", f"`{cls.TYPE}`: no rule beyond steps 1 to 29", "—", "§5"))
        for j, check in enumerate(checks, 1):
            number = f"30.{i}" if len(checks) == 1 else f"30.{i}.{j}"
            rows.append(_s(number, f"`{cls.TYPE}`: {check.what}", _code(check.code.value),
                           check.clause))
    return rows


def processing_order() -> list[Step]:
    """Every step of §4.5-1, in order."""
    sealed = ", ".join(f"`{cls.TYPE}`" for cls in MESSAGE_TYPES.values()
                       if cls in RULES and RULES[cls].sealed is not None)  # fmt: skip
    head = _s("31", f"sealed content, for {sealed}, in the order of §5.5-9", "as §5.5 gives",
              "§5.5-9")
    return [*BINDING, *MESSAGE, *RELATIONSHIP, *rule_steps(), head, *SEALED]


def table_markdown() -> str:
    """§4.5-1's table, for the spec (generated, never hand-edited)."""
    rows = ["| step | check | refused with | clause |", "|---|---|---|---|"]
    for s in processing_order():
        cells = (s.number, s.check, s.refused, s.clause)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
