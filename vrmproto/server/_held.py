"""The data a vendor holds about a customer, per thread, in the ``vrm-data/1`` form (§12.10).

Fields a customer shares (data.share) or updates (address.update) become
:class:`~vrmproto.DataRecord` s with source ``provided``, each remembering the hash of the
message it came from, so a data.withdraw deletes exactly the records of the withdrawn shares.
They are kept in the store's meta table under ``held:<thread hex>`` as canonical msgpack, and
written in the same :class:`~vrmproto.store.Commit` as the message that changed them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from vrmproto import _codec
from vrmproto._errors import ProtocolError, ValidationError, excerpt
from vrmproto._vocab import DataRecord, suggest_category

__all__ = ["HeldRecord", "decode_held", "encode_held", "held_key", "merge_fields", "without"]

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
