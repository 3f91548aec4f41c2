"""Fan-out: one message to many vendors at once, with progress and an honest stopwatch.

The brief's "parallel, not serial": an address update or an intentcast goes to every vendor
concurrently, at most ``concurrency`` requests in flight (a semaphore), each request with its own
timeout. Each vendor's outcome is reported separately — confirmed with a verified receipt,
queued in the outbox, refused with the vendor's problem code, or failed before anything was
sent — and a progress callback hears of each start and each outcome as it happens, so a
command line can draw live progress. :attr:`FanoutReport.elapsed_s` is wall time measured
around the whole fan-out with :func:`time.perf_counter`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from vrmproto._errors import PeerProblemError, VrmError
from vrmproto.client._outbox import Delivery

__all__ = [
    "DEFAULT_CONCURRENCY",
    "FanoutReport",
    "Progress",
    "ProgressEvent",
    "Stage",
    "Target",
    "VendorResult",
    "fan_out",
]

DEFAULT_CONCURRENCY = 64

log = logging.getLogger("vrmproto.client")

Stage = Literal["started", "confirmed", "queued", "refused", "failed"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """Whom one branch of a fan-out goes to."""

    vendor: str  # a name for people
    url: str  # the vendor's base URL
    thread: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of one vendor's branch: ``started``, then exactly one outcome."""

    vendor: str
    url: str
    stage: Stage
    thread: bytes | None = None
    detail: str = ""
    index: int = 0  # the branch's position in the fan-out
    total: int = 0
    delivery: Delivery | None = None  # with an outcome: the branch's delivery, if any


Progress = Callable[[ProgressEvent], None]


@dataclass(frozen=True, slots=True)
class VendorResult:
    """One vendor's outcome; ``code`` is the problem code when ``status == "refused"``."""

    vendor: str
    url: str
    status: Stage
    thread: bytes | None = None
    delivery: Delivery | None = None
    error: VrmError | None = None
    code: str | None = None
    elapsed_s: float = 0.0

    @property
    def detail(self) -> str:
        return str(self.error) if self.error is not None else ""


@dataclass(frozen=True, slots=True)
class FanoutReport:
    """Every vendor's outcome, in the order the targets were given, and the wall time;
    ``skipped``: vendors left out before anything was sent (an address update
    ``only_held``, to a vendor that holds none of its fields)."""

    results: tuple[VendorResult, ...]
    elapsed_s: float
    concurrency: int
    skipped: tuple[Target, ...] = ()

    def by_status(self, status: Stage) -> tuple[VendorResult, ...]:
        return tuple(r for r in self.results if r.status == status)

    @property
    def confirmed(self) -> tuple[VendorResult, ...]:
        return self.by_status("confirmed")

    @property
    def queued(self) -> tuple[VendorResult, ...]:
        return self.by_status("queued")

    @property
    def refused(self) -> tuple[VendorResult, ...]:
        return self.by_status("refused")

    @property
    def failed(self) -> tuple[VendorResult, ...]:
        return self.by_status("failed")

    def counts(self) -> dict[str, int]:
        return {s: len(self.by_status(s)) for s in ("confirmed", "queued", "refused", "failed")}


def _result(target: Target, d: Delivery, elapsed: float) -> VendorResult:
    if d.status == "confirmed":
        return VendorResult(target.vendor, target.url, "confirmed", d.thread, d, None, None,
                            elapsed)
    if d.status == "refused":
        code = d.error.code if isinstance(d.error, PeerProblemError) else None
        return VendorResult(target.vendor, target.url, "refused", d.thread, d, d.error, code,
                            elapsed)
    if d.status == "queued":
        return VendorResult(target.vendor, target.url, "queued", d.thread, d, d.error, None,
                            elapsed)
    return VendorResult(target.vendor, target.url, "failed", d.thread, d, d.error, None, elapsed)


async def fan_out(
    targets: Sequence[tuple[Target, T]],
    job: Callable[[T], Awaitable[Delivery]],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Progress | None = None,
    name_of: Callable[[Delivery], str | None] | None = None,
) -> FanoutReport:
    """Run ``job(arg)`` for every ``(target, arg)``, at most ``concurrency`` at a time.

    One vendor's failure never affects another: whatever a job raises (short of cancellation)
    becomes that vendor's ``failed`` result — a :class:`~vrmproto.VrmError` or
    :class:`LookupError` as it is, anything else (a fault, say in a crypto library fed a hostile
    vendor's key) as a :class:`~vrmproto.VrmError` naming it — and every branch has finished
    when this returns, so nothing the caller closes afterwards (the store) is still in use.

    ``name_of``: the vendor's name learnt in the branch (an intentcast's target given as a bare
    URL is named by the discovery document it fetched), for the outcome's event and result.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sem = asyncio.Semaphore(concurrency)
    total = len(targets)

    def tell(target: Target, index: int, r: VendorResult | None = None) -> None:
        """The branch started (``r`` None), or ended with ``r``."""
        if progress is None:
            return
        if r is None:
            progress(ProgressEvent(target.vendor, target.url, "started", target.thread,
                                   index=index, total=total))  # fmt: skip
        else:
            progress(ProgressEvent(target.vendor, target.url, r.status, r.thread,
                                   r.code or r.detail, index, total, r.delivery))  # fmt: skip

    async def branch(index: int, target: Target, arg: T) -> VendorResult:
        async with sem:
            tell(target, index)
            t0 = time.perf_counter()
            try:
                d = await job(arg)
            except Exception as exc:  # isolated per vendor: see the docstring
                if isinstance(exc, VrmError):
                    err = exc
                elif isinstance(exc, LookupError):
                    err = VrmError(str(exc))
                else:
                    log.debug("fan-out branch to %s failed", target.url, exc_info=True)
                    err = VrmError(f"unexpected failure: {type(exc).__name__}: {exc}")
                code = exc.code if isinstance(exc, PeerProblemError) else None
                status: Stage = "refused" if code is not None else "failed"
                r = VendorResult(target.vendor, target.url, status, target.thread, None, err,
                                 code, time.perf_counter() - t0)
            else:
                learnt = name_of(d) if name_of is not None else None
                if learnt:
                    target = replace(target, vendor=learnt)
                r = _result(target, d, time.perf_counter() - t0)
            tell(target, index, r)
            return r

    start = time.perf_counter()
    results = await asyncio.gather(*(branch(i, t, a) for i, (t, a) in enumerate(targets)))
    return FanoutReport(tuple(results), time.perf_counter() - start, concurrency)
