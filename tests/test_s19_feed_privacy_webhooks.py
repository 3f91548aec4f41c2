"""A webhook between a share's expiry and the sweep that drops it (session 19).

An address.updated event names, per field held under a share, that share's expiry
(``field_expires``, docs/events.md). Readers (``follow``, ``vrm vendor events``, the Tryton bridge)
withhold such a field once its share expired, before the expiry sweep takes it out of the stored
event; the webhook renderer checked only the event's own ``expires`` and so POSTed the updated
value of an expired share until the sweep ran (§5.3.1-4, §5.3.6-2).
"""

from __future__ import annotations

import json

from vrmproto.server._webhooks import Renderer, Webhook, parse_secret
from vrmproto.store import EventRecord

SECRET = parse_secret("whsec_" + "a2tra2tra2tra2tra2tra2tra2tra2tr")
SHARE_EXPIRES = 1_000_000


def hook(purposes: frozenset[int] | None = None) -> Webhook:
    return Webhook("crm", "http://127.0.0.1:9/unused", SECRET, "https://shop.example/vrm",
                   purposes=purposes)  # fmt: skip


def update_event() -> EventRecord:
    """An address update of email (held under a share expiring at SHARE_EXPIRES) and phone
    (under none)."""
    personal = {"fields": {"email": "b@example.org", "phone": "+1 5"},
                "field_purposes": {"email": [2], "phone": [1]},
                "field_shares": {"email": "evt_" + "ab" * 32},
                "field_expires": {"email": SHARE_EXPIRES}, "purposes": [1, 2]}  # fmt: skip
    return EventRecord(id="evt_" + "cd" * 32, thread=bytes(16), seq=3, kind="address.updated",
                       msg_hash=bytes(32), recorded_ms=500_000, data=b'{"type":"address.update"}',
                       personal=json.dumps(personal).encode())  # fmt: skip


def sent(renderer: Renderer, now_ms: int) -> object:
    return json.loads(renderer.body(update_event(), now_ms))["data"]["personal"]


def test_an_expired_shares_updated_field_is_not_posted_before_the_sweep() -> None:
    r = Renderer(hook())
    before = sent(r, SHARE_EXPIRES - 1)
    assert isinstance(before, dict)
    assert set(before["fields"]) == {"email", "phone"}
    after = sent(r, SHARE_EXPIRES)
    assert isinstance(after, dict)
    assert after["fields"] == {"phone": "+1 5"}  # the field no share held stays
    assert "email" not in json.dumps(after)


def test_a_hook_for_some_purposes_gets_nothing_once_its_only_field_expired() -> None:
    r = Renderer(hook(frozenset({2})))
    before = sent(r, SHARE_EXPIRES - 1)
    assert isinstance(before, dict)
    assert before["fields"] == {"email": "b@example.org"}
    assert sent(r, SHARE_EXPIRES) is None
