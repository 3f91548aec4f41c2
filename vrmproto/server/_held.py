"""The data a vendor holds about a customer, per thread, in the ``vrm-data/1`` form (§12.10).

Fields a customer shares (data.share) or updates (address.update) become
:class:`~vrmproto.DataRecord` s with source ``provided``, each remembering the hash of the
message it came from, so a data.withdraw deletes exactly the records of the withdrawn shares
(§12.10-2), and the body of each withdrawn or expired share is erased from the history
(§12.10-4, §8.4). They are kept in the store's meta table under ``held:<thread hex>`` as
canonical msgpack, and written in the same :class:`~vrmproto.store.Commit` as the message that
changed them.

Nothing here re-opens what the vendor stored: the erased form of a stored share is cut from its
envelope bytes (:func:`erased_form`), which were verified when they arrived.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vrmproto import _codec
from vrmproto._envelope import Signed
from vrmproto._errors import ProtocolError, ValidationError, excerpt
from vrmproto._messages import AddressUpdate, DataShare, DataWithdraw, FieldsContent, RecordsContent
from vrmproto._relationship import Relationship
from vrmproto._vocab import DataRecord, suggest_category
from vrmproto.store import Store

if TYPE_CHECKING:
    from vrmproto.server._accept import Step

__all__ = [
    "HeldRecord",
    "decode_held",
    "encode_held",
    "erased_form",
    "held_key",
    "live",
    "merge_fields",
    "read_held",
    "take_data",
    "without",
]

#: An erasure of one history body: (thread, message hash, the envelope's erased form).
Erasure = tuple[bytes, bytes, bytes]

#: Purposes given to a field first seen in an address.update (which names none): Core Function.
_ADDRESS_PURPOSES = (1,)


def held_key(thread: bytes) -> str:
    """The store meta key of one thread's held data."""
    return f"held:{thread.hex()}"


@dataclass(frozen=True, slots=True)
class HeldRecord:
    """One record the vendor holds, and the message (share or address update) it came from."""

    source_msg: bytes
    record: DataRecord


def encode_held(items: Iterable[HeldRecord]) -> bytes:
    return _codec.encode([{"record": h.record.to_wire(), "share": h.source_msg} for h in items])


def decode_held(raw: bytes | None) -> list[HeldRecord]:
    """Read what :func:`encode_held` wrote; ``ValueError`` if it is damaged."""
    if raw is None:
        return []
    try:
        items = _codec.decode(raw, max_depth=4)
        return [HeldRecord(i["share"], DataRecord.from_wire(i["record"])) for i in items]
    except (ProtocolError, KeyError, TypeError) as exc:
        raise ValueError(f"stored held data is damaged: {exc}") from exc


def merge_fields(
    held: list[HeldRecord],
    fields: Mapping[str, str],
    *,
    source_msg: bytes,
    now: int,
    categories: tuple[int, ...] | None,
    purposes: tuple[int, ...] | None,
) -> list[HeldRecord]:
    """``held`` with ``fields`` added; a field already held is replaced (an address update).

    ``categories``/``purposes`` come from a data.share; an address.update gives None and keeps
    the category and purposes of the value it replaces. Raises :class:`ValidationError`
    (``invalid_field``) for a field the vrm-data/1 form cannot hold (§6.8-2, §6.8-3), since the
    vendor could never return it.
    """
    previous = {h.record.field: h.record for h in held}
    fresh: list[HeldRecord] = []
    for name, value in fields.items():
        old = previous.get(name)
        category = suggest_category(name)
        if categories is not None and category not in categories:
            category = categories[0]
        elif categories is None and old is not None:
            category = old.category
        chosen = purposes or (old.purposes if old is not None else _ADDRESS_PURPOSES)
        try:
            record = DataRecord(name, value, category, "provided", now, chosen)
        except ValidationError as exc:
            raise ValidationError(
                f"field {excerpt(name)} cannot be held: {exc.detail}",
                code=exc.code,
                clause=exc.clause,
                path=f"$.sealed.content.fields.{name}"[:200],
            ) from None
        fresh.append(HeldRecord(source_msg, record))
    return [h for h in held if h.record.field not in fields] + fresh


def without(held: list[HeldRecord], sources: Collection[bytes]) -> list[HeldRecord]:
    """``held`` minus the records that came from ``sources``."""
    return [h for h in held if h.source_msg not in sources]


def live(held: list[HeldRecord], rel: Relationship, now: int) -> list[HeldRecord]:
    """Held records minus those of shares past their expiry (§12.10-4)."""
    expired = {h for h, expires in rel.shares.items() if expires <= now}
    return without(held, expired) if expired else held


async def read_held(store: Store, thread: bytes) -> list[HeldRecord]:
    """Every record held in ``thread``, expired shares' included."""
    return decode_held(await store.get_meta(held_key(thread)))


async def live_held(store: Store, thread: bytes, rel: Relationship, now: int) -> list[HeldRecord]:
    """The records held in ``thread`` from shares still live at ``now`` (§12.10-4)."""
    return live(await read_held(store, thread), rel, now)


def erased_form(envelope: bytes) -> bytes | None:
    """The erased form (§8.4) of an envelope from our own history — its header and signature,
    the body dropped — or None when it is erased already. The bytes were verified when they
    arrived: they are cut, not opened again."""
    env: dict[str, Any] = _codec.decode_form(envelope)
    if env.get("body") is None:
        return None
    return _codec.pack_sorted({"hdr": env["hdr"], "sig": env["sig"]})


async def erasures(store: Store, thread: bytes, shares: Iterable[bytes]) -> list[Erasure]:
    """The history bodies to erase for ``shares`` of ``thread`` (§12.10-2, §12.10-4)."""
    out = []
    for share_hash in shares:
        entry = await store.history_entry(thread, share_hash)
        erased = erased_form(entry.envelope) if entry is not None else None
        if erased is not None:
            out.append((thread, share_hash, erased))
    return out


async def take_data(
    store: Store,
    step: Step,
    msg: Signed[Any],
    content: FieldsContent | RecordsContent | None,
    now: int,
) -> None:
    """Keep shared fields as held data; delete and erase withdrawn ones (§12.10)."""
    body = msg.body
    if isinstance(body, DataShare | AddressUpdate) and isinstance(content, FieldsContent):
        step.held = merge_fields(
            await live_held(store, msg.thread, step.rel, now),
            content.fields,
            source_msg=msg.hash,
            now=now,
            categories=body.categories if isinstance(body, DataShare) else None,
            purposes=body.purposes if isinstance(body, DataShare) else None,
        )
    elif isinstance(body, DataWithdraw):
        shares = step.rel.pending_withdraws[msg.hash]
        step.held = without(await live_held(store, msg.thread, step.rel, now), shares)
        step.erase.extend(await erasures(store, msg.thread, shares))
