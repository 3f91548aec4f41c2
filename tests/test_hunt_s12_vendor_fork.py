"""Two vendor processes on one store must not both accept two messages that share a ``prev``.

Found by a test of two ``vrm vendor serve`` processes on one data directory, each sent one of
two messages a customer key signed with the same ``prev`` (a share and an end) at the same
moment: both answered 200 now and then, and the vendor's history held

    3 data.share        prev = the offer
    4 receipt           prev = the terms.accept
    5 relationship.end  prev = the offer          <- not the customer's last message
    6 receipt           prev = the terms.accept   <- not the vendor's own last message

A step that does not find the relationship warm reads the thread's record
(``get_relationship``, ``vrmproto/server/_accept.py`` ``apply``) and then, in another read,
its newest history row (``history_head``, in ``load``); and it committed without ``expect=``
(``respond`` passed ``expect`` only for a warm relationship). When another process committed in
between the two reads, the step checked the message against the old state (its ``prev`` still
linked) while appending after the new head: no uniqueness rule was broken, and the fork was
stored. The same held for PostgreSQL and ``--workers 2``, where no thread lock is shared
(``Endpoint(thread_lock=None)``). The step now commits with the record it read as ``expect``:
the second commit is a StoreConflict, and the step runs again and refuses the message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from _vendor_proc import ACCEPTED, VENDOR_SEED, Customer, Reply, now_ms

from vrmproto import Identity, RelationshipEnd
from vrmproto._records import capture, restore
from vrmproto.server import Endpoint, ReferencePolicy, Response
from vrmproto.store import SQLiteStore

VENDOR = Identity(VENDOR_SEED)


def reply(r: Response) -> Reply:
    return Reply(r.status, r.body, dict(r.headers))


async def test_a_message_whose_prev_another_process_moved_on_is_refused(tmp_path: Path) -> None:
    a_store = await SQLiteStore.open(tmp_path / "vendor.db")
    b_store = await SQLiteStore.open(tmp_path / "vendor.db")  # a second process, as it were
    try:
        policy = ReferencePolicy(accepts_terms=ACCEPTED)
        a = Endpoint(VENDOR, store=a_store, policy=policy)
        b = Endpoint(VENDOR, store=b_store, policy=policy)
        c = Customer(VENDOR)
        offer = c.offer(*ACCEPTED)
        c.absorb(reply(await a.handle_inbox(offer.envelope)), offer)
        twin = restore(capture(c.rel), identity=c.identity)
        share = c.share({"email": "ada@example.org"})
        end = twin.send(RelationshipEnd(reason="bye"), now=now_ms(), msg_id=os.urandom(16))
        assert share.header.prev == end.message.header.prev  # two messages after the offer

        head = b_store.history_head

        async def meanwhile(thread: bytes) -> Any:  # process A takes the share in between
            b_store.history_head = head  # type: ignore[method-assign]
            assert (await a.handle_inbox(share.envelope)).status == 200
            return await head(thread)

        b_store.history_head = meanwhile  # type: ignore[method-assign]
        answer = await b.handle_inbox(end.message.envelope)
        assert answer.status == 409, [(h.index, h.msg_hash.hex()[:8])
                                      for h in await a_store.history(c.thread)]
    finally:
        await a_store.close()
        await b_store.close()
