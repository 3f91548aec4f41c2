"""Live progress for the many-vendors-at-once commands (address update, intentcast).

On a terminal, a table redrawn as each vendor's branch starts and ends; elsewhere (a pipe, a
test), one line per outcome, as it happens. In JSON mode nothing is drawn.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.live import Live
from rich.table import Table

from vrmproto._messages import IntentDecline, IntentOffer
from vrmproto.cli._output import Out, brief, held, safe, table
from vrmproto.client import Delivery, FanoutReport, ProgressEvent

__all__ = ["FanoutDisplay"]

_MARKS = {
    "started": "[cyan]… sending[/]",
    "confirmed": "[green]✓ confirmed[/]",
    "queued": "[yellow]⏸ queued[/] (will retry)",
    "refused": "[red]✗ refused[/]",
    "failed": "[red]✗ failed[/]",
}
#: A message held until the person acts (the vendor now answers with another key): queued, but
#: not retried (§11.10-1).
_HELD = "[red]⏸ held[/] (not retried)"


def _mark(stage: str, detail: str) -> str:
    return _HELD if stage == "queued" and held(detail) else _MARKS[stage]


class FanoutDisplay:
    """Receives :class:`~vrmproto.client.ProgressEvent` s and shows them.

    With ``answers``, a confirmed intentcast branch shows the vendor's answer that came with
    its receipt (the offer or the decline), as it arrives.
    """

    def __init__(
        self,
        out: Out,
        title: str,
        *,
        answers: bool = False,
        names: dict[str, str] | None = None,
    ) -> None:
        self.out = out
        self.names = names or {}
        self.title = title
        self.answers = answers
        self.rows: dict[int, list[str]] = {}
        self._live: Live | None = None
        #: what was printed line by line (no live table, which gives way to the command's own
        #: summary): the declines, as (vendor, reason), and the URLs of the branches that ended
        #: without a receipt. The summary leaves these out: each was said twice on a pipe.
        self.shown_declines: set[tuple[str, str]] = set()
        self.shown_ends: set[str] = set()
        #: the URLs of the branches whose outcome was printed as a line (off a terminal)
        self.said: set[str] = set()

    def __enter__(self) -> FanoutDisplay:
        if self.out.live:
            # transient: the live table gives way to the command's final table (printed once)
            self._live = Live(self._render(), console=self.out.console, refresh_per_second=12,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def _render(self) -> Table:
        t = table(self.title, "vendor", "status", "detail")
        for _, row in sorted(self.rows.items()):
            t.add_row(*row)
        return t

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def event(self, ev: ProgressEvent) -> None:
        """The fan-out's progress callback."""
        if self.out.json_mode:
            return
        detail = brief(ev.detail) if ev.stage in ("queued", "refused", "failed") else ""
        # the name the branch learnt (an intentcast's discovery) over the one we started with
        learnt = ev.vendor if ev.vendor != ev.url else None
        vendor = learnt or self.names.get(ev.url.rstrip("/"), ev.vendor)
        mark = _mark(ev.stage, ev.detail)
        declined = None
        if ev.stage == "confirmed" and self.answers and ev.delivery is not None:
            mark, detail, declined = _answer(ev.delivery)  # a decline is not a "✓ confirmed"
        self.rows[ev.index] = [safe(vendor), mark, safe(detail)]
        self._refresh()
        if self._live is None and ev.stage != "started":
            if declined is not None:  # as the summary says it: "NAME declined: reason"
                self.out.print(f"  [dim]— {safe(vendor)} declined: {safe(declined)}[/]")
                self.shown_declines.add((vendor, declined))
            else:
                self.out.print(f"  {mark}  {safe(vendor)}"
                               + (f" — {safe(detail)}" if detail else ""))  # fmt: skip
            self.said.add(ev.url)
            if ev.stage != "confirmed":
                self.shown_ends.add(ev.url)

    @staticmethod
    def final_table(report: FanoutReport, title: str) -> Table:
        t = table(title, "vendor", "result", "detail", "time")
        for r in report.results:
            detail: Any = r.code or (brief(r.detail) if r.status != "confirmed" else
                                     "receipt verified")
            t.add_row(safe(r.vendor), _mark(r.status, r.detail), safe(detail),
                      f"{r.elapsed_s * 1000:.0f} ms")
        return t


def _answer(d: Delivery) -> tuple[str, str, str | None]:
    """The mark and words for the answer that came with an intentcast branch's receipt
    (verified when it arrived): an offer, a decline (and its reason), or only the receipt."""
    for body in reversed(d.reply_bodies()):
        if isinstance(body, IntentOffer):
            return "[green]✓ offer[/]", f"offer: {body.description} — {body.price}", None
        if isinstance(body, IntentDecline):
            return "[dim]– declined[/]", f"declined: {body.reason}", body.reason
    return _MARKS["confirmed"], "no answer yet", None
