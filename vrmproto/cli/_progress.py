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
from vrmproto.cli._output import Out, brief, table
from vrmproto.client import Delivery, FanoutReport, ProgressEvent

__all__ = ["FanoutDisplay"]

_MARKS = {
    "started": "[cyan]… sending[/]",
    "confirmed": "[green]✓ confirmed[/]",
    "queued": "[yellow]⏸ queued[/] (will retry)",
    "refused": "[red]✗ refused[/]",
    "failed": "[red]✗ failed[/]",
}


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

    def __enter__(self) -> FanoutDisplay:
        if self.out.live:
            self._live = Live(self._render(), console=self.out.console, refresh_per_second=12)
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
        vendor = self.names.get(ev.url.rstrip("/"), ev.vendor)
        self.rows[ev.index] = [vendor, _MARKS[ev.stage], detail]
        self._refresh()
        if self._live is None and ev.stage != "started":
            line = f"  {_MARKS[ev.stage]}  {vendor}"
            self.out.print(line + (f" — {detail}" if detail else ""))
        if ev.stage == "confirmed" and self.answers and ev.delivery is not None:
            self._answer(ev.index, ev.delivery)

    def _answer(self, index: int, d: Delivery) -> None:
        """Show the answer that came with the branch's receipt (verified when it arrived)."""
        text = ""
        for body in reversed(d.reply_bodies()):
            if isinstance(body, IntentOffer):
                text = f"offer: {body.description} — {body.price}"
                break
            if isinstance(body, IntentDecline):
                text = f"declined: {body.reason}"
                break
        if not text:
            return
        row = self.rows.get(index)
        if row is not None:
            row[2] = text
        self._refresh()
        if self._live is None:
            vendor = row[0] if row else ""
            self.out.print(f"      {vendor}: {text}")

    @staticmethod
    def final_table(report: FanoutReport, title: str) -> Table:
        t = table(title, "vendor", "result", "detail", "time")
        for r in report.results:
            detail: Any = r.code or (brief(r.detail) if r.status != "confirmed" else
                                     "receipt verified")
            t.add_row(r.vendor, _MARKS[r.status], str(detail), f"{r.elapsed_s * 1000:.0f} ms")
        return t
