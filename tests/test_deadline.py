"""``vrmproto/_deadline.py``: one timer per connection enforces each deadline set on it, on
time, without a timer made per deadline. The clock and timers are driven by the test
(``_timers.TimerLoop``): nothing waits for time to pass."""

from __future__ import annotations

import asyncio

from _timers import TimerLoop
from hypothesis import given
from hypothesis import strategies as st

from vrmproto._deadline import Deadline


def deadline(clock: TimerLoop, expired: list[float], **kw: float) -> Deadline:
    return Deadline(lambda: expired.append(clock.now), **kw)


async def test_later_deadlines_move_a_number_not_the_timer() -> None:
    clock, expired = TimerLoop(asyncio.get_running_loop()), []
    d = deadline(clock, expired)
    for at in (10.0, 12.0, 15.0):  # requests one after another, each answered
        d.set(clock, at)  # type: ignore[arg-type]
        d.clear()
    d.set(clock, 19.0)  # type: ignore[arg-type]
    assert (clock.made, clock.armed) == (1, [10.0])
    clock.fire()  # early: moved on to the deadline in force
    assert (expired, clock.armed) == ([], [19.0])
    clock.fire()
    assert expired == [19.0]
    assert d.at == float("inf")


async def test_an_earlier_deadline_rearms_the_timer() -> None:
    clock, expired = TimerLoop(asyncio.get_running_loop()), []
    d = deadline(clock, expired)
    d.set(clock, 20.0)  # type: ignore[arg-type]
    d.set(clock, 5.0)  # type: ignore[arg-type]
    assert (clock.made, clock.armed) == (2, [5.0])
    clock.fire()
    assert expired == [5.0]


async def test_with_a_horizon_no_later_deadline_rearms() -> None:
    """The server's use: idle 20 s, head 10 s; the timer armed at most 10 s ahead fires no later
    than any deadline set after it, so setting one never makes a timer."""
    clock, expired = TimerLoop(asyncio.get_running_loop()), []
    d = deadline(clock, expired, horizon=10.0)
    d.set(clock, 20.0)  # type: ignore[arg-type]  # idle, from 0
    assert clock.armed == [10.0]
    clock.now = 3.0
    d.set(clock, 13.0)  # type: ignore[arg-type]  # a head begins at 3
    d.clear()  # busy
    clock.now = 4.0
    d.set(clock, 24.0)  # type: ignore[arg-type]  # idle again, from 4
    assert clock.made == 1
    clock.fire()  # at 10: moved on, at most the horizon ahead
    assert (expired, clock.armed) == ([], [20.0])
    clock.fire()
    assert (expired, clock.armed) == ([], [24.0])
    clock.fire()
    assert expired == [24.0]


async def test_a_cleared_or_cancelled_deadline_never_expires() -> None:
    clock, expired = TimerLoop(asyncio.get_running_loop()), []
    d = deadline(clock, expired)
    d.set(clock, 1.0)  # type: ignore[arg-type]
    d.clear()
    clock.fire()
    assert (expired, clock.armed) == ([], [])  # and nothing armed until the next deadline
    d.set(clock, 2.0)  # type: ignore[arg-type]
    d.cancel()
    assert clock.armed == []
    assert expired == []


@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 30), st.booleans()), max_size=30),
       st.sampled_from([float("inf"), 0.1, 10.0]))  # fmt: skip
def test_each_deadline_in_force_expires_exactly_when_due(
    steps: list[tuple[float, float, bool]], horizon: float
) -> None:
    """Whatever deadlines are set and cleared (time passing in between), the owner hears of
    expiry exactly at the deadline in force then, and never of one cleared or replaced."""
    loop = asyncio.new_event_loop()
    try:
        clock, expired = TimerLoop(loop), []
        d = deadline(clock, expired, horizon=horizon)
        expected: list[float] = []
        due = float("inf")
        for wait, timeout, answered in steps:
            target = clock.now + wait
            while clock.armed and clock.armed[0] <= target:  # time passes: timers fire
                clock.fire()
                if clock.now >= due:
                    expected.append(due)
                    due = float("inf")
            clock.now = target
            due = clock.now + timeout
            d.set(clock, due)  # type: ignore[arg-type]
            if answered:
                d.clear()
                due = float("inf")
        while clock.armed:
            clock.fire()
            if clock.now >= due:
                expected.append(due)
                due = float("inf")
        assert expired == expected
    finally:
        loop.close()
