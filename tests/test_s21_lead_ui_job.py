"""A job's row says "delivered" for its own message, not for an earlier one of the thread.

Before: with a share queued for a vendor that was down and then a change of address (the job's
row "queued" behind it), the outbox delivering the share marked the address row "delivered"
while the address update still waited (s21-ui's note, ``ui/_jobs.py`` ``Job.delivered``).
"""

from __future__ import annotations

from vrmproto.client import ProgressEvent
from vrmproto.client._delivery import Delivery
from vrmproto.ui._jobs import Jobs, Row

THREAD = b"\x07" * 16
SHARE, UPDATE = b"\x01" * 32, b"\x02" * 32


def test_the_row_waits_for_its_own_message() -> None:
    job = Jobs().new("address", "Change of address", [Row("Hotel", "http://hotel.test")])
    job.progress(ProgressEvent("Hotel", "http://hotel.test", "queued", thread=THREAD,
                               delivery=Delivery(THREAD, b"\x00" * 16, UPDATE, "queued")))
    job.delivered(THREAD, "confirmed", "", SHARE)  # the share queued before it went
    assert [r.status for r in job.rows] == ["queued"]
    job.delivered(THREAD, "confirmed", "", UPDATE)
    assert [r.status for r in job.rows] == ["delivered"]
