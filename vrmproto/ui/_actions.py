"""What the page's buttons do (POST): every handler drives the node's public API.

The guard has checked the token, ``Host`` and origin before any of these runs. Each action
ends in a redirect (303) to the page that shows its outcome, with a one-time message; a refusal
or failure is that message, never a stack trace. The change of address and the intentcast
start a :class:`~vrmproto.ui._jobs.Job` the page then follows live.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDictProxy

from vrmproto._errors import VrmError
from vrmproto._messages import IntentDecline, Money, RelationshipEnd
from vrmproto._state import State
from vrmproto.cli._common import took_up
from vrmproto.cli._currencies import check_currency
from vrmproto.cli._errors import explain, vendor_sent
from vrmproto.cli._output import waits_because
from vrmproto.cli._parse import fields_problem, intentcast_problem, text_problem
from vrmproto.cli._vendor_holds import erased_of, holds_ours
from vrmproto.client import ConnectResult, Delivery, ProgressEvent, Queued
from vrmproto.client._ledger import ThreadKind
from vrmproto.ui._app import Flash, Ui, form_of, ui_of
from vrmproto.ui._jobs import Job, Row, brief, log
from vrmproto.ui._pages import _thread, fresh, waiting
from vrmproto.ui._present import STATE_WORDS, records_rows

__all__ = ["delivered", "routes"]

DAY_MS = 86_400_000

#: What each connect outcome says on the relationship's page.
CONNECT_WORDS = {
    "accepted": "{vendor} agreed to your terms.",
    "countered": "{vendor} countered: it would agree to other terms (below). Accept or decline.",
    "rejected": "{vendor} refused your terms: {reason}",
    "queued": "{vendor} could not be reached: your offer waits in the outbox.",
    "pending": "{vendor} received your offer and has not answered yet.",
}

Form = MultiDictProxy[str | Any]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _fields(text: str) -> dict[str, str]:
    """``name = value`` (or ``name: value``) lines as data fields; ValueError names a bad one."""
    out: dict[str, str] = {}
    for line in _lines(text):
        name, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"{line!r}: write each field as name = value")
        out[name.strip()] = value.strip()
    if not out:
        raise ValueError("give at least one field, as name = value")
    if (problem := fields_problem(out)) is not None:
        raise ValueError(problem)
    return out


def _date_ms(text: str, *, end_of_day: bool = False) -> int | None:
    """A day of the form (UTC) in ms: its first millisecond, or its last with ``end_of_day``
    (an intentcast "until" a day includes that day, as ``vrm intentcast --to`` does)."""
    if not text.strip():
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a date: write it as YYYY-MM-DD") from None
    moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    if end_of_day:
        moment += dt.timedelta(days=1, milliseconds=-1)
    return int(moment.timestamp() * 1000)


def why(exc: BaseException) -> str:
    """Why an action failed, in the words ``vrm`` uses: whose side broke a rule (ours: nothing
    was sent; the vendor's answer), a vendor that could not be reached, a refusal."""
    if isinstance(exc, VrmError):
        return explain(exc).message
    return str(exc) or type(exc).__name__


def _connect_flash(result: ConnectResult) -> Flash:
    if result.existing:  # one relationship per vendor: nothing was sent (Agent.connect)
        return Flash(f"You already have a relationship with {result.vendor} "
                     f"({result.status}): nothing was sent. End it to proffer other terms.")
    text = CONNECT_WORDS[result.status].format(vendor=result.vendor, reason=result.reason)
    return Flash(text, error=result.status == "rejected")


async def _acting(ui: Ui, back: str, act: Callable[[], Awaitable[Flash | str]]) -> web.Response:
    """Run ``act``; back to ``back`` with what it says, or with why it failed."""
    try:
        said = await act()
    except (VrmError, LookupError, ValueError) as exc:
        return ui.redirect(back, Flash(why(exc), error=True))
    return ui.redirect(back, said if isinstance(said, Flash) else Flash(said))


async def connect(request: web.Request) -> web.Response:
    ui = ui_of(request)
    form = await form_of(request)
    url = str(form.get("url", "")).strip()
    key = str(form.get("key", "")) or None
    if not url.startswith(("http://", "https://")):
        return ui.redirect("connect", Flash("give the vendor's address: http://… or https://…",
                                            error=True))  # fmt: skip
    try:  # a document that breaks a rule is the vendor's InvalidResponse (PeerRuleError)
        result = await ui.agent.connect(url, expected_key=bytes.fromhex(key) if key else None)
    except (VrmError, LookupError, ValueError) as exc:
        return ui.redirect("connect", Flash(why(exc), error=True))
    return ui.redirect(f"r/{result.thread.hex()}", _connect_flash(result))


async def discover(request: web.Request) -> web.Response:
    """Look for vendors on the local network (§13.2) and list them to connect to."""
    from vrmproto.discovery import browse  # noqa: PLC0415 -- zeroconf only when asked

    ui = ui_of(request)
    try:
        found = await browse(3.0)
    except OSError as exc:
        return ui.redirect("connect", Flash(f"local discovery is unavailable: {exc}", error=True))
    return ui.page(request, "connect.html", found=found)


def _relationship_actions(ui: Ui, thread: bytes, form: Form
                          ) -> Mapping[str, Callable[[], Awaitable[Flash | str]]]:  # fmt: skip
    agent = ui.agent

    async def accept_counter() -> Flash:
        return _connect_flash(await agent.accept_counter(thread))

    async def decline_counter() -> str:
        await fresh(ui)  # another tab, or another vrm, may have answered it meanwhile
        state = (await ui.node.ledger.load(thread)).rel.state
        if state is not State.COUNTERED:  # decline_counter would end it in any state
            raise ValueError(f"There is no counter-offer to decline: the relationship is "
                             f"{STATE_WORDS[state]}.")  # fmt: skip
        await agent.decline_counter(thread)
        return "You declined the counter-offer: the relationship is ended."

    async def compare() -> Flash:
        with vendor_sent("the vendor's copy of the history"):  # §8.3-2
            div = await agent.compare_history(thread)
        _noted(ui, thread, "identical" if div is None else div.kind)
        if div is None:
            return Flash("Identical: the vendor's copy has the same entries, every link and "
                         "signature verified.")  # fmt: skip
        return Flash(f"The histories part at entry {div.index} ({div.kind}).", error=True)

    async def reconcile() -> Flash:
        with vendor_sent("the vendor's copy of the history"):
            done = await agent.reconcile(thread)
        _noted(ui, thread, {"equal": "identical", "adopted": "identical"}.get(done.kind,
                                                                              done.kind))
        return Flash(f"Reconciled: {done.kind}, {done.adopted} entries adopted.",
                     error=done.kind == "fork")  # fmt: skip

    async def request_data() -> Flash:
        try:
            records = await agent.request_data(thread)
        except Queued:
            return Flash("The request waits in the outbox; the answer will be in the history.")
        return Flash(f"The vendor holds {len(records)} records about you.",
                     records=tuple(records_rows(records)))  # fmt: skip

    async def rotate() -> str:
        d = await agent.rotate_key(thread)
        return "Your key in this relationship was rotated." + _queued(d)

    async def end() -> str:
        if form.get("sure") != "yes":
            raise ValueError("tick the box to confirm you want to end the relationship")
        reason = str(form.get("reason", "")).strip() or None
        if reason is not None and (problem := text_problem(reason, RelationshipEnd,
                                                           "reason")) is not None:  # fmt: skip
            raise ValueError(f"the reason: {problem}")
        view = next(v for v in await agent.relationships() if v.thread == thread)
        choice = form.get("data")
        if await holds_ours(agent, view):  # (§5.6.4-2)
            if choice not in ("withdraw", "keep"):
                raise ValueError("the vendor holds what you gave it: say whether to delete it "
                                 "first or leave it with the vendor")  # fmt: skip
            if choice == "withdraw":
                w = await agent.withdraw(thread, reason=reason)
                if w.status != "confirmed" or erased_of(w) is None:
                    return ("Not ended: the vendor has not confirmed the deletion, which it "
                            "could not do after the end." + _queued(w))  # fmt: skip
        d = await agent.end(thread, reason)
        return "The relationship is ended." + _queued(d)

    return {"accept-counter": accept_counter, "decline-counter": decline_counter,
            "compare": compare, "reconcile": reconcile, "request": request_data,
            "rotate": rotate, "end": end, "share": lambda: _share(ui, thread, form),
            "withdraw": lambda: _withdraw(ui, thread, form)}  # fmt: skip


def _noted(ui: Ui, thread: bytes, kind: str) -> None:
    """Keep what a comparison found, for the card (identical / behind / ahead / fork / …)."""
    ui.agreement[thread] = (kind, dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC"))


async def compare_all(request: web.Request) -> web.Response:
    """Compare our history with each vendor's copy, every relationship at once (§8.3)."""
    ui = ui_of(request)
    views = [v for v in await ui.agent.relationships() if v.thread_kind is ThreadKind.VENDOR]

    async def one(thread: bytes) -> str:
        try:
            div = await ui.agent.compare_history(thread)
        except (VrmError, LookupError) as exc:
            _noted(ui, thread, f"not compared: {why(exc)}")
            return "failed"
        _noted(ui, thread, "identical" if div is None else div.kind)
        return "identical" if div is None else "differ"

    found = await asyncio.gather(*(one(v.thread) for v in views))
    text = (f"Compared {len(found)}: {found.count('identical')} identical, "
            f"{found.count('differ')} differ, {found.count('failed')} could not be compared.")
    return ui.redirect("", Flash(text, error=len(found) != found.count("identical")))


def _queued(d: Delivery) -> str:
    """What a queued delivery waits for, as ``vrm`` says it: not always an unreachable vendor
    (it may have answered "not now", or the message waits behind an earlier one)."""
    return f" It waits in the outbox: {waits_because(d.error)}." if d.status == "queued" else ""


async def _share(ui: Ui, thread: bytes, form: Form) -> str:
    fields = _fields(str(form.get("fields", "")))
    days_text = str(form.get("days", "30")).strip() or "30"
    days = int(days_text) if days_text.isascii() and days_text.isdigit() else 0
    if not 1 <= days <= 3650:
        raise ValueError("keep it for a whole number of days, from 1 to 3650")
    purposes = _lines(str(form.get("purposes", "")).replace(",", "\n"))
    if not purposes:  # the vendor would refuse it: "invalid_field: must hold 1..16 items"
        raise ValueError("give at least one purpose the vendor may use it for, "
                         "e.g. core-function")  # fmt: skip
    categories = _lines(str(form.get("categories", "")).replace(",", "\n"))
    if not categories:  # the same: "must hold 1..16 items" (§5.1-2)
        raise ValueError("give at least one category of the data, e.g. contact")
    d = await ui.agent.share(
        thread, fields, purposes=purposes, categories=categories,
        expires_ms=ui.agent.clock() + days * DAY_MS,
    )  # fmt: skip
    return f"Shared {', '.join(fields)} for {days} days." + _queued(d)


async def _withdraw(ui: Ui, thread: bytes, form: Form) -> str:
    """The shares ticked; none ticked: those the page listed (``shown``), never one shared
    since (in another tab, by another ``vrm``) that the person was not shown; ``all``: the
    button that says so, every share and what address updates gave (§5.3.2-1)."""
    ticked = [] if form.get("all") == "yes" else (form.getall("share", [])
                                                  or form.getall("shown", []))  # fmt: skip
    shares = [bytes.fromhex(str(h)) for h in ticked]
    d = await ui.agent.withdraw(thread, shares)
    erased = d.confirmed and any(getattr(b, "shares", None) for b in d.reply_bodies())
    said = "Withdrawn: the vendor confirmed it erased the data." if erased else "Withdrawn."
    return said + _queued(d)


async def act(request: web.Request) -> web.Response:
    ui = ui_of(request)
    thread = _thread(request)
    form = await form_of(request)
    action = _relationship_actions(ui, thread, form).get(request.match_info["action"])
    if action is None:
        raise web.HTTPNotFound
    return await _acting(ui, f"r/{thread.hex()}", action)


def delivered(ui: Ui, d: Delivery) -> None:
    """Tell every job following ``d``'s thread what the outbox did with it."""
    detail = str(d.error) if d.error is not None else ""
    for job in ui.jobs.all():
        job.delivered(d.thread, d.status, detail, d.msg_hash)


async def run_outbox(request: web.Request) -> web.Response:
    """Deliver everything waiting now, without waiting for its retry time."""
    ui = ui_of(request)
    form = await form_of(request)
    back = str(form.get("back", ""))
    if back and not (back.startswith("jobs/") and back[5:].isalnum()):
        back = ""
    pending = await ui.agent.pending()
    due = max((i.next_attempt_ms for i in pending), default=0)
    outcome = await ui.agent.run_outbox(max(due, ui.agent.clock()))
    for d in outcome.deliveries:
        delivered(ui, d)
    delivered_now = outcome.counts().get("confirmed", 0)
    return ui.redirect(back, Flash(f"Outbox: {delivered_now} delivered, "
                                   f"{await waiting(ui)} still waiting."))  # fmt: skip


def _why_stopped(job: Job, exc: Exception) -> str:
    """Why a job's operation failed as a whole, for its page; a failure we did not foresee
    is logged with its traceback too."""
    if not isinstance(exc, VrmError):
        log.warning("the page's %s failed: %s", job.kind, exc, exc_info=exc)
    return why(exc)


async def address(request: web.Request) -> web.Response:
    ui = ui_of(request)
    form = await form_of(request)
    try:
        fields = _fields(str(form.get("fields", "")))
    except ValueError as exc:
        return ui.redirect("address", Flash(str(exc), error=True))
    agreed = [v for v in await ui.agent.relationships()
              if v.thread_kind is ThreadKind.VENDOR and State(v.state) is State.AGREED]
    if not agreed:  # (update_address would send nothing, and the job would say "Done.")
        return ui.redirect("address", Flash("You have no agreement with any vendor yet: nothing "
                                             "was sent. Connect to a vendor first.",
                                             error=True))  # fmt: skip
    job = ui.jobs.new("address", "Change of address",
                      [Row(v.vendor, v.url, thread=v.thread) for v in agreed])  # fmt: skip

    async def go() -> None:
        try:
            await ui.agent.update_address(fields, progress=job.progress)
        except Exception as exc:  # whatever it was, the page says it stopped
            job.ended(_why_stopped(job, exc))
        else:
            job.ended()

    ui.jobs.spawn(go())
    return ui.redirect(f"jobs/{job.id}")


#: What the intentcast form calls each field, for a value too long to send.
_INTENT_LABELS = {"what": "what you want", "where": "where", "constraints": "a constraint",
                  "memberships": "a membership"}  # fmt: skip


def _vendor_url(text: str) -> str:
    """A vendor's base URL as the intentcast form gives it; ValueError if it is none."""
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text.strip()!r} is not a vendor's address: http://… or https://…")
    return url


def _intent_args(form: Form) -> dict[str, Any]:
    """The intentcast of the form, checked as ``vrm intentcast`` checks its options (§5.4.1):
    ValueError says what to change, and nothing is sent."""
    what = str(form.get("what", "")).strip()
    if not what:
        raise ValueError("say what you want")
    price, currency = str(form.get("max_price", "")).strip(), str(form.get("currency", "USD"))
    where = str(form.get("where", "")).strip() or None
    memberships = _lines(str(form.get("memberships", "")))
    constraints = _lines(str(form.get("constraints", "")))
    problem = intentcast_problem(what, where=where, constraints=constraints,
                                 memberships=memberships, labels=_INTENT_LABELS)  # fmt: skip
    if problem is not None:
        raise ValueError(problem)
    start, end = _date_ms(str(form.get("start", ""))), _date_ms(str(form.get("end", "")),
                                                                 end_of_day=True)  # fmt: skip
    if start is not None and end is not None and end < start:  # §5.4.1-2
        raise ValueError("“until” is before “from”")
    wait = str(form.get("wait", "")).strip() or "10"
    if not (wait.isascii() and wait.isdigit()):
        raise ValueError("wait for answers a whole number of seconds, from 1 to 300")
    vendors = [str(v) for v in form.getall("vendor", [])] + _lines(str(form.get("more", "")))
    if not vendors:
        raise ValueError("choose at least one vendor to ask")
    return {
        "what": what, "vendors": list(dict.fromkeys(_vendor_url(v) for v in vendors)),
        "where": where, "start": start, "end": end,
        "max_price": (Money.parse(price, check_currency(currency.strip() or "USD"))
                      if price else None),
        "memberships": memberships, "constraints": constraints,
        "deadline_ms": max(1, min(300, int(wait))) * 1000,
    }  # fmt: skip


async def _offers_of(ui: Ui, job: Job, d: Delivery) -> None:
    """A vendor answered the intentcast: rank every offer stored so far, note a decline."""
    t = await ui.node.ledger.load(d.thread)
    job.intent_id = t.meta.intent_id
    row = job.row(t.url, d.thread)
    if row is not None:  # the vendor's name, now that its signed document said it
        row.vendor = t.meta.name
    for b in d.reply_bodies():
        if isinstance(b, IntentDecline) and (t.meta.name, b.reason) not in job.declines:
            job.declines.append((t.meta.name, b.reason))
    offers = await ui.agent.offers(job.intent_id)
    job.offers = sorted(offers, key=lambda o: (o.price.currency, o.price.amount, o.vendor))
    job.changed()


async def intent(request: web.Request) -> web.Response:
    ui = ui_of(request)
    try:
        args = _intent_args(await form_of(request))
    except ValueError as exc:
        return ui.redirect("intent", Flash(str(exc), error=True))
    job = ui.jobs.new("intent", f"Intentcast: {args['what']}",
                      [Row(u, u.rstrip("/")) for u in args["vendors"]])  # fmt: skip

    def progress(event: ProgressEvent) -> None:
        job.progress(event)
        if event.delivery is not None and event.delivery.confirmed:  # its offers are stored
            ui.jobs.spawn(_offers_of(ui, job, event.delivery))

    async def go() -> None:
        try:
            result = await ui.agent.intentcast(progress=progress, **args)
            job.intent_id, job.declines = result.intent_id, list(result.declines)
            for url, reason in result.skipped:  # not asked: no progress tells of them
                row = job.row(url.rstrip("/"))
                if row is not None and row.status == "waiting":
                    row.status, row.detail = "not asked", brief(reason)
            job.offers = sorted(result.offers, key=lambda o: (o.price.currency, o.price.amount,
                                                              o.vendor))  # fmt: skip
        except Exception as exc:  # whatever it was, the page says it stopped
            job.ended(_why_stopped(job, exc))
        else:
            job.ended()

    ui.jobs.spawn(go())
    return ui.redirect(f"jobs/{job.id}")


async def take_offer(request: web.Request) -> web.Response:
    ui = ui_of(request)
    form = await form_of(request)
    try:
        intent_id, chosen = bytes.fromhex(str(form["intent"])), bytes.fromhex(str(form["offer"]))
    except (KeyError, ValueError):
        raise web.HTTPBadRequest from None
    offers = [o for o in await ui.agent.offers(intent_id) if o.hash == chosen]
    if not offers:
        return ui.redirect("intent", Flash("that offer is not one of yours", error=True))
    try:
        result = await ui.agent.take_offer(offers[0])
    except (VrmError, LookupError, ValueError) as exc:
        return ui.redirect("intent", Flash(why(exc), error=True))
    back = f"r/{result.thread.hex()}"
    if not result.existing:
        return ui.redirect(back, _connect_flash(result))
    if await took_up(ui.agent, result.thread, offers[0].hash):
        return ui.redirect(back, Flash(f"You took up this offer earlier, in this relationship "
                                       f"({result.status})."))  # fmt: skip
    return ui.redirect(back, Flash(  # the vendor was not told: no message names the offer
        f"The offer was not taken up: you already have a relationship with {result.vendor}, "
        f"and {result.vendor} was not told. End it first to take up the offer in a new one.",
        error=True))  # fmt: skip


def routes(app: web.Application, p: str) -> None:
    app.router.add_post(p + "connect", connect)
    app.router.add_post(p + "connect/discover", discover)
    app.router.add_post(p + "r/{thread}/{action}", act)
    app.router.add_post(p + "outbox/run", run_outbox)
    app.router.add_post(p + "compare-all", compare_all)
    app.router.add_post(p + "address", address)
    app.router.add_post(p + "intent", intent)
    app.router.add_post(p + "offers/take", take_offer)
