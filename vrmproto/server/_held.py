"""The data a vendor holds about a customer, per thread, in the ``vrm-data/1`` form (§12.10).

Fields a customer shares (data.share) or updates (address.update) become ``provided``
:class:`~vrmproto.store.HeldRecord` rows, one per ``(thread, field)``, each naming the share it
is held from and when that share expires (§5.3.1-4). An update of a held field replaces its value
and keeps the rest: the share, its expiry and so its withdrawal (§5.3.6-2). A field not held
before is held from the update itself, without expiry. Sharing or updating a field again
replaces its row in place, so a message writes only the rows of the fields it carries:
what it costs does not grow with the shares before it. A data.withdraw drops the rows of the
withdrawn shares (§12.10-2); an expired share's rows are no longer returned, and the sweep drops
them (§12.10-4). Rows are written in the same :class:`~vrmproto.store.Commit` as the message
that changed them.

The body of each withdrawn or expired share is erased from the history (§12.10-2, §12.10-4,
§8.4), and with it the bodies of the address.updates logged after it, which may carry a value
held in its place (§5.3.2-2: every copy). Nothing here re-opens what the vendor stored: the
erased form of a stored message is cut from its envelope bytes (:func:`erased_form`), which
were verified when they arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from vrmproto import _codec
from vrmproto._envelope import Signed
from vrmproto._errors import ValidationError, excerpt
from vrmproto._messages import AddressUpdate, DataShare, DataWithdraw, FieldsContent, RecordsContent
from vrmproto._vocab import DataRecord, DataSource, suggest_category
from vrmproto.server._fast import setters
from vrmproto.store import HeldRecord, Store

if TYPE_CHECKING:
    from vrmproto.server._accept import Step

__all__ = [
    "HeldRecord",
    "erased_form",
    "erasures",
    "live",
    "live_held",
    "merge_fields",
    "take_data",
    "to_data",
]

#: Purposes given to a field first seen in an address.update (which names none): Core Function.
_ADDRESS_PURPOSES = (1,)

#: An erasure of one history body: (thread, message hash, the envelope's erased form).
Erasure = tuple[bytes, bytes, bytes]

#: A value of at most this many characters is within the 4,096 bytes of §6.8-3 whatever they
#: are: a character is at most 4 bytes of UTF-8 (a lone surrogate, "surrogatepass", 3).
SAFE_VALUE_CHARS = 1024
#: ``(field, category, purposes)`` -> the source and purposes (sorted, unique) of the
#: :class:`~vrmproto.DataRecord` built with that shape (so valid, §6.8-1 to §6.8-7). A
#: data.share names the same fields time after time; validating each one's shape again cost
#: more than the rest of the vendor's held-data step (#12).
_SHAPES: dict[tuple[str, int, tuple[int, ...]], tuple[DataSource, tuple[int, ...]]] = {}
_SHAPES_MAX = 4096


_HELD_FIELDS = ("thread", "field", "value", "category", "source", "collected_ms", "purposes",
                "share", "expires_ms")  # fmt: skip
(_set_thread, _set_field, _set_value, _set_category, _set_source, _set_collected, _set_purposes,
 _set_share, _set_expires) = setters(HeldRecord, _HELD_FIELDS)  # fmt: skip


def held_row(  # noqa: PLR0917 - HeldRecord's own fields, positional as its constructor's
    thread: bytes, field: str, value: str, category: int, source: DataSource, collected_ms: int,
    purposes: tuple[int, ...], share: bytes, expires_ms: int | None,
) -> HeldRecord:  # fmt: skip
    """``HeldRecord(thread, field, …)``, built three times faster (:mod:`._fast`): a share
    makes one per field."""
    h = HeldRecord.__new__(HeldRecord)
    _set_thread(h, thread)
    _set_field(h, field)
    _set_value(h, value)
    _set_category(h, category)
    _set_source(h, source)
    _set_collected(h, collected_ms)
    _set_purposes(h, purposes)
    _set_share(h, share)
    _set_expires(h, expires_ms)
    return h


def to_data(h: HeldRecord) -> DataRecord:
    """A held row as the ``vrm-data/1`` record a data.return carries (§6.8)."""
    return DataRecord(h.field, h.value, h.category, h.source, h.collected_ms, h.purposes)


def is_live(h: HeldRecord, now: int) -> bool:
    """Whether ``h`` came from a share not yet expired, or from an address update."""
    return h.expires_ms is None or h.expires_ms > now


def live(held: list[HeldRecord], now: int) -> list[HeldRecord]:
    """Held rows minus those of shares past their expiry (§12.10-4)."""
    return [h for h in held if is_live(h, now)]


async def live_held(store: Store, thread: bytes, now: int) -> list[HeldRecord]:
    """The rows held in ``thread`` from shares still live at ``now`` (§12.10-4)."""
    return live(await store.held(thread), now)


def merge_fields(
    thread: bytes,
    previous: Mapping[str, HeldRecord],
    fields: Mapping[str, str],
    *,
    source_msg: bytes,
    now: int,
    categories: tuple[int, ...] | None,
    purposes: tuple[int, ...] | None,
    expires_ms: int | None,
) -> list[HeldRecord]:
    """The rows of ``fields``, each replacing the row of its field in ``previous`` (the live
    rows of the thread an address update names; a share names its own purposes and categories).

    ``categories``/``purposes`` come from a data.share; an address.update gives None and keeps
    the category and purposes of the value it replaces, and how that value is held: the share
    it came from and that share's expiry, so the new value goes when the share expires or is
    withdrawn (§5.3.6-2, §12.10-2, §12.10-4). A field not held before is held from
    ``source_msg`` until ``expires_ms`` (an address update's: never). Raises
    :class:`ValidationError` (``invalid_field``) for a field the vrm-data/1 form cannot hold
    (§6.8-2, §6.8-3), since the vendor could never return it.

    The first row of a call is always a :class:`~vrmproto.DataRecord` built whole (which checks
    ``now`` too); each further row is one too unless its ``(field, category, purposes)`` was
    accepted before and its value has at most :data:`SAFE_VALUE_CHARS` characters — the only
    checks that could then fail are those already passed.
    """
    rows: list[HeldRecord] = []
    for name, value in fields.items():
        old = previous.get(name)
        category = suggest_category(name)
        if categories is not None and category not in categories:
            category = categories[0]
        elif categories is None and old is not None:
            category = old.category
        chosen = purposes or (old.purposes if old is not None else _ADDRESS_PURPOSES)
        shape = (name, category, tuple(chosen))
        kept = _SHAPES.get(shape) if rows and len(value) <= SAFE_VALUE_CHARS else None
        if kept is None:  # else a shape DataRecord accepted, a value short enough: no rebuild
            try:
                record = DataRecord(name, value, category, "provided", now, chosen)
            except ValidationError as exc:
                raise ValidationError(
                    f"field {excerpt(name)} cannot be held: {exc.detail}",
                    code=exc.code,
                    clause=exc.clause,
                    path=f"$.sealed.content.fields.{name}"[:200],
                ) from None
            if len(_SHAPES) >= _SHAPES_MAX:
                _SHAPES.clear()
            kept = _SHAPES[shape] = (record.source, record.purposes)
        source, kept_purposes = kept  # the record's own fields are name, value, category, now
        if categories is None and old is not None:  # an update: held as the value it replaces
            share, expires = old.share, old.expires_ms
        else:
            share, expires = source_msg, expires_ms
        rows.append(held_row(thread, name, value, category, source, now, kept_purposes,
                             share, expires))  # fmt: skip
    return rows


def erased_form(envelope: bytes) -> bytes | None:
    """The erased form (§8.4) of an envelope from our own history — its header and signature,
    the body dropped — or None when it is erased already. The bytes were verified when they
    arrived: they are cut, not opened again."""
    env: dict[str, Any] = _codec.decode_form(envelope)
    if env.get("body") is None:
        return None
    return _codec.pack_sorted({"hdr": env["hdr"], "sig": env["sig"]})


async def erasures(store: Store, thread: bytes, shares: Iterable[bytes]) -> list[Erasure]:
    """The history bodies to erase for ``shares`` of ``thread`` (§12.10-2, §12.10-4): the
    shares' own, and those of the address.updates logged after the first of them.

    An update of a field held from a share is held as that share (§5.3.6-2), so its value goes
    with the share; the update's body, sealed to the vendor, is a copy of that value, and
    §5.3.2-2 deletes every copy. Which fields an update carried is sealed in it, and nothing
    here opens what the vendor stored again: every update after the share goes (§8.4-3 lets a
    party erase any body it no longer needs; what the vendor holds is in its held rows). An
    update logged before the share carries no value of it, nor one logged once its body was
    erased (its data was gone): the updates are looked for only when a share's body is erased
    now, not at each sweep that finds the share expired still.
    """
    out = []
    first: int | None = None
    for share_hash in shares:
        entry = await store.history_entry(thread, share_hash)
        erased = erased_form(entry.envelope) if entry is not None else None
        if entry is not None and erased is not None:
            out.append((thread, share_hash, erased))
            first = entry.index if first is None else min(first, entry.index)
    if first is not None:
        out.extend(await _update_erasures(store, thread, first + 1))
    return out


#: History entries read at a time while looking for a thread's address.updates.
_PAGE = 256


async def _update_erasures(store: Store, thread: bytes, start: int) -> list[Erasure]:
    """The erased forms of the address.updates of ``thread`` from index ``start`` on whose
    bodies are not erased yet."""
    out = []
    while True:
        page = await store.history(thread, start, _PAGE)
        for entry in page:
            kind = _codec.decode_form(entry.envelope).get("type")  # (none once erased)
            if kind == AddressUpdate.TYPE and (erased := erased_form(entry.envelope)):
                out.append((thread, entry.msg_hash, erased))
        if len(page) < _PAGE:
            return out
        start = page[-1].index + 1


async def take_data(
    store: Store,
    step: Step,
    msg: Signed[Any],
    content: FieldsContent | RecordsContent | None,
    now: int,
) -> None:
    """Keep shared fields as held rows; drop withdrawn ones and erase their shares (§12.10)."""
    body, thread = msg.body, msg.thread
    if isinstance(body, DataShare) and isinstance(content, FieldsContent):
        step.held = merge_fields(
            thread, {}, content.fields, source_msg=msg.hash, now=now,
            categories=body.categories, purposes=body.purposes, expires_ms=body.expires,
        )  # fmt: skip
    elif isinstance(body, AddressUpdate) and isinstance(content, FieldsContent):
        previous = {h.field: h for h in await live_held(store, thread, now)}
        step.held = merge_fields(
            thread, previous, content.fields, source_msg=msg.hash, now=now,
            categories=None, purposes=None, expires_ms=None,
        )  # fmt: skip
    elif isinstance(body, DataWithdraw):
        shares = step.rel.pending_withdraws[msg.hash]
        step.held_drop = [(thread, share) for share in shares]
        step.erase.extend(await erasures(store, thread, shares))
        if not body.shares:  # all: what the address.updates gave goes too (§5.3.2-1)
            await _withdraw_updates(store, step, thread, shares)


async def _withdraw_updates(store: Store, step: Step, thread: bytes,
                            shares: Iterable[bytes]) -> None:  # fmt: skip
    """A withdrawal of every share also drops the fields held from address.updates (a field no
    share held before, §12.10-1) and erases every update's body (§5.3.2-1, §12.10-2): what the
    customer gave the vendor, it takes back whole, whatever message carried it."""
    named = set(shares)
    given = sorted({h.share for h in await store.held(thread) if h.share not in named})
    step.held_drop.extend((thread, source) for source in given)
    erasing = {e[1] for e in step.erase}
    step.erase.extend(e for e in await _update_erasures(store, thread, 0) if e[1] not in erasing)
