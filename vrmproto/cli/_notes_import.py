"""The notes files of earlier releases, imported into the store once.

Releases before schema 3 kept two JSON files beside ``agent.db``: ``intents.json`` (each
intentcast and the offers it got, written only when the intentcast ended) and ``shares.json``
(what was shared with whom). The node now stores both as typed records
(:class:`~vrmproto.store.IntentRecord`, :class:`~vrmproto.store.IntentOffer`,
:class:`~vrmproto.store.ShareNote`), offers as they arrive. The first time a data directory
that still has those files is opened, they are imported in one Commit and renamed
``<name>.imported`` (kept, not deleted). Importing is idempotent (every record is upserted by
its id), so a stop between the Commit and the rename only imports the same notes again. A file
that cannot be read is left where it is, with a warning: the notes are a convenience beside the
signed history, never a reason to refuse a command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vrmproto.cli._errors import CliError
from vrmproto.cli._home import Home, warn
from vrmproto.store import Commit, IntentOffer, IntentRecord, ShareNote, Store

__all__ = ["IMPORTED_SUFFIX", "import_notes"]

IMPORTED_SUFFIX = ".imported"


def _offer(d: dict[str, Any], intent_id: bytes, received_ms: int) -> IntentOffer:
    price = d["price"]
    return IntentOffer(
        intent_id=intent_id, hash=bytes.fromhex(d["hash"]), thread=bytes.fromhex(d["thread"]),
        vendor=str(d["vendor"]), url=str(d["url"]), vendor_key=bytes.fromhex(d["vendor_key"]),
        description=str(d["description"]), price=(int(price["amount"]), str(price["currency"])),
        valid_until_ms=int(d["valid_until"]), conditions=tuple(map(str, d["conditions"])),
        accepts_terms=tuple(map(str, d["accepts_terms"])), received_ms=received_ms,
    )  # fmt: skip


def _intents(items: list[dict[str, Any]]) -> Commit:
    intents: list[IntentRecord] = []
    offers: list[IntentOffer] = []
    for d in items:
        intent_id, sent = bytes.fromhex(d["intent"]), int(d.get("sent") or 0)
        price = d.get("max_price")
        intents.append(IntentRecord(
            intent_id=intent_id, what=str(d["what"]), where=str(d.get("where") or ""),
            start_ms=int(d.get("from") or 0), end_ms=int(d.get("to") or 0),
            max_price=(int(price["amount"]), str(price["currency"])) if price else None,
            reply_by_ms=int(d["reply_by"]), sent_ms=sent,
            vendors=tuple(map(str, d.get("vendors", ()))),
            declines=tuple((str(x["vendor"]), str(x["reason"])) for x in d.get("declines", ())),
        ))  # fmt: skip
        offers.extend(_offer(o, intent_id, sent) for o in d.get("offers", ()))
    return Commit(intents=tuple(intents), offers=tuple(offers))


def _shares(items: list[dict[str, Any]]) -> Commit:
    notes = []
    for d in items:
        if not d.get("hash"):  # noted while still a draft: no message to name
            continue
        fields = d.get("fields") or {}
        withdrawn = d.get("withdrawn")
        notes.append(ShareNote(
            share=bytes.fromhex(d["hash"]), thread=bytes.fromhex(d["thread"]),
            vendor=str(d.get("vendor", "")),
            fields=tuple(sorted((str(k), str(v)) for k, v in dict(fields).items())),
            purposes=tuple(map(int, d.get("purposes", ()))),
            categories=tuple(map(int, d.get("categories", ()))),
            expires_ms=int(d.get("expires") or 0), shared_ms=int(d.get("shared") or 0),
            status=str(d.get("status") or "confirmed"),
            withdrawn_ms=int(withdrawn) if withdrawn else None,
        ))  # fmt: skip
    return Commit(share_notes=tuple(notes))


async def import_notes(home: Home, store: Store) -> None:
    """Import ``intents.json`` and ``shares.json`` into ``store`` if they are still there."""
    files: list[tuple[Path, Callable[[], list[dict[str, Any]]], Callable[..., Commit]]] = [
        (home.intents_path, home.read_intents, _intents),
        (home.shares_path, home.read_shares, _shares),
    ]
    for path, read, convert in files:
        if not path.exists():
            continue
        try:
            commit = convert(read())
        except (OSError, CliError, ValueError, KeyError, TypeError) as exc:
            reason = exc.message if isinstance(exc, CliError) else str(exc)
            warn(f"{path.name} from an earlier release could not be imported into your store "
                 f"({reason}); it is left as it was")  # fmt: skip
            continue
        await store.commit(commit)
        path.replace(path.with_name(path.name + IMPORTED_SUFFIX))
