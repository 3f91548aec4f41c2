"""The history: each party's append-only, hash-linked log of one relationship (spec §8).

Entry *i* links to entry *i−1*::

    link_i = SHA-256("vrmproto/v1/history\\0" ‖ link_{i-1} ‖ msg_hash_i),  link_{-1} = 32 × 0x00

Both parties log every message of the relationship — sent and received, receipts included — in
the order they were exchanged, so two logs that agree have the same head link, and the first
index where the links differ is where they diverge (§8.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from vrmproto._envelope import open_envelope
from vrmproto._errors import Problem, ProtocolError, ValidationError
from vrmproto._keys import sha256
from vrmproto._limits import Limits
from vrmproto._messages import KeyRotate
from vrmproto._quick import quick_init, quick_new

_LINK_CONTEXT = b"vrmproto/v1/history\x00"
GENESIS = bytes(32)
_sha256 = hashlib.sha256  # SHA-256 (§3.6), inline on the hot path


def link(prev_link: bytes, msg_hash: bytes) -> bytes:
    """The hash link of the entry after ``prev_link`` holding ``msg_hash`` (§8.2-1)."""
    return sha256(_LINK_CONTEXT + prev_link + msg_hash)


@quick_init
@dataclass(frozen=True, slots=True)
class Entry:
    """One logged message: its index, hash, link and exact envelope bytes (§8.2)."""

    index: int
    msg_hash: bytes
    link: bytes
    envelope: bytes
    outgoing: bool


_new_entry = quick_new(Entry)  # Entry(...) on the hot path: every message sent or received


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where two logs part (§8.3): the first differing index and each side's entry there."""

    index: int
    ours: Entry | None
    theirs: Entry | None
    crossing: bool = False

    @property
    def kind(self) -> Literal["behind", "ahead", "crossing", "fork"]:
        """``"behind"``: ours is a prefix of theirs; ``"ahead"``: the reverse; ``"crossing"``:
        the same messages from ``index`` on, in another order (§8.3-6, not a fault); else
        ``"fork"``."""
        if self.ours is None:
            return "behind"
        if self.theirs is None:
            return "ahead"
        return "crossing" if self.crossing else "fork"


class History:
    """An in-memory log; the stores keep the same entries durably (vrmproto.store).

    :meth:`resume` makes a History that knows only the head of a stored log, so a server
    appends to a long relationship without loading it (the cost of a message never grows with
    the history, §8.2-4).
    """

    __slots__ = ("_base_len", "_base_link", "_entries", "_hashes")

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._base_len = 0
        self._base_link = GENESIS
        self._entries: list[Entry] = []
        self._hashes: set[bytes] = set()
        for e in entries:
            self._append_entry(e)

    @classmethod
    def resume(cls, length: int, head_link: bytes) -> History:
        """A History continuing a stored log of ``length`` entries whose last link is given."""
        h = cls()
        h._base_len, h._base_link = length, (head_link if length else GENESIS)
        return h

    def __len__(self) -> int:
        return self._base_len + len(self._entries)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._entries)

    def __getitem__(self, index: int) -> Entry:
        """Entry by absolute index (only entries held in memory)."""
        return self._entries[index - self._base_len if index >= 0 else index]

    @property
    def head(self) -> bytes:
        """The link of the newest entry (GENESIS when empty)."""
        return self._entries[-1].link if self._entries else self._base_link

    def __contains__(self, msg_hash: object) -> bool:
        return msg_hash in self._hashes

    def next_entry(self, msg_hash: bytes, envelope: bytes, *, outgoing: bool) -> Entry:
        """The entry that appending this message would create (nothing is changed)."""
        return Entry(len(self), msg_hash, link(self.head, msg_hash), envelope, outgoing)

    def _append_entry(self, entry: Entry) -> None:
        if entry.index != len(self) or entry.link != link(self.head, entry.msg_hash):
            raise ValidationError(f"entry {entry.index} does not link to the log", clause="§8.2-1")
        if entry.msg_hash in self._hashes:
            raise ValidationError("a message appears twice in one history", clause="§8.2-2")
        self._entries.append(entry)
        self._hashes.add(entry.msg_hash)

    def append(self, msg_hash: bytes, envelope: bytes, *, outgoing: bool) -> Entry:
        """Log a message as the next entry (§8.2-1); it may appear only once (§8.2-2)."""
        hashes, entries = self._hashes, self._entries
        if msg_hash in hashes:
            raise ValidationError("a message appears twice in one history", clause="§8.2-2")
        # len(self), self.head and link(), inline (hot path: every message sent or received)
        head = entries[-1].link if entries else self._base_link
        entry = _new_entry(self._base_len + len(entries), msg_hash,
                           _sha256(_LINK_CONTEXT + head + msg_hash).digest(), envelope, outgoing)
        entries.append(entry)  # linked by construction: no need to check it again
        hashes.add(msg_hash)
        return entry

    def erase(self, msg_hash: bytes, erased_envelope: bytes) -> None:
        """Replace an entry's envelope with its erased form (§8.4); links are unchanged."""
        for i, e in enumerate(self._entries):
            if e.msg_hash == msg_hash:
                self._entries[i] = replace(e, envelope=erased_envelope)
                return
        raise KeyError(msg_hash.hex())

    def index_of(self, msg_hash: bytes) -> int | None:
        """The index of ``msg_hash``'s entry (held in memory), looked for from the newest: a
        message just logged is found at once, however long the history."""
        if msg_hash in self._hashes:
            for e in reversed(self._entries):
                if e.msg_hash == msg_hash:
                    return e.index
        return None

    def entries(self) -> Sequence[Entry]:
        """The entries held in memory (all of them unless made by :meth:`resume`)."""
        return tuple(self._entries)


