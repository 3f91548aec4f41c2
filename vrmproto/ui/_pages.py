"""The pages ``vrm ui`` shows (GET): the relationships, one relationship, the forms, a job.

Reading only: nothing here changes the node (the guard lets GET through without the origin
check for that reason).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from aiohttp import web

from vrmproto._keys import fingerprint
from vrmproto._records import to_entry
from vrmproto._state import State
from vrmproto.cli._vendor_holds import holds_ours
from vrmproto.client import Offer, RelationshipView
from vrmproto.client._ledger import ThreadKind
from vrmproto.store import ShareNote
from vrmproto.ui._app import Ui, sse_headers, ui_of
from vrmproto.ui._jobs import Job, stream
from vrmproto.ui._present import STATE_WORDS, TermWords, decode_entry, term_words, when

__all__ = ["Card", "cards", "routes"]


@dataclass(frozen=True, slots=True)
class SharedLine:
    """One live share: what, until when, and whether the vendor has it yet (it is ours once
    signed, §8.1-2; the vendor's once it confirms it)."""

    hash: str
    fields: str
    until: str
    delivered: bool = True


@dataclass(frozen=True, slots=True)
class Card:
    """One relationship as its card shows it."""

    thread: str
    vendor: str
    url: str
    state: str  # the State's value: the mark's CSS class
    state_words: str
    terms: list[TermWords]
    agreement: str
    shares: list[SharedLine]
    last_activity: str
    compared: tuple[str, str] | None  # (identical / behind / ahead / fork / crossing, when)
    pending: int
    last_problem: str
    vendor_fingerprint: str
    your_fingerprint: str


def card(view: RelationshipView, notes: Sequence[ShareNote],
         compared: tuple[str, str] | None, waiting: Collection[bytes] = ()) -> Card:  # fmt: skip
    """``view``'s card; ``waiting``: the hashes of the messages still in the outbox."""
    by_hash = {n.share: n for n in notes}
    shares = []
    for share_hash, expires in view.shares:
        note = by_hash.get(share_hash)
        names = ", ".join(name for name, _ in note.fields) if note else share_hash.hex()[:12]
        shares.append(SharedLine(share_hash.hex(), names, when(expires),
                                 delivered=share_hash not in waiting))  # fmt: skip
    state = State(view.state)
    return Card(
        thread=view.thread.hex(), vendor=view.vendor, url=view.url, state=state.value,
        state_words=STATE_WORDS[state], terms=term_words(view.terms),
        agreement=view.agreement.hex() if view.agreement else "", shares=shares,
        last_activity=when(view.last_activity_ms), compared=compared, pending=view.pending,
        last_problem=view.last_problem, vendor_fingerprint=view.vendor_fingerprint,
        your_fingerprint=fingerprint(view.local_key),
    )  # fmt: skip


async def fresh(ui: Ui) -> None:
    """Have the node read again every relationship changed in the store since a page last
    looked: another ``vrm`` on the same data directory (a command in a terminal, ``vrm agent
    serve``) may have changed it, and the node keeps the relationships it has read (§11.11-2:
    the store is what the processes share). One read of the records; a relationship is read
    again only if its record changed."""
    for record in await ui.agent.store.relationships(with_data=False):
        if ui.seen.get(record.thread) != record.updated_ms:
            ui.node.ledger.forget(record.thread)
            ui.seen[record.thread] = record.updated_ms


async def cards(ui: Ui, views: Sequence[RelationshipView] | None = None) -> list[Card]:
    """Every vendor relationship's card (of ``views``, else read afresh), most recently active
    first."""
    if views is None:
        await fresh(ui)
        views = await ui.agent.relationships()
    notes = await ui.agent.share_notes()
    waiting = await _waiting_hashes(ui)
    return [card(v, [n for n in notes if n.thread == v.thread], ui.agreement.get(v.thread),
                 waiting) for v in views if v.thread_kind is ThreadKind.VENDOR]  # fmt: skip


async def _waiting_hashes(ui: Ui) -> set[bytes]:
    return {item.msg_hash for item in await ui.agent.pending()}


async def index(request: web.Request) -> web.Response:
    ui = ui_of(request)
    await fresh(ui)
    views = await ui.agent.relationships()
    return ui.page(request, "index.html", cards=await cards(ui, views),
                   waiting=sum(v.pending for v in views))  # fmt: skip


async def waiting(ui: Ui) -> int:
    """How many messages wait in the outbox: those signed and queued, and those queued behind
    them, signed in their turn (each card's "N waiting")."""
    return sum(v.pending for v in await ui.agent.relationships())


async def _view(ui: Ui, thread: bytes) -> RelationshipView:
    await fresh(ui)
    for v in await ui.agent.relationships():
        if v.thread == thread:
            return v
    raise web.HTTPNotFound


def _thread(request: web.Request) -> bytes:
    try:
        thread = bytes.fromhex(request.match_info["thread"])
    except ValueError:
        raise web.HTTPNotFound from None
    if len(thread) != 16:
        raise web.HTTPNotFound
    return thread


#: How many history entries a relationship page lists at a time (the latest, unless asked).
HISTORY_PAGE = 100


def _first_listed(request: web.Request, total: int) -> int:
    """The first history index to list: ``?from=N`` if it is one, else the latest page's."""
    latest = max(0, total - HISTORY_PAGE)
    text = request.query.get("from", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return latest
    first = int(text)
    return first if first < total else latest


async def relationship(request: web.Request) -> web.Response:
    """One relationship: its card, its actions, and its history a page at a time (read
    from the store by index: a history of years costs a page's worth per view)."""
    ui = ui_of(request)
    thread = _thread(request)
    view = await _view(ui, thread)
    notes = await ui.agent.share_notes(thread)
    t = await ui.node.ledger.load(thread)
    head = await ui.agent.store.history_head(thread)
    total = head.index + 1 if head is not None else 0
    first = _first_listed(request, total)
    rows = await ui.agent.store.history(thread, first, HISTORY_PAGE)
    by_hash = {n.share: n for n in notes}
    entries = [decode_entry(to_entry(h), t.rel.identity, by_hash) for h in rows]
    return ui.page(
        request, "relationship.html",
        card=card(view, notes, ui.agreement.get(thread), await _waiting_hashes(ui)),
        entries=entries, counter=term_words(t.rel.counter or ()),
        open=State(view.state) not in (State.ENDED, State.REJECTED),
        agreed=State(view.state) is State.AGREED, first=first, total=total,
        holds=await holds_ours(ui.agent, view),
        earlier=max(0, first - HISTORY_PAGE) if first > 0 else None,
        later=first + HISTORY_PAGE if first + len(entries) < total else None,
    )  # fmt: skip


async def evidence(request: web.Request) -> web.Response:
    """The signed history of one relationship, every envelope as it was signed (§8.2): a file
    anyone can check against the spec without this program."""
    ui = ui_of(request)
    thread = _thread(request)
    view = await _view(ui, thread)
    entries = await ui.agent.history(thread)
    doc = {
        "format": "vrm-evidence/1", "vendor": view.vendor, "url": view.url,
        "thread": thread.hex(), "vendor_key": view.peer_key.hex(),
        "your_key": view.local_key.hex(), "state": view.state,
        "entries": [{"index": e.index, "hash": e.msg_hash.hex(), "link": e.link.hex(),
                     "direction": "out" if e.outgoing else "in",
                     "envelope": base64.b64encode(e.envelope).decode()} for e in entries],
    }  # fmt: skip
    name = f"vrm-evidence-{thread.hex()[:12]}.json"
    return web.Response(text=json.dumps(doc, indent=2), content_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


async def address_form(request: web.Request) -> web.Response:
    ui = ui_of(request)
    agreed = [c for c in await cards(ui) if c.state == State.AGREED.value]
    return ui.page(request, "address.html", agreed=agreed)


@dataclass(frozen=True, slots=True)
class PastIntent:
    """An intentcast sent before, and the offers stored for it, cheapest first."""

    intent_id: str
    what: str
    sent: str
    offers: list[Offer]


async def intent_form(request: web.Request) -> web.Response:
    ui = ui_of(request)
    urls = sorted({c.url for c in await cards(ui)})
    past = []
    for record in reversed(await ui.agent.intents()):
        offers = sorted(await ui.agent.offers(record.intent_id),
                        key=lambda o: (o.price.currency, o.price.amount, o.vendor))  # fmt: skip
        past.append(PastIntent(record.intent_id.hex(), record.what, when(record.sent_ms), offers))
    return ui.page(request, "intent.html", known=urls, past=past)


async def connect_form(request: web.Request) -> web.Response:
    ui = ui_of(request)
    return ui.page(request, "connect.html", found=None)


def _job(request: web.Request) -> Job:
    job = ui_of(request).jobs.get(request.match_info["job"])
    if job is None:
        raise web.HTTPNotFound
    return job


def fragment(ui: Ui, job: Job) -> str:
    return ui.render(f"_{job.kind}_rows.html", job=job)


async def job_page(request: web.Request) -> web.Response:
    ui = ui_of(request)
    job = _job(request)
    return ui.page(request, "job.html", job=job, rows=fragment(ui, job))


async def job_events(request: web.Request) -> web.StreamResponse:
    ui = ui_of(request)
    return await stream(request, _job(request), lambda j: fragment(ui, j), sse_headers())


def routes(app: web.Application, p: str) -> None:
    app.router.add_get(p, index)
    app.router.add_get(p + "r/{thread}", relationship)
    app.router.add_get(p + "r/{thread}/evidence", evidence)
    app.router.add_get(p + "address", address_form)
    app.router.add_get(p + "intent", intent_form)
    app.router.add_get(p + "connect", connect_form)
    app.router.add_get(p + "jobs/{job}", job_page)
    app.router.add_get(p + "jobs/{job}/events", job_events)
