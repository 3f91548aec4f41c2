"""A message held until a person acts: its vendor now answers, and publishes its document,
under another key than the one we hold (§11.10-1, §11.10-3).

Retrying such a message cannot deliver it — the vendor refuses what is addressed to the old
key, with a problem signed by the new one, which does not count as a refusal (§9.1-10) — and
only a person may decide about the new key. So the outbox holds it
(:data:`~vrmproto.client._schedule.HELD_MS`: never due by the clock) with an error that names
both keys and the way to accept the new one, instead of retrying it until it expires.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from vrmproto._errors import TransportError, VrmError
from vrmproto._keys import fingerprint
from vrmproto.client._delivery import Delivery
from vrmproto.client._errors import InvalidResponse, KeyChangedError
from vrmproto.client._ledger import Thread
from vrmproto.client._moved import left
from vrmproto.client._own import own_header
from vrmproto.client._schedule import HELD_MS
from vrmproto.client._transport import Transport
from vrmproto.store import OutboxItem, Store

__all__ = ["HELD", "held_because", "hold_if_key_changed", "is_held"]


class Parts(Protocol):
    """What :func:`hold_if_key_changed` uses of a :class:`~vrmproto.client._sending.Sender`."""

    client: Transport

    @property
    def store(self) -> Store: ...


#: How the error of a held message begins (:func:`held_because`), stored and shown alike.
HELD = "held, not retried: "


def is_held(error: object) -> bool:
    """Whether ``error`` is that of a message held until a person acts (§11.10-1)."""
    return isinstance(error, InvalidResponse) and isinstance(error.error, KeyChangedError) and (
        error.detail.startswith(HELD))


def held_because(changed: KeyChangedError, msg_id: bytes) -> str:
    """Why a message is held (:func:`hold_if_key_changed`), and what the person can do
    (§11.10-3: both fingerprints, and how to accept the new key).

    Accepting the new key opens a new relationship (§11.10-3); the held message was made for
    this one, under its agreement and to the key held, and can never go there: the person
    drops it and sends again, which goes to the new relationship. Retrying it delivers it
    only if the vendor signs with the key held again (a key.rotate in this relationship is the
    only other way to move it, §11.10-1, and that arrives by itself). It said "`vrm outbox
    retry` tries it again" after the accept, which held it again, for good."""
    new = fingerprint(changed.offered)
    held = ", ".join(fingerprint(k) for k in changed.pinned)
    short = msg_id.hex()[:12]
    return (f"{HELD}the vendor at {changed.url} now signs with key {new}, not the "
            f"key you hold for it ({held}); it may be an impostor. If it really changed its "
            f"key, check {new} with it another way, then `vrm connect {changed.url} "
            f"--accept-new-key {new}` opens a new relationship under that key: this message "
            f"cannot go there, so `vrm outbox drop {short}` gives it up and you send it again "
            f"(it goes to the new relationship). Should the vendor sign with {held} again, "
            f"`vrm outbox retry {short}` delivers it")


async def hold_if_key_changed(s: Parts, t: Thread, item: OutboxItem, exc: TransportError, *,
                              deadline: float | None = None) -> Delivery | None:  # fmt: skip
    """``item`` held until a person acts, if ``exc`` is an answer signed by another key than
    the vendor's we hold (:class:`KeyChangedError`) and the vendor's discovery document,
    read again from ``t.url``, is now signed by another key too: retrying cannot deliver
    it, and the new key is trusted only by a person's explicit decision (§11.10-1,
    §11.10-3). Nothing else changes: the relationship keeps the key it holds, the message
    stays in the outbox (:data:`~vrmproto.client._schedule.HELD_MS`), and the error names
    both keys and the way to accept the new one. None — retried as usual — when the
    document still verifies under the key we hold (the answer was not the vendor's) or
    cannot be read."""
    if not isinstance(exc, InvalidResponse) or not isinstance(exc.error, KeyChangedError):
        return None
    try:
        async with asyncio.timeout_at(deadline):
            doc = await s.client.fetch_discovery(t.url, role="vendor", timeout_s=left(deadline))
    except (TransportError, VrmError, TimeoutError):
        return None
    if doc.key in t.problem_keys:
        return None
    changed = KeyChangedError(t.url, t.meta.name, by="url", pinned=t.problem_keys,
                              offered=doc.key)  # fmt: skip
    header = own_header(item.envelope)  # ours: its id and type, without verifying again
    msg_id, mtype = (header.id, header.type) if header is not None else (bytes(16), "")
    held = InvalidResponse(held_because(changed, msg_id), status=exc.status, error=changed)
    attempts = item.attempts + 1
    await s.store.outbox_retry(item.item_id, attempts, HELD_MS, str(held))
    return Delivery(t.id, msg_id, item.msg_hash, "queued", error=held, attempts=attempts,
                    type=mtype)

