"""The customer's data: shares, withdrawals and requests to one vendor (§5.3.1-§5.3.4), and the
address update to every vendor at once (§5.3.6)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import cast

from vrmproto._errors import StateError, TransportError, VrmError
from vrmproto._fields import StrMap, check_fields, specs
from vrmproto._messages import (
    AddressUpdate,
    DataErased,
    DataReturn,
    DataShare,
    DataWithdraw,
    FieldsContent,
    RecordsContent,
)
from vrmproto._state import State
from vrmproto._vocab import DataRecord, parse_category, parse_purpose
from vrmproto.client._agent_base import LIVE, AgentBase
from vrmproto.client._drafts import AddressDraft, DataRequestDraft, ShareDraft, WithdrawDraft
from vrmproto.client._errors import Queued
from vrmproto.client._fanout import FanoutReport, Progress, Target, fan_out
from vrmproto.client._outbox import Delivery
from vrmproto.client._views import Ref
from vrmproto.store import Commit, ShareNote

__all__ = ["DataOps", "Records"]

_AGREED = State.AGREED.value
_LIVE_STATES = tuple(s.value for s in LIVE)  # as stored

#: The rules of a share's or an address update's fields (:class:`FieldsContent`, §5.3.1).
FIELDS = cast("StrMap", specs(FieldsContent)[0][1])
#: The rules of a share's purposes and categories (:class:`DataShare`: 1..16 of each, §5.3.1).
_SHARE_KINDS = {name: kind for name, kind, _ in specs(DataShare)}

#: The purposes and categories of recent shares given by name, and their numbers (§6.6,
#: §6.7): an agent shares under the same few, and parsing them anew cost ~4 µs a share (#12).
#: Only names (``str``) are kept: ``1 == True == 1.0`` would let one number stand for another.
_PARSED: dict[tuple[tuple[object, ...], tuple[object, ...]],
              tuple[tuple[int, ...], tuple[int, ...]]] = {}  # fmt: skip
_PARSED_MAX = 64


def _parse_terms(purposes: Iterable[int | str], categories: Iterable[int | str]
                 ) -> tuple[tuple[int, ...], tuple[int, ...]]:  # fmt: skip
    """The Kantara numbers of ``purposes`` and ``categories`` (:func:`parse_purpose`,
    :func:`parse_category`; ValueError for one unknown, :class:`~vrmproto.ValidationError`
    for none or more than 16)."""
    key = (tuple(purposes), tuple(categories))
    try:
        known = _PARSED.get(key)
    except TypeError:  # unhashable: not a name, which the parse below says as it would
        known = None
    if known is not None:
        return known
    parsed = (tuple(parse_purpose(p) for p in key[0]),
              tuple(parse_category(c) for c in key[1]))  # fmt: skip
    # as the vendor reads them (§5.1-2): none, or more than 16, would be signed and refused
    _SHARE_KINDS["purposes"].load(list(parsed[0]), "$.body.purposes")
    _SHARE_KINDS["categories"].load(list(parsed[1]), "$.body.categories")
    if all(type(x) is str for part in key for x in part):
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


class Records(tuple[DataRecord, ...]):
    """The records a vendor returned (§5.3.4) — a tuple — with :attr:`delivery`, the data
    request's own :class:`Delivery`: its ``earlier`` says what became of the messages that
    waited before the request and went, or were given up, with it."""

    delivery: Delivery

    def __new__(cls, records: Iterable[DataRecord], delivery: Delivery) -> Records:
        self = super().__new__(cls, records)
        self.delivery = delivery
        return self


class DataOps(AgentBase):
    """:meth:`share`, :meth:`withdraw`, :meth:`request_data`, :meth:`update_address`."""

    async def share(
        self,
        ref: Ref,
        fields: Mapping[str, str],
        *,
        purposes: Iterable[int | str],
        categories: Iterable[int | str],
        expires_ms: int,
        timeout_s: float | None = None,
    ) -> Delivery:
        """Share ``fields`` with one vendor under the agreement, sealed to it (§5.3.1).

        ``purposes`` and ``categories`` are Kantara numbers or names (§6.6, §6.7);
        ``expires_ms`` is when the vendor must delete the data (ms since the epoch). The
        delivery's ``msg_hash`` names the share for :meth:`withdraw`. ``timeout_s`` bounds the
        whole wait for the vendor, every request and retry: a share not delivered by then is
        ``queued``, kept in the outbox.

        Fields the vendor would refuse (none, more than 64, a value over 4096 characters:
        §5.3.1, §5.1-2), and no purpose or category or more than 16, raise
        :class:`~vrmproto.ValidationError` before anything is sealed or stored.
        """
        FIELDS.check(fields, "$.fields")
        numbers, kinds = _parse_terms(purposes, categories)
        draft = ShareDraft(msg_id=self.random_id(), fields=dict(fields), purposes=numbers,
                           categories=kinds, expires=expires_ms)  # fmt: skip
        # The note is stored with the share, as queued, and confirmed by the Commit that
        # stores the vendor's receipt (Outbox._close).
        return await self._send(ref, draft, timeout_s=timeout_s)

    async def share_notes(self, ref: Ref | None = None) -> list[ShareNote]:
        """What we shared, with whom, until when (every relationship's, or ``ref``'s), oldest
        first: the notes stored with each share (the shares themselves are sealed)."""
        thread = await self.resolve(ref) if ref is not None else None
        return await self.store.share_notes(thread)

    async def _update_notes(self, thread: bytes, shares: set[bytes], *, status: str | None = None,
                            withdrawn_ms: int | None = None) -> None:  # fmt: skip
        notes = [n for n in await self.store.share_notes(thread) if n.share in shares]
        changed = tuple(replace(n, status=status or n.status,
                                withdrawn_ms=withdrawn_ms or n.withdrawn_ms) for n in notes)
        if changed:
            await self.store.commit(Commit(share_notes=changed))

    async def withdraw(
        self, ref: Ref, shares: Iterable[bytes] = (), *, reason: str | None = None,
        timeout_s: float | None = None,
    ) -> Delivery:
        """Withdraw consent for some shares (all if none are named); the vendor confirms
        with data.erased (§5.3.2). ``timeout_s`` bounds the whole wait, as for :meth:`share`."""
        named = tuple(shares)
        check_fields(DataWithdraw, "$.body", shares=named, reason=reason)  # before it is signed
        d = await self._send(ref, WithdrawDraft(msg_id=self.random_id(), shares=named,
                                                reason=reason), timeout_s=timeout_s)  # fmt: skip
        erased = {h for b in d.reply_bodies() if isinstance(b, DataErased) for h in b.shares}
        if erased:  # the vendor confirmed the deletion, signed (§5.3.2)
            await self._update_notes(d.thread, erased, withdrawn_ms=self.clock())
        return d

    async def request_data(self, ref: Ref, *, timeout_s: float | None = None) -> Records:
        """Ask the vendor for what it holds about us; the records it returns (§5.3.4, §6.8),
        with the request's delivery (:class:`Records`). ``timeout_s`` bounds the whole wait, as
        for :meth:`share`.

        Raises :class:`Queued` if the request could not be delivered now (the answer will be
        in the history once it is). No records means the vendor answered later, not in the
        same exchange.
        """
        d = await self._send(ref, DataRequestDraft(msg_id=self.random_id()), timeout_s=timeout_s)
        if d.status == "queued":
            raise Queued("the data request waits in the outbox",
                         cause=d.error if isinstance(d.error, TransportError) else None,
                         delivery=d)
        for r in d.replies:
            if isinstance(r.message.body, DataReturn) and isinstance(r.content, RecordsContent):
                return Records(r.content.records, d)
        return Records((), d)

    async def update_address(
        self,
        fields: Mapping[str, str],
        *,
        progress: Progress | None = None,
        concurrency: int | None = None,
        timeout_s: float | None = None,
        only_held: bool = False,
    ) -> FanoutReport:
        """Send new contact details to every vendor we have an agreement with, at once (§5.3.6).

        Each vendor gets its own sealed copy. Every copy is stored in the outbox, in one
        commit, before the first is sent (§12.7-5), so a crash mid-way leaves the rest to
        :meth:`run_outbox`; vendors that cannot be reached now stay ``queued`` there too.
        Fields no vendor would accept raise :class:`~vrmproto.ValidationError` first, as in
        :meth:`share`.

        ``only_held``: each vendor gets only the fields it holds from a live share of ours,
        and a vendor that holds none of them gets nothing (:attr:`FanoutReport.skipped`): a
        field an update gives a vendor that never had it is held from the update, without
        expiry (§12.10-1), where a share would have had purposes and an expiry.
        """
        FIELDS.check(fields, "$.fields")
        live = await self._ours(states=_LIVE_STATES)  # an index, not a scan
        replaced = await self.superseded(live)  # a vendor's new key accepted: its old one held
        records = [r for r in live if r.state == _AGREED and r.thread not in replaced]
        given = {r.thread: dict(fields) for r in records}
        skipped: list[Target] = []
        if only_held:
            held = await self._held_fields()
            given = {t: {k: v for k, v in f.items() if k in held.get(t, ())}
                     for t, f in given.items()}  # fmt: skip
            skipped = [Target(r.label, r.peer_url, r.thread) for r in records
                       if not given[r.thread]]  # fmt: skip
            records = [r for r in records if given[r.thread]]
        unsigned: dict[bytes, VrmError] = {}
        for r in records:  # a vendor that receives no address.update fails alone (§13.1-10)
            try:
                await self._check_type(r.thread, AddressUpdate.TYPE)
            except StateError as exc:
                unsigned[r.thread] = exc
        drafts = {r.thread: AddressDraft(msg_id=self.random_id(), fields=given[r.thread])
                  for r in records if r.thread not in unsigned}  # fmt: skip
        unsigned.update(await self.outbox.enqueue(list(drafts.items())))

        async def job(thread: bytes) -> Delivery:
            if thread in unsigned:
                raise unsigned[thread]
            return await self.outbox.deliver(thread, drafts[thread], timeout_s=timeout_s,
                                             retry=self.fanout_retry)

        targets = [(Target(r.label, r.peer_url, r.thread), r.thread) for r in records]
        report = await fan_out(targets, job, concurrency=concurrency or self.concurrency,
                               progress=progress)  # fmt: skip
        return replace(report, skipped=tuple(skipped)) if skipped else report

    async def _held_fields(self) -> dict[bytes, frozenset[str]]:
        """Per thread, the names of the fields a vendor holds from a live share of ours: the
        notes of shares delivered or waiting, neither withdrawn nor expired."""
        now = self.clock()
        held: dict[bytes, set[str]] = {}
        for note in await self.store.share_notes():
            if (note.withdrawn_ms is None and note.expires_ms > now
                    and note.status in ("confirmed", "queued")):  # fmt: skip
                held.setdefault(note.thread, set()).update(name for name, _ in note.fields)
        return {t: frozenset(names) for t, names in held.items()}
