"""Signed evidence of a relationship a person can hand to someone else (``vrm history --export``).

The file is JSON (format ``vrm-evidence/1``): who and which relationship, every history entry
with its envelope exactly as it was exchanged (base64), what each says in words, and a recipe
for checking it with nothing but SHA-256 and Ed25519 — or with ``vrm verify FILE``
(:func:`check_evidence`), which needs no data directory. The envelopes are the evidence; the
summaries are only a reading aid and are not trusted by the check.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from vrmproto._envelope import open_envelope
from vrmproto._errors import ProtocolError
from vrmproto._history import Entry, verify_entries
from vrmproto._keys import fingerprint
from vrmproto._messages import KeyRotate

__all__ = ["FORMAT", "RECIPE", "check_evidence", "evidence_json"]

FORMAT = "vrm-evidence/1"

RECIPE = (
    "Each entry's `envelope` is base64 of the message exactly as it was exchanged: a canonical "
    "msgpack map of `hdr` (the header bytes), `sig` and `body` (spec §3).",
    "The header's `from` key signed it: Ed25519 over \"vrmproto/v1/message\" ‖ 0x00 ‖ hdr "
    "(§3.5); SHA-256 of the body bytes equals the header's `body_hash` (§3.4-5).",
    "The message hash is SHA-256 of the header bytes (§4.4) and equals the entry's `hash`.",
    "link(i) = SHA-256(\"vrmproto/v1/history\" ‖ 0x00 ‖ link(i−1) ‖ hash(i)), link(−1) = 32 zero "
    "bytes, and equals the entry's `link` (§8.2-1); indexes run from 0 without gaps.",
    "Every message names the same thread and is signed by and sent to the two parties of the "
    "first; a key.rotate adds its sender's new key (§8.3-2, §2.6). An erased entry keeps its "
    "signed header and loses only its body (§8.4).",
    "Each message's signed `prev` is the hash of the one before it from the same party (nil "
    "for a party's first, §4.5-6): the links can be computed again by anyone who takes an "
    "entry out; the `prev` of the sender's next message cannot.",
    "With vrmproto installed, `vrm verify FILE` (or `python -m vrmproto verify FILE`) checks all "
    "of the above.",
)


def evidence_json(
    *, vendor: str, url: str, thread: bytes, exported_ms: int, entries: Sequence[Entry],
    rows: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The evidence file of one relationship: ``rows`` are the decoded entries beside them."""
    return {
        "format": FORMAT,
        "vendor": vendor,
        "url": url,
        "thread": thread.hex(),
        "exported": exported_ms,
        "entries": [_entry(e, r) for e, r in zip(entries, rows, strict=True)],
        "recipe": list(RECIPE),
    }


def _entry(e: Entry, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": e.index, "hash": e.msg_hash.hex(), "link": e.link.hex(), "type": row["type"],
        "created": row["created"], "signed_by": row["signed_by"], "summary": row["summary"],
        "envelope": base64.b64encode(e.envelope).decode("ascii"),
    }  # fmt: skip


def _entries_of(doc: Any) -> list[Entry]:
    """The entries of an evidence file, each field of the type :func:`evidence_json` writes;
    :class:`ValueError` for anything else (a file someone else made need not be ours)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"this is not an evidence file (its format is not {FORMAT})")
    items = doc.get("entries")
    if not isinstance(items, list):
        raise ValueError("the evidence file's `entries` is not a list")
    entries = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise TypeError("not an object")
            index, texts = item["index"], (item["hash"], item["link"], item["envelope"])
            if type(index) is not int or not all(isinstance(t, str) for t in texts):
                raise TypeError("`index` is not a whole number, or a hex or base64 field is "
                                "not text")  # fmt: skip
            entries.append(Entry(index=index, msg_hash=bytes.fromhex(texts[0]),
                                 link=bytes.fromhex(texts[1]),
                                 envelope=base64.b64decode(texts[2], validate=True),
                                 outgoing=False))  # fmt: skip
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ValueError(f"entry {i} of the evidence file is malformed: {exc}") from None
    if not entries:
        raise ValueError("the evidence file holds no entries")
    return entries


def _check_chains(entries: Sequence[Entry]) -> None:
    """Each party's messages in order, none missing: each one's signed ``prev`` is the party's
    message before it, nil for its first (§4.5-6). The hash links (§8.2-1) alone prove
    nothing against the file's author, who can take an entry out and compute them again;
    the ``prev`` of that party's next message is signed. (What came after the last entry
    cannot be proved absent.) Keys are grouped by party through ``key.rotate`` (§2.6);
    :func:`verify_entries` has checked every entry and that each key is a party's."""
    party: dict[bytes, int] = {}
    last: list[bytes | None] = [None, None]
    for e in entries:
        msg = open_envelope(e.envelope, now=0, check_time=False, allow_erased=True)
        for key in (msg.sender, msg.recipient):
            if key is not None and key not in party and len(set(party.values())) < 2:
                party[key] = len(set(party.values()))
        p = party[msg.sender]
        if msg.header.prev != last[p]:
            raise ProtocolError(
                f"entry {e.index} is signed after a message of its sender the file does not "
                "hold just before it (its prev): a message of that party is missing or out "
                "of place", clause="§4.5-6",
            )  # fmt: skip
        last[p] = msg.hash
        if isinstance(msg.body, KeyRotate):
            party[msg.body.new_key] = p


def check_evidence(doc: Any) -> dict[str, Any]:
    """Check every signature, body hash, message hash and link of an evidence file.

    Returns what it proves (the thread, the parties' fingerprints, how many entries); raises
    :class:`ValueError` for a file that is not evidence and :class:`ProtocolError` at the first
    entry that does not verify.
    """
    entries = _entries_of(doc)
    verify_entries(entries)
    _check_chains(entries)
    first = open_envelope(entries[0].envelope, now=0, check_time=False, allow_erased=True)
    if first.thread.hex() != doc.get("thread"):
        raise ProtocolError("the entries belong to another thread than the file names",
                            clause="§8.3-2")  # fmt: skip
    parties = [fingerprint(first.sender)]
    if first.recipient is not None:
        parties.append(fingerprint(first.recipient))
    return {"thread": first.thread.hex(), "entries": len(entries), "parties": parties,
            "head": entries[-1].link.hex()}  # fmt: skip
