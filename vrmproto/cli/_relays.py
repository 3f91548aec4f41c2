"""The relays an intentcast is published to (spec §15): the ones kept in settings, URLs checked.

Shared by ``vrm intent new --relay`` and ``vrm relay``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from vrmproto._hosts import relay_url
from vrmproto.cli._errors import EXIT_UNREACHABLE, EXIT_USAGE, CliError
from vrmproto.cli._home import Home, warn
from vrmproto.client._http import unreachable_words
from vrmproto.nostr._binding import is_geohash
from vrmproto.nostr._relay import RelayError

__all__ = [
    "MAX_RELAYS",
    "SETTING",
    "WARNING",
    "check_geohash",
    "check_relay_url",
    "kept_relays",
    "relays_failed",
    "relays_given",
    "save_relays",
    "show_relay_warnings",
]

#: The most relays kept, or given to one command (spec §15.5-7).
MAX_RELAYS = 32
#: The settings key of the default relays (settings.json, beside name and terms).
SETTING = "relays"
WARNING = ("Relays keep what you publish and anyone can read it: the intentcast names no key "
           "or relationship of yours, only what you wrote in it (spec §11.14-1).")  # fmt: skip


def relays_given(texts: Sequence[str]) -> list[str]:
    """Relay URLs given to one command (``--relay``), checked, each once, at most
    :data:`MAX_RELAYS` of them (§15.5-7)."""
    urls = list(dict.fromkeys(map(check_relay_url, texts)))
    _at_most(urls, "give")
    return urls


def _at_most(urls: Sequence[str], verb: str) -> None:
    if len(urls) > MAX_RELAYS:
        raise CliError(f"{len(urls)} relays: {verb} at most {MAX_RELAYS} (spec §15.5-7): each "
                       "is a connection and a copy of every event, and a few well-chosen "
                       "relays reach as far", EXIT_USAGE, kind="too_many_relays")  # fmt: skip


def check_relay_url(text: str) -> str:
    """A relay URL: ``wss://…``, or ``ws://…`` (loopback and tests, §15.5-4), with a host, a
    valid port and no spaces: one kept with ``vrm relay add`` is used by every intentcast."""
    try:
        return relay_url(text).rstrip("/")
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE, kind="bad_url") from None


def check_geohash(text: str | None) -> str | None:
    """A geohash for relays' filters (§15.3-3), e.g. ``9x0n8`` for Park City."""
    if text is not None and not is_geohash(text):
        raise CliError(f"{text!r} is not a geohash (at most 12 of 0-9 and b-z but a, i, l, o)",
                       EXIT_USAGE, kind="usage")  # fmt: skip
    return text


def kept_relays(home: Home) -> list[str]:
    """The relays kept with ``vrm relay add``."""
    value = home.settings().extra.get(SETTING, [])
    return [str(u) for u in value] if isinstance(value, list) else []


def save_relays(home: Home, urls: list[str]) -> None:
    """Keep ``urls`` as the relays; more than :data:`MAX_RELAYS` are refused (§15.5-7)."""
    _at_most(urls, "keep")
    settings = home.settings()
    settings.extra[SETTING] = urls
    home.write_settings(settings)


def _down(text: str) -> str:
    """Why relays could not be reached, in the words every view uses (not aiohttp's)."""
    words = unreachable_words(text)
    return words.removeprefix("unreachable: ") if words is not None else "no answer"


def relays_failed(exc: RelayError, urls: Sequence[str], hint: str) -> CliError:
    """The one sentence for relays that failed a command, in plain words, and exit 4: the
    network failed, not the person's command, and nothing was kept to retry (a relay that
    cannot be reached is like a vendor that cannot be reached; not a usage error, exit 2).
    ``hint``: what the person can do."""
    text = str(exc)
    if text.startswith("no relay could be reached"):
        where = f" ({', '.join(urls)})" if urls else ""
        text = f"no relay could be reached{where}: {_down(text)}"
    return CliError(f"{text}; {hint}", EXIT_UNREACHABLE, kind="relays_down")


class _RelayWarnings(logging.Handler):
    """A relay that is down, said as ``vrm: warning: the relay URL could not be reached:
    connection refused`` (the others may still take the intentcast)."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("relay down: "):
            url = text.removeprefix("relay down: ").split(": ", 1)[0]
            text = f"the relay {url} could not be reached: {_down(text)}"
        warn(text)


def show_relay_warnings() -> None:
    """Show the relays' warnings the command line's way (idempotent); without it Python's
    last-resort handler printed them bare, in the HTTP library's words."""
    logger = logging.getLogger("vrmproto.nostr")
    if not any(isinstance(h, _RelayWarnings) for h in logger.handlers):
        logger.addHandler(_RelayWarnings(logging.WARNING))
