"""When the outbox tries a message (again): the retry schedule, what is due, and the problems
after which the same bytes may be delivered again (§9.1-9)."""

from __future__ import annotations

from vrmproto import _errors
from vrmproto.client._transport import RetryPolicy
from vrmproto.store import OutboxItem

__all__ = ["DEFAULT_SCHEDULE", "HELD_CHECK_S", "HELD_MS", "RETRYABLE", "is_due"]

#: Problem codes after which the same bytes may be delivered again (Table 9-1, §9.1-9).
RETRYABLE = _errors.RETRYABLE

#: When the outbox tries again: full jitter over 2 s · 2^(n-1), at most an hour apart.
DEFAULT_SCHEDULE = RetryPolicy(attempts=1_000_000, base_s=2.0, cap_s=3600.0)

#: The next attempt of an item *held* until a person acts: never due by the clock, tried again
#: only when asked (``Outbox.retry_now``). The outbox holds a message whose vendor now answers,
#: and publishes its document, under another key than the one we hold (§11.10-1): retrying
#: cannot deliver it, and only a person may decide about the new key.
HELD_MS = 2**62

#: Longest, in seconds, the §8.1-8 check of one item (the vendor's document and every page of
#: its history) may take when the caller set no deadline (``Outbox.run``): a vendor answering
#: its history page by page, each just within the client's timeout, would otherwise hold the
#: outbox round — and every other vendor's retries after it — for hours.
HELD_CHECK_S = 60.0


def is_due(item: OutboxItem, due_by: int) -> bool:
    """Whether ``item`` is to be tried by a run that takes what is due by ``due_by``: what
    was never tried is due at once — among it, what the run itself queued (a receipt for a
    reply, the draft whose turn came), which goes in the same run."""
    return item.attempts == 0 or item.next_attempt_ms <= due_by
