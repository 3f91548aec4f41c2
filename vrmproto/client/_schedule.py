"""When the outbox tries a message (again): the retry schedule, what is due, and the problems
after which the same bytes may be delivered again (§9.1-9)."""

from __future__ import annotations

import math

from vrmproto import _errors
from vrmproto.client._transport import MAX_RETRY_AFTER_S, RetryPolicy
from vrmproto.store import OutboxItem

__all__ = ["DEFAULT_SCHEDULE", "HELD_CHECK_S", "HELD_MS", "RETRYABLE", "is_due", "longest_wait_ms"]

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


def longest_wait_ms(schedule: RetryPolicy) -> int:
    """The furthest ahead of its clock the outbox schedules an attempt under ``schedule``: the
    schedule's cap, or the longest ``Retry-After`` it honours (ms)."""
    longest = max(schedule.cap_s, MAX_RETRY_AFTER_S)
    return int(longest * 1000) if math.isfinite(longest) else HELD_MS


def is_due(item: OutboxItem, due_by: int | None, schedule: RetryPolicy) -> bool:
    """Whether ``item`` is to be tried by a run that takes what is due by ``due_by`` (None:
    whatever waits): what was never tried is due at once — among it, what the run itself
    queued (a receipt for a reply, the draft whose turn came), which goes in the same run.

    So is an item due further after ``due_by`` than ``schedule`` ever waits
    (:func:`longest_wait_ms`): nothing of ours scheduled it that far, so the clock was set
    back since (an NTP step, a clock corrected after it ran ahead), and waiting for the old
    time would hold the message back by as much. A held item (:data:`HELD_MS`) waits for a
    person still."""
    next_ms = item.next_attempt_ms
    if due_by is None:
        return True
    return (item.attempts == 0 or next_ms <= due_by
            or (next_ms < HELD_MS and next_ms - due_by > longest_wait_ms(schedule)))  # fmt: skip
