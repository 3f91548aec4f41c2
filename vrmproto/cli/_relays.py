"""The relays an intentcast is published to (spec §15): the ones kept in settings, URLs checked.

Shared by ``vrm intent new --relay`` and ``vrm relay``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from vrmproto.cli._errors import EXIT_USAGE, CliError
from vrmproto.cli._home import Home
from vrmproto.nostr._binding import is_geohash

__all__ = ["SETTING", "WARNING", "check_geohash", "check_relay_url", "kept_relays", "save_relays"]

#: The settings key of the default relays (settings.json, beside name and terms).
SETTING = "relays"
WARNING = ("Relays keep what you publish and anyone can read it: the intentcast names no key "
           "or relationship of yours, only what you wrote in it (spec §11.14-1).")  # fmt: skip


def check_relay_url(text: str) -> str:
    """A relay URL: ``wss://…``, or ``ws://…`` (loopback and tests, §15.5-4), with a host, a
    valid port and no spaces: one kept with ``vrm relay add`` is used by every intentcast."""
    bad = CliError(f"{text!r} is not a relay URL (wss://host…)", EXIT_USAGE, kind="bad_url")
    if len(text) > 2048 or any(c.isspace() or not c.isprintable() for c in text):
        raise bad
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        raise bad from None
    if parts.scheme.lower() not in ("wss", "ws") or not parts.hostname:
        raise bad
    return text.rstrip("/")


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
    settings = home.settings()
    settings.extra[SETTING] = urls
    home.write_settings(settings)
