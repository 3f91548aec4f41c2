"""Output for people and for scripts: rich tables by default, stable JSON with ``--json``.

Every command builds one JSON-able result; :class:`Out` either prints it as JSON (keys are part
of the command line's interface and do not change between releases) or hands it to the
command's human renderer. Hashes and keys are shown shortened for people, in full in JSON.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vrmproto._errors import TransportError
from vrmproto._messages import Money
from vrmproto._vocab import DataRecord, TermRef, category_label, get_term, purpose_label
from vrmproto.cli._errors import printable
from vrmproto.cli._parse import format_time, term_spec
from vrmproto.cli._streams import json_text
from vrmproto.client._delivery import Delivery
from vrmproto.client._held import HELD
from vrmproto.client._http import unreachable_words

__all__ = [
    "Out",
    "held",
    "money_json",
    "printable",
    "queued_line",
    "record_json",
    "refused_line",
    "safe",
    "short",
    "term_json",
    "terms_text",
    "waits_because",
    "why_queued",
]

YOU = "⊂"
THEM = "⊃"


class Out:
    """Where a command writes: JSON on stdout, or rich text on stdout (errors go to stderr)."""

    def __init__(self, *, json_mode: bool, console: Console | None = None) -> None:
        self.json_mode = json_mode
        self.console = console or Console(highlight=False)

    def json(self, data: Any) -> None:
        click.echo(json_text(data, indent=2))

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.json_mode:
            self.console.print(*objects, **kwargs)

    def note(self, text: str) -> None:
        """A side remark for people: on stderr in JSON mode, so stdout stays parseable."""
        if self.json_mode:
            click.echo(printable(text), err=True)
        else:
            self.console.print(text, style="dim")

    @property
    def live(self) -> bool:
        """True when the terminal can redraw (live progress); else print line by line."""
        return not self.json_mode and self.console.is_terminal and sys.stdout.isatty()


def safe(text: object) -> str:
    """``text`` for rich to print as it is: :func:`printable`, and never read as markup.

    Whatever others wrote — a vendor's name, a refusal's reason, a problem's detail, an offer's
    words, a returned record, a name zeroconf announced — and whatever the person typed is
    shown through this: rich reads ``[…]`` as markup, so ``[/]`` in a vendor's name stopped
    every command that showed it (``MarkupError``), and ``[link=…]`` made it a hyperlink to
    wherever the vendor liked."""
    return escape(printable(text))


def short(data: bytes, n: int = 12) -> str:
    return data.hex()[:n]


def table(title: str | None = None, *columns: str) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", show_lines=False)
    for c in columns:
        t.add_column(c)
    return t


def term_json(ref: TermRef) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ref.id, "version": ref.version, "hash": ref.hash.hex()}
    if ref.params:
        out["params"] = dict(ref.params)
    return out


def term_title(ref: TermRef) -> str:
    try:
        return get_term(ref.id, ref.version).title
    except KeyError:
        return ref.id


def term_short(ref: TermRef) -> str:
    """A term as a table cell shows it: ``no-tracking``, ``delete-after:365``.

    The ``vrm.`` prefix is left out, and so is a parameter that can only have one value.
    """
    name = ref.id.removeprefix("vrm.")
    try:
        specs = {p.name: p for p in get_term(ref.id, ref.version).params}
    except KeyError:
        specs = {}
    shown = [str(v) for k, v in ref.params.items()
             if not (k in specs and specs[k].type == "str" and len(specs[k].values) == 1)]
    return name + (":" + ",".join(shown) if shown else "")


def terms_short(refs: Iterable[TermRef]) -> str:
    return ", ".join(term_short(r) for r in refs) or "—"


_PEER_REFUSED = re.compile(r"peer refused: ([a-z_]+)(?:: (.*))?", re.S)


def brief(detail: str) -> str:
    """A failure in a few words, for a table cell.

    Only a failure to connect reads "connection refused": a vendor's signed refusal (a problem
    report, say ``no_relationship``) is shown by its code, whatever words its detail uses.
    """
    peer = _PEER_REFUSED.search(detail)
    if peer is not None:
        why = f": {peer.group(2)}" if peer.group(2) else ""
        detail = f"refused by the vendor ({peer.group(1)}){why}"
    else:
        unreachable = unreachable_words(detail)
        if unreachable is not None:
            return unreachable
    return detail if len(detail) <= 80 else detail[:79] + "…"


def held(error: object) -> bool:
    """Whether ``error`` (or an outbox item's ``last_error``) says its message is held until
    the person acts: the vendor now answers with another key (§11.10-1)."""
    return error is not None and str(error).startswith(HELD)


def queued_line(error: object, timeout: float | None = None) -> str:
    """The line that says a message was not delivered now: queued (and what delivers it), or
    held, with the key change and what the person can do (§11.10-3). ``timeout``: the
    command's ``--timeout``, named when the vendor did not answer within it."""
    if held(error):
        return f"  [red]⏸ held[/]: {safe(str(error).removeprefix(HELD))}"
    return (f"  ⏸ queued ({safe(why_queued(error, timeout))}); it stays in the outbox: "
            "`vrm outbox run` delivers it")


def refused_line(d: Delivery) -> str:
    """The line that says a message is not delivered and will not be: the vendor refused it
    with a signed problem (§9), or it was dropped (expired unsent)."""
    why = f": {safe(brief(str(d.error)))}" if d.error is not None else ""
    return f"  [red]✗ {d.status}[/]{why}"


def why_queued(error: object, timeout: float | None = None) -> str:
    """:func:`waits_because`, naming the command's ``--timeout`` when the vendor did not
    answer within it."""
    why = waits_because(error)
    if timeout is not None and why.endswith("could not be reached: timed out"):
        why = f"the vendor did not answer within {timeout:g} s (--timeout)"
    return why


def waits_because(error: object) -> str:
    """Why a message waits in the outbox, in a few words: a vendor that answered "not now"
    (a problem that may be retried, §9.2-3) was reached, and is not said to be unreachable.
    ``clock_skew`` says whose clock to look at: the vendor found our message made in its
    future (§4.5-4), and it goes once the vendor's clock has caught up with ours. An answer we
    could not take because it is out of date or from the future by our clock (its problem or
    receipt lives a few minutes) points at the clocks too."""
    text = str(error) if error is not None else ""
    if type(error) is TransportError or held(text):  # behind another message; or held
        return text
    peer = _PEER_REFUSED.search(text)
    if peer is None:
        unreachable = unreachable_words(text) if text else "unreachable"
        if unreachable is not None:
            why = "the vendor could not be reached" + unreachable.removeprefix("unreachable")
        else:  # it answered, and not with anything we could take
            why = f"not delivered yet: {brief(text)}"
        if "clock_skew" in text or "expired" in text:  # its answer is outside our clock's window
            why += " — its clock and yours may differ (`vrm doctor` compares them)"
        return why
    code = peer.group(1)
    if code == "clock_skew":
        return ("your clock is ahead of the vendor's (clock_skew): the message goes once the "
                "vendor's clock catches up (`vrm doctor` compares them)")
    return f"the vendor answered {code}: not now"


def terms_text(refs: Iterable[TermRef]) -> str:
    """Terms as a person reads them in a table cell: ``vrm.delete-after:days=30, …``."""
    return ", ".join(term_spec(r) for r in refs) or "—"


def money_json(m: Money) -> dict[str, Any]:
    return {"amount": m.amount, "currency": m.currency, "text": str(m)}


def record_json(r: DataRecord) -> dict[str, Any]:
    return {
        "field": r.field,
        "value": r.value,
        "category": r.category,
        "category_name": category_label(r.category),
        "source": r.source,
        "collected": r.collected,
        "purposes": list(r.purposes),
        "purpose_names": [purpose_label(p) for p in r.purposes],
    }


def records_table(records: Iterable[DataRecord], title: str | None = None) -> Table:
    t = table(title, "field", "value", "category", "source", "collected", "purposes")
    for r in records:
        t.add_row(
            safe(r.field),
            safe(r.value),
            category_label(r.category),
            safe(r.source),
            format_time(r.collected) if r.collected else "—",
            ", ".join(purpose_label(p) for p in r.purposes),
        )
    return t


def rbutton(vendor: str, state: str = "") -> str:
    """The r-button view of one relationship: ``⊂ you ⊃ Avis Park City``."""
    return f"{YOU} you {THEM} {safe(vendor)}" + (f" ({state})" if state else "")


def kv_table(rows: Mapping[str, str]) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows.items():
        t.add_row(k, safe(v))
    return t
