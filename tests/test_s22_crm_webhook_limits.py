"""A webhook's times and sizes must be ones delivery can work with (session 22).

``[[webhooks]] timeout_s = inf`` (TOML has ``inf``) passed the vendor file's check (``gt = 0``)
and made a webhook whose attempts never time out: a receiver that took the connection and never
answered (a CRM behind a load balancer whose backend hung) held the feed for ever — no failure
counted, no retry, no dead letter after ``dead_after_s``, nothing logged. ``Webhook`` built in
code took NaN, negative and infinite times and a ``parallel`` or ``batch`` of 0 too (no worker
at all, or a batch that never holds an event: nothing delivered, silently). Now ``Webhook`` and
its ``Poster`` refuse them with a ValueError naming the field.
"""

from __future__ import annotations

import base64
import math

import pytest

from vrmproto.server._config import WebhookEntry
from vrmproto.server._webhook_http import Poster
from vrmproto.server._webhooks import Webhook

KEY = b"k" * 24
SECRET = "whsec_" + base64.b64encode(KEY).decode()
URL = "http://127.0.0.1:9/crm"


def hook(**kw: float) -> Webhook:
    return Webhook("crm", URL, KEY, "https://shop.example/vrm", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.inf, math.nan, -1.0, 0.0, 3601.0])
def test_an_attempt_has_a_finite_timeout(value: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        hook(timeout_s=value)
    if not 0 < value < math.inf:
        with pytest.raises(ValueError, match="timeout_s"):
            Poster(URL, timeout_s=value)


def test_a_vendor_file_with_an_infinite_timeout_makes_no_webhook() -> None:
    with pytest.raises(ValueError, match="timeout_s"):  # the file's own check (check-config)
        WebhookEntry(url=URL, secret=SECRET, timeout_s=math.inf)


@pytest.mark.parametrize(("field", "value"), [
    ("dead_after_s", math.nan), ("dead_after_s", -1.0),
    ("refused_after_s", math.nan), ("refused_after_s", -0.5),
    ("backoff_s", math.inf), ("backoff_s", -1.0), ("backoff_max_s", math.nan),
    ("linger_s", math.inf), ("record_s", math.inf), ("record_s", -1.0),
    ("batch", 0), ("parallel", 0), ("batch_bytes", 0),
])  # fmt: skip
def test_other_times_and_sizes_are_checked(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        hook(**{field: value})


def test_the_defaults_and_the_usual_values_are_taken() -> None:
    h = hook()
    assert h.timeout_s == 10.0
    assert hook(timeout_s=3600.0, dead_after_s=0.0, refused_after_s=0.0, backoff_s=0.0,
                backoff_max_s=0.0, linger_s=0.0, record_s=0.0).timeout_s == 3600.0
    assert hook(dead_after_s=math.inf).dead_after_s == math.inf  # never set aside: a choice
    assert WebhookEntry(url=URL, secret=SECRET).webhook("s").timeout_s == 10.0
