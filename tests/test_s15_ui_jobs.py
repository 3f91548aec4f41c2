"""``vrm ui``'s jobs (the change of address, the intentcast) are remembered within bounds.

Before: :class:`~vrmproto.ui._jobs.Jobs` forgot finished jobs beyond ``MAX_JOBS`` only from
the front, and stopped at the first that was not finished — so once the oldest job had a row
queued (a vendor down when the address went out, and still down), every later job was kept for
as long as the page ran. Now a job not finished always stays; finished ones go beyond
``MAX_JOBS`` (oldest first) and ``FINISHED_KEEP_S`` after they finished.
"""

from __future__ import annotations

from vrmproto.ui._jobs import FINISHED_KEEP_S, MAX_JOBS, Job, Jobs, Row


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _finished(jobs: Jobs, title: str) -> Job:
    job = jobs.new("address", title, [Row("Market", "http://127.0.0.1:1", status="confirmed")])
    job.running = False
    job.changed()
    assert job.finished
    return job


def _queued(jobs: Jobs) -> Job:
    job = jobs.new("address", "lodge down", [Row("Lodge", "http://127.0.0.1:2", status="queued",
                                                 thread=b"t" * 16)])  # fmt: skip
    job.running = False
    job.changed()
    assert not job.finished
    return job


def test_a_queued_oldest_job_does_not_keep_every_later_one() -> None:
    jobs = Jobs(Clock())
    waiting = _queued(jobs)
    for i in range(3 * MAX_JOBS):
        _finished(jobs, f"move {i}")
    kept = jobs.all()
    assert waiting in kept  # what still waits in the outbox stays listed
    assert len(kept) == MAX_JOBS + 1
    assert [j.title for j in kept[1:]] == [f"move {i}" for i in range(2 * MAX_JOBS, 3 * MAX_JOBS)]
    assert jobs.get(waiting.id) is waiting


def test_finished_jobs_go_after_a_while_and_a_queued_one_stays_until_delivered() -> None:
    clock = Clock()
    jobs = Jobs(clock)
    waiting = _queued(jobs)
    done = _finished(jobs, "move")
    running = jobs.new("intent", "kayak", [])  # running: its fan-out has not ended
    clock.now += FINISHED_KEEP_S - 1
    assert jobs.get(done.id) is done  # its page can still be read
    clock.now += 2
    assert jobs.get(done.id) is None
    assert jobs.all() == [waiting, running]
    clock.now += 10 * FINISHED_KEEP_S
    assert jobs.all() == [waiting, running]  # neither is finished: both stay
    waiting.delivered(b"t" * 16, "confirmed")  # the lodge came back; the outbox delivered it
    running.running = False
    running.changed()
    clock.now += FINISHED_KEEP_S - 1
    assert jobs.all() == [waiting, running]
    clock.now += 2
    assert jobs.all() == []
