"""The conformance suite catches real mistakes (issue 5): each broken vendor fails exactly the
cases that concern its mistake (FAILED for a MUST case, NON_STRICT for a SHOULD case), and
passes every other.

Every vendor is the reference vendor with ONE rule switched off or wrong, made in its own process
(forked by ``tests/_broken_vendor.py --fork``: ``_broken_vendor.py MODE``'s vendor, its imports
done once for all): the suite in this process verifies every reply with the real core, so the
breakage can never leak into the checker. All vendors run at once, and their suites run
concurrently in one event loop.

Each expected set below was written from the mistake first — which cases exercise the broken
rule — and then compared with a run. Where they differed the case was fixed, never the set: a
case that fails for a mistake it is not about checks too much, and one that passes a mistake it
is about checks too little.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from _broken_vendor import CASE_TIME_LIMIT_S, MISTAKES, VendorDidNotStart, Vendors

from vrmproto.testing import Level, Outcome, SuiteCannotRun, SuiteResult, run_suite
from vrmproto.testing.cases import connections

MISSES = (Outcome.FAILED, Outcome.NON_STRICT)
SEED = 20_260_101

# Which cases each mistake must fail: every case whose checks pass through the broken rule.
EXPECTED: dict[str, frozenset[str]] = {
    # _envelope.verify is a no-op: message signatures, sealed-content signatures and the
    # small-order key check inside verification all go (§3.5-3, §2.1-2, §5.5-7, §9.1-7).
    "skip-signatures": frozenset({
        # (ENV-006 and ENV-017 still pass: their small-order keys are refused at first contact
        # by the key check of §2.1-2, which this mistake leaves in place)
        "ENV-002", "ENV-003", "ENV-004", "ENV-005",
        "ORD-001",  # a bad signature must be found before the body is decoded (§4.3-2)
        "SEAL-004", "SEAL-005", "PRB-003", "RATE-002",
        # hand-made signatures that fail one step of §3.5-3 each (S ≥ L, R = identity, identity
        # R non-canonical, R with a torsion component); SIG-005/006/007/009 still pass: §2.1-2
        # refuses those keys at first contact
        "SIG-002", "SIG-003", "SIG-004", "SIG-008",
    }),
    # no replay record, no coalescing: replays are applied again and refused (§12.6).
    # (RPL-005/006: the replay and the id conflict of a later message of a thread)
    "no-dedupe": frozenset({"RPL-001", "RPL-002", "RPL-003", "RPL-004", "RPL-005", "RPL-006",
                            "HIST-010"}),  # the offer again after its reply was dropped (§8.1-6)
    "accept-expired": frozenset({
        "TIME-001",
        "PRB-004",  # SHOULD: the expired problem's server_time (NON_STRICT: the message passes)
        "ORD-001",  # expired + bad signature: must be expired (step 16 before 18)
    }),
    "ignore-recipient": frozenset({
        "RCPT-001",
        "ORD-001",  # addressed elsewhere + expired: must be wrong_recipient (15 before 16)
    }),
    "share-without-agreement": frozenset({
        "DAT-004",
        "STATE-001",  # its refusal is a share naming another agreement
        "SEAL-005",  # no_agreement must come before opening the sealed content (§5.5-9)
    }),
    # Answer first, store 1.5 s later: every case whose verdict depends on what an earlier
    # receipt said was stored fails (§12.7-1). Cases of one message pass, and so do those whose
    # second message is refused before the relationship is looked up (step 21 of §4.5-1: the
    # body's fields in DAT-014 and DAT-015) or for a reason that holds without it (PRB-002's
    # chain_broken: a prev where the first message of a thread has none).
    "receipt-before-commit": frozenset({
        "CHN-001", "DUR-001", "ORD-002", "ORD-003", "STATE-001", "REL-002",
        "DAT-001", "DAT-002", "DAT-003", "DAT-004", "DAT-005", "DAT-006", "DAT-007",
        "DAT-008", "DAT-009", "DAT-010", "DAT-011", "DAT-012", "DAT-013",
        "HIST-001", "HIST-002", "HIST-003", "HIST-007",
        "KEY-001", "KEY-002", "KEY-003", "KEY-004", "KEY-005", "KEY-006",
        "PRB-001", "RCT-001", "RCT-002",
        "RPL-001", "RPL-002", "RPL-003", "RPL-004",
        "SEAL-001", "SEAL-002", "SEAL-003", "SEAL-004", "SEAL-005",
        "TRM-004", "TRM-005",
        "RET-001", "RET-002", "RET-003", "RET-004", "HIST-008", "RPL-005", "RPL-006", "SIG-011",
        "RET-005", "RET-006", "HIST-009", "HIST-010", "RET-007", "HIST-011", "RET-008",
        # every state-table cell whose state needs an earlier message stored
        *(f"SM-{s}{e:02d}" for s in (2, 3, 7, 8) for e in range(1, 17)),
    }),
    # Every envelope refused as malformed gets a 500 instead (§12.4-2).
    "500-on-malformed": frozenset({
        "ENV-007", "ENV-014", "ENV-015", "ENV-016",
        "WIRE-002", "WIRE-003", "WIRE-004", "WIRE-005", "WIRE-006", "WIRE-007", "WIRE-010",
        "WIRE-011", "WIRE-013", "WIRE-017",
        "ORD-001", "HTTP-004",
        # each non-canonical length, int and float 32 form, and ignored body keys beyond §3.3-4
        # and out of §3.3-3 order: malformed at the form stage, a 500 here
        "CAN-001", "CAN-002", "CAN-003", "CAN-004", "CAN-005", "CAN-006", "CAN-008", "CAN-009",
    }),
    # bad_signature (401) reported as malformed (400) at the envelope (§3.5-3, §9.1-2).
    "bad-signature-as-malformed": frozenset({
        "ENV-002", "ENV-003", "ENV-004", "ENV-005", "ENV-009", "ORD-001", "PRB-003",
        "SIG-002", "SIG-003", "SIG-004", "SIG-008",
    }),
    "unsigned-discovery": frozenset({"DISC-002"}),
    "malleable-signatures": frozenset({"ENV-005", "SIG-002"}),  # SIG-002: S + L, S + 2L, S + 15L
    "no-rate-limit": frozenset({"RATE-001"}),
    "keeps-withdrawn-bodies": frozenset({"HIST-003", "HIST-011"}),
    "returns-expired-data": frozenset({"DAT-010"}),
}

# Slow cases, left out only where the mistake cannot change their outcome:
# - RATE-001 floods one key with 2 × quota + 10 valid offers: only the rate limiter decides it,
#   and only "no-rate-limit" touches the limiter.
# - RATE-002 floods forgeries: decided by signature checking, the codes of its refusals and the
#   limiter — "skip-signatures", "bad-signature-as-malformed" and "no-rate-limit".
# - ROB-001 is INFO: it can never fail, so no mistake can change the FAILED set.
SLOW: dict[str, frozenset[str]] = {
    "RATE-001": frozenset({"no-rate-limit"}),
    "RATE-002": frozenset({"skip-signatures", "bad-signature-as-malformed", "no-rate-limit"}),
    "ROB-001": frozenset(),
}


def skips(mode: str) -> list[str]:
    return [case_id for case_id, affected_by in SLOW.items() if mode not in affected_by]


@dataclass
class Run:
    mode: str
    result: SuiteResult | None = None
    error: str = ""


async def _vendor_and_suite(vendors: Vendors, mode: str) -> Run:
    try:
        async with vendors.serve(mode) as url:
            return Run(mode, await run_suite(url, seed=SEED, skip=skips(mode),
                                             timeout_per_case=CASE_TIME_LIMIT_S))
    except (VendorDidNotStart, SuiteCannotRun) as exc:  # this mode's failure, not the others'
        return Run(mode, error=f"{type(exc).__name__}: {exc}")


async def _all() -> dict[str, Run]:
    async with Vendors() as vendors:
        runs = await asyncio.gather(*(_vendor_and_suite(vendors, mode) for mode in MISTAKES))
    return {run.mode: run for run in runs}


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return asyncio.run(_all())


def test_the_case_time_limit_is_above_the_longest_wait_of_a_connection_case() -> None:
    """A connection case waits for a close the ceiling of §10.1-5 and a grace (22 s, spec
    §14.2), CONN-004 after sending for up to a quarter of that: within the limit, so that a late
    close is graded by the case (it was 20 s)."""
    wait = connections.CEILING_MS / 1000 + connections.GRACE_S
    assert wait == 22
    assert wait + wait / 4 < CASE_TIME_LIMIT_S


def test_every_mistake_has_an_expectation() -> None:
    assert EXPECTED.keys() == MISTAKES.keys()
    assert len(MISTAKES) >= 10


@pytest.mark.parametrize("mode", list(MISTAKES))
def test_broken_vendor_fails_exactly_its_cases(runs: dict[str, Run], mode: str) -> None:
    run = runs[mode]
    assert run.result is not None, run.error
    # a MUST case that misses is FAILED, a SHOULD case NON_STRICT: both are "fails" here
    failed = {r.case.id for r in run.result.records if r.outcome in MISSES}
    details = {r.case.id: f"{r.outcome.value}: {r.actual}" for r in run.result.records
               if r.outcome in MISSES}
    expected = EXPECTED[mode]
    assert failed == expected, (
        f"{mode} ({MISTAKES[mode]}):\n"
        f"  failed but not expected: {sorted(failed - expected)}\n"
        f"  expected but passed:     {sorted(expected - failed)}\n"
        + "\n".join(f"  {k}: {v}" for k, v in sorted(details.items()) if k not in expected)
    )
    assert all(r.outcome is (Outcome.NON_STRICT if r.case.level is Level.SHOULD
                              else Outcome.FAILED)
               for r in run.result.records if r.case.id in failed)
    others = {r.case.id: r.outcome for r in run.result.records if r.case.id not in failed}
    assert all(o in (Outcome.PASSED, Outcome.INFORMATIONAL, Outcome.SKIPPED)
               for o in others.values()), {k: o for k, o in others.items()
                                           if o not in (Outcome.PASSED, Outcome.INFORMATIONAL,
                                                        Outcome.SKIPPED)}
    skipped = {r.case.id for r in run.result.records if r.outcome is Outcome.SKIPPED}
    assert skipped == set(skips(mode))
    assert run.result.exit_code() == 1
