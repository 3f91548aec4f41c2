"""``sign_problem`` refuses numbers its receiver would refuse (§5.1-2, §5.6.2): it signed
``retry_after=1.5``, ``nan`` or ``True`` (and a ``server_time`` past 2^53 - 1), and every
customer then refused the vendor's ``rate_limited`` problem as ``invalid_field`` — a message that
should not exist (s22-embed's note)."""

from __future__ import annotations

import os

import pytest

from vrmproto import Identity, Problem, ValidationError, sign_problem

NOW = 1_800_000_000_000


@pytest.mark.parametrize("extra", [
    {"retry_after": 1.5}, {"retry_after": float("nan")}, {"retry_after": True},
    {"retry_after": -1}, {"retry_after": 86_401}, {"server_time": 2**53},
    {"supported_versions": (1.0,)},
])  # fmt: skip
def test_a_problem_with_numbers_no_receiver_takes_is_not_signed(extra: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        sign_problem(Problem.RATE_LIMITED, "slow down", identity=Identity(os.urandom(32)),
                     now=NOW, msg_id=os.urandom(16), **extra)  # type: ignore[arg-type]


def test_good_numbers_are_signed() -> None:
    m = sign_problem(Problem.RATE_LIMITED, "slow down", identity=Identity(os.urandom(32)),
                     now=NOW, msg_id=os.urandom(16), retry_after=30, server_time=NOW)
    assert (m.body.retry_after, m.body.server_time) == (30, NOW)


def test_a_storage_budget_asks_for_at_most_a_day() -> None:
    """Its retry_after_s goes into a signed rate_limited problem, whose retry_after is at most
    86,400 (§5.6.2): 100,000 would now fail the refusal it is for, as it would have made one
    every customer refuses."""
    from vrmproto.server import StorageBudget  # noqa: PLC0415

    with pytest.raises(ValueError, match="at most 86400"):
        StorageBudget(retry_after_s=100_000)
    assert StorageBudget(retry_after_s=86_400).retry_after_s == 86_400