def verify_entries(
    entries: Sequence[Entry],
    *,
    max_envelope_bytes: int | None = None,
    start_link: bytes | None = None,
    parties: Iterable[bytes] = (),
) -> None:
    """Check a log: gap-free indexes, every link, every signature and body hash (§8.2), and that
    every message belongs to one thread and is signed by and addressed to its parties (§8.3-2).

    A whole log starts at index 0; a later page of an export (§12.5) starts at its first entry's
    index, with ``start_link`` the link of the entry before it. The parties are the two keys of
    the first message (or ``parties``, for a page), plus every new key a ``key.rotate`` in the
    log names (§2.6): a rotated key stays a party for the messages it signed. Erased bodies are
    allowed (§8.4), though an erased ``key.rotate`` cannot vouch for its new key. Lifetime and
    depth limits do not apply to stored history; only ``max_envelope_bytes`` is kept, if given.
    Raises :class:`ProtocolError` at the first bad entry.
    """
    limits = Limits(
        max_envelope_bytes=max_envelope_bytes or 2**31 - 1,
        max_depth=2**16,
        max_lifetime_ms=2**53 - 1 - 120_000,
        replay_window_ms=2**53 - 1,
    )
    first = entries[0].index if entries and start_link is not None else 0
    prev = start_link if start_link is not None else GENESIS
    known = set(parties)
    thread: bytes | None = None
    for i, e in enumerate(entries, start=first):
        if e.index != i:
            raise ValidationError(f"entry {i} has index {e.index}", clause="§8.2-1")
        if e.link != link(prev, e.msg_hash):
            raise ValidationError(f"entry {i} does not link to entry {i - 1}", clause="§8.2-1")
        try:
            msg = open_envelope(
                e.envelope, now=0, check_time=False, allow_erased=True, limits=limits
            )
        except ProtocolError as exc:
            raise ValidationError(f"entry {i}: {exc.detail}", code=exc.code,
                                  clause=exc.clause) from None
        if msg.hash != e.msg_hash:
            raise ValidationError(f"entry {i}'s envelope is another message", clause="§8.2-3")
        if thread is None:
            thread = msg.thread
            if not known and msg.recipient is not None:
                known = {msg.sender, msg.recipient}
        if msg.thread != thread:
            raise ValidationError(f"entry {i} belongs to another thread", clause="§8.3-2")
        if msg.sender not in known or msg.recipient not in known:
            raise ValidationError(f"entry {i} is signed by or sent to a stranger",
                                  code=Problem.NOT_A_PARTY, clause="§8.3-2")
        if isinstance(msg.body, KeyRotate):
            known.add(msg.body.new_key)
        prev = e.link


def compare(ours: Sequence[Entry], theirs: Sequence[Entry]) -> Divergence | None:
    """The first index where two logs differ, or None when they are identical (§8.3-1).

    Logs are compared by link, so equal heads mean equal logs; the search is a binary search on
    the links (a common prefix has equal links at every index).
    """
    n = min(len(ours), len(theirs))
    if len(ours) == len(theirs) and (n == 0 or ours[-1].link == theirs[-1].link):
        return None
    lo, hi = 0, n  # invariant: links equal below lo; first difference is in [lo, n]
    while lo < hi:
        mid = (lo + hi) // 2
        if ours[mid].link == theirs[mid].link:
            lo = mid + 1
        else:
            hi = mid
    crossing = len(ours) == len(theirs) and (
        sorted(e.msg_hash for e in ours[lo:]) == sorted(e.msg_hash for e in theirs[lo:])
    )
    return Divergence(
        lo,
        ours[lo] if lo < len(ours) else None,
        theirs[lo] if lo < len(theirs) else None,
        crossing,
    )
