"""The notes files of earlier releases, imported into the store once.

Releases before schema 3 kept two JSON files beside ``agent.db``: ``intents.json`` (each
intentcast and the offers it got, written only when the intentcast ended) and ``shares.json``
(what was shared with whom). The node now stores both as typed records
(:class:`~vrmproto.store.IntentRecord`, :class:`~vrmproto.store.OfferRecord`,
:class:`~vrmproto.store.ShareNote`), offers as they arrive. The first time a data directory
that still has those files is opened, each is read (:mod:`vrmproto.store._v2_files`), imported
in one Commit and renamed ``<name>.imported`` (kept, not deleted). Importing is idempotent
(every record is upserted by its id), so a stop between the Commit and the rename only imports
the same notes again. A file that cannot be read is left where it is, with a warning: the
notes are a convenience beside the signed history, never a reason to refuse a command.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from vrmproto.cli._home import Home, warn
from vrmproto.store import Commit, Store
from vrmproto.store._v2_files import intents_from_v2, share_notes_from_v2

__all__ = ["IMPORTED_SUFFIX", "import_notes"]

IMPORTED_SUFFIX = ".imported"


def _intents(doc: Mapping[str, Any]) -> Commit:
    intents, offers = intents_from_v2(doc)
    # An offer's "intent" in the file is the hash of the intentcast message it answered; the
    # store groups offers by the intentcast's id, the entry that lists them.
    owner = {str(o["hash"]): bytes.fromhex(i["intent"]) for i in doc["items"]
             for o in i.get("offers", ())}  # fmt: skip
    return Commit(intents=intents, offers=tuple(replace(o, intent_id=owner[o.hash.hex()])
                                                for o in offers))  # fmt: skip


def _shares(doc: Mapping[str, Any]) -> Commit:
    notes, unkeyed = share_notes_from_v2(doc)
    if unkeyed:
        warn(f"{len(unkeyed)} note(s) in shares.json name no share (they were noted while the "
             "share waited to be signed) and are not imported; the shares are in your history")
    return Commit(share_notes=notes)


async def import_notes(home: Home, store: Store) -> None:
    """Import ``intents.json`` and ``shares.json`` into ``store`` if they are still there."""
    files: list[tuple[Path, Callable[[Mapping[str, Any]], Commit]]] = [
        (home.intents_path, _intents), (home.shares_path, _shares),
    ]  # fmt: skip
    for path, convert in files:
        if not path.exists():
            continue
        try:
            commit = convert(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warn(f"{path.name} from an earlier release could not be imported into your store "
                 f"({exc}); it is left as it was")  # fmt: skip
            continue
        await store.commit(commit)
        path.replace(path.with_name(path.name + IMPORTED_SUFFIX))
