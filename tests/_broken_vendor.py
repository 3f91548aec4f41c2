"""The reference vendor, and the same vendor with one rule switched off or wrong.

As a script: ``python tests/_broken_vendor.py MODE`` serves the reference vendor endpoint on
127.0.0.1 (a free port) with the mistake ``MODE`` (a key of :data:`MISTAKES`, a mutant of
``tests/_mutants.py``, or ``reference`` for none), prints the port on stdout and serves until its
stdin closes.

Each mistake is made by monkeypatching module attributes in THIS process only, before the
endpoint starts. The conformance suite runs in another process and verifies every reply with the
real core, so a patch here can never corrupt the checker.

:class:`Vendors` starts each such vendor forked from one ``tests/_forkserver.py`` server that has
imported all that once (and the mutants): the tests that run the suite against many vendors at
once start each in milliseconds instead of half a second of one core spent importing the server.

As a module: :func:`make_endpoint` builds the endpoint both this script and
``tests/test_conformance_reference.py`` serve, so the reference run and the broken runs test the
same vendor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from _forkserver import AsyncRun, ForkServer

from vrmproto import _envelope, _keys, _rules
from vrmproto._errors import DecodeError, Problem, SignatureError, ValidationError
from vrmproto._keys import Identity
from vrmproto._limits import Limits
from vrmproto.server import (
    ConnectionLimits,
    Endpoint,
    ReferencePolicy,
    _accept,
    _app,
    _endpoint,
    _held,
    serve,
)
from vrmproto.server._ratelimit import RateLimiter
from vrmproto.store import MemoryStore

#: The terms the test vendor agrees to (§6.5-1); the rest of the roster it refuses.
ACCEPTS = ("vrm.no-tracking", "vrm.no-third-party", "vrm.return-on-request", "vrm.delete-after")

#: The default limits, but a two-second body read timeout so that WIRE-016 (§12.9-4) waits two
#: seconds instead of ten. (Not one: tests/test_conformance_broken.py runs 13 suites in one event
#: loop beside 13 vendor processes, and on two busy cores WIRE-014's quarter-second trickle then
#: met a one-second deadline.)
LIMITS = Limits(body_read_timeout_ms=2_000)

#: Connection deadlines of one and two seconds, so that CONN-001 and CONN-002 (§10.1) wait that
#: long instead of the default ten and twenty seconds.
CONNECTION_LIMITS = ConnectionLimits(header_timeout_ms=1_000, idle_timeout_ms=2_000)

#: The suite's per-case time limit against these vendors (``run_suite(timeout_per_case=…)``).
#: The connection deadlines are not published, so CONN-001, -002, -004 and -005 wait for a close
#: up to the ceiling of §10.1-5 and two seconds (22 s, spec §14.2), and CONN-004 first spends up
#: to a quarter of that sending: a lower limit would grade a close that comes within what the
#: case allows by the clock instead of by the case. With :data:`CONNECTION_LIMITS` these cases
#: end within seconds, so the limit costs time only where a case hangs.
CASE_TIME_LIMIT_S = 30.0

VENDOR_SEED = bytes(range(32))

SCRIPT = Path(__file__).resolve()

#: How long the "receipt-before-commit" vendor waits before it stores what it acknowledged.
LATE_COMMIT_S = 1.5

#: mode -> the mistake, in words.
MISTAKES: dict[str, str] = {
    "skip-signatures": "does not verify message or sealed-content signatures (§3.5-3)",
    "no-dedupe": "keeps no replay records and does not coalesce duplicates (§12.6)",
    "accept-expired": "accepts messages whose expires has passed (§4.5-3)",
    "ignore-recipient": "does not check that a message is addressed to its key (§4.5-2)",
    "share-without-agreement": "does not check that a data message names the agreement (§5.3-1)",
    "receipt-before-commit": "answers first and stores 1.5 s later, in the background (§12.7-1)",
    "500-on-malformed": "answers undecodable envelopes with 500 internal_error (§12.4-2)",
    "bad-signature-as-malformed": "reports a signature that does not verify as malformed "
    "(§3.5-3, §9.1-2)",
    "unsigned-discovery": "serves its discovery document without the Vrm-Signature (§13.1-2)",
    "malleable-signatures": "verifies S mod L, so the S + L form of a signature passes (§3.5-3)",
    "no-rate-limit": "never limits the rate of a sender (§12.9-5)",
    "keeps-withdrawn-bodies": "does not erase withdrawn shares from its history (§12.10-2)",
    "returns-expired-data": "returns data from shares that have expired (§12.10-4)",
}

_L = 2**252 + 27742317777372353535851937790883648493
_tasks: set[asyncio.Task[None]] = set()
log = logging.getLogger("broken-vendor")


def make_endpoint(store: MemoryStore) -> Endpoint:
    """The vendor every conformance test serves: the reference policy, :data:`LIMITS`."""
    return Endpoint(
        Identity(VENDOR_SEED),
        store=store,
        name="conformance test vendor",
        limits=LIMITS,
        policy=ReferencePolicy(accepts_terms=ACCEPTS, name="conformance test vendor"),
    )


# -- the mistakes ---------------------------------------------------------------------------------


def _patch(owner: object, name: str, value: object) -> None:
    """Replace ``owner.name`` (a module attribute, or a class's method) in this process."""
    assert hasattr(owner, name), f"{owner!r} has no {name}: the patch is out of date"
    setattr(owner, name, value)


def _wrap_open_envelope(change: Callable[..., Any]) -> None:
    """Replace the endpoint's open_envelope (the inbox's verifier) with ``change(real, ...)``."""
    real = getattr(_endpoint, "open_envelope")  # noqa: B009 - not re-exported by the module

    def wrapped(data: bytes, **kw: Any) -> Any:
        return change(real, data, **kw)

    _patch(_endpoint, "open_envelope", wrapped)


def skip_signatures() -> None:
    _patch(_envelope, "verify", lambda context, data, signature, key: None)


def no_dedupe() -> None:
    class Forgetful(dict[Any, Any]):
        def get(self, key: Any, default: Any = None) -> Any:
            return default

    async def no_record(self: MemoryStore, sender: bytes, msg_id: bytes) -> None:
        return None

    real_commit, real_init = _accept.commit_of, Endpoint.__init__

    def commit_without_dedupe(*args: Any, **kw: Any) -> Any:
        return dataclasses.replace(real_commit(*args, **kw), dedupe=())

    def init(self: Endpoint, *args: Any, **kw: Any) -> None:
        real_init(self, *args, **kw)
        self._inflight = Forgetful()

    _patch(MemoryStore, "get_dedupe", no_record)
    _patch(_accept, "commit_of", commit_without_dedupe)
    _patch(Endpoint, "__init__", init)


def accept_expired() -> None:
    def lax(real: Callable[..., Any], data: bytes, **kw: Any) -> Any:
        try:
            return real(data, **kw)
        except ValidationError as exc:
            if exc.code is not Problem.EXPIRED:
                raise
            return real(data, **kw, check_time=False)

    _wrap_open_envelope(lax)


def ignore_recipient() -> None:
    real_init = Endpoint.__init__

    def init(self: Endpoint, *args: Any, **kw: Any) -> None:
        real_init(self, *args, **kw)
        self._recipients = None

    _patch(Endpoint, "__init__", init)


def share_without_agreement() -> None:
    _patch(_rules, "same_agreement", lambda rel, agreement: None)


def receipt_before_commit() -> None:
    real = MemoryStore.commit

    async def later(store: MemoryStore, c: Any) -> None:
        await asyncio.sleep(LATE_COMMIT_S)
        try:
            await real(store, c)
        except Exception:
            log.exception("the late commit failed")

    async def commit(self: MemoryStore, c: Any) -> None:
        task = asyncio.get_running_loop().create_task(later(self, c))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    _patch(MemoryStore, "commit", commit)


def error_on_malformed() -> None:
    def crash(real: Callable[..., Any], data: bytes, **kw: Any) -> Any:
        try:
            return real(data, **kw)
        except DecodeError as exc:
            if exc.code is Problem.MALFORMED:
                raise RuntimeError("cannot decode") from exc
            raise

    _wrap_open_envelope(crash)


def bad_signature_as_malformed() -> None:
    def mislabel(real: Callable[..., Any], data: bytes, **kw: Any) -> Any:
        try:
            return real(data, **kw)
        except SignatureError as exc:
            if exc.code is not Problem.BAD_SIGNATURE:
                raise
            raise DecodeError(exc.detail, clause=exc.clause) from exc

    _wrap_open_envelope(mislabel)


def unsigned_discovery() -> None:
    _patch(_app, "SIGNATURE_HEADER", "X-Not-A-Signature")


def malleable_signatures() -> None:
    real = _keys.verify

    def reduce_s(context: bytes, data: bytes, signature: bytes, key: bytes) -> None:
        if len(signature) == 64:
            s = int.from_bytes(signature[32:], "little") % _L
            signature = signature[:32] + s.to_bytes(32, "little")
        real(context, data, signature, key)

    _patch(_envelope, "verify", reduce_s)


def no_rate_limit() -> None:
    _patch(RateLimiter, "retry_after", lambda self, key: 0)
    _patch(RateLimiter, "take", lambda self, key: 0)


def keeps_withdrawn_bodies() -> None:
    real = _accept.commit_of

    def commit(*args: Any, **kw: Any) -> Any:
        return dataclasses.replace(real(*args, **kw), erase=())

    _patch(_accept, "commit_of", commit)


def returns_expired_data() -> None:
    _patch(_held, "live", lambda held, now: held)


_PATCHES: dict[str, Callable[[], None]] = {
    "skip-signatures": skip_signatures,
    "no-dedupe": no_dedupe,
    "accept-expired": accept_expired,
    "ignore-recipient": ignore_recipient,
    "share-without-agreement": share_without_agreement,
    "receipt-before-commit": receipt_before_commit,
    "500-on-malformed": error_on_malformed,
    "bad-signature-as-malformed": bad_signature_as_malformed,
    "unsigned-discovery": unsigned_discovery,
    "malleable-signatures": malleable_signatures,
    "no-rate-limit": no_rate_limit,
    "keeps-withdrawn-bodies": keeps_withdrawn_bodies,
    "returns-expired-data": returns_expired_data,
}
assert _PATCHES.keys() == MISTAKES.keys()


def _plant(mode: str) -> None:
    """Plant the mistake ``mode``: one of :data:`MISTAKES`, or a mutant of ``_mutants.py``."""
    if mode in _PATCHES:
        _PATCHES[mode]()
    elif mode != "reference":
        from _mutants import MUTANTS  # noqa: PLC0415 - beside this script

        MUTANTS[mode].plant()


def _known(mode: str) -> bool:
    if mode == "reference" or mode in MISTAKES:
        return True
    from _mutants import MUTANTS  # noqa: PLC0415 - beside this script

    return mode in MUTANTS


async def _serve(mode: str) -> None:
    _plant(mode)
    store = MemoryStore()
    server = await serve(make_endpoint(store), connection_limits=CONNECTION_LIMITS)
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    for task in list(_tasks):
        task.cancel()


# -- many vendors, forked from one process -------------------------------------------------------


class VendorDidNotStart(Exception):
    """The vendor printed this instead of its port."""


class Vendors:
    """Vendors with a planted mistake, each ``python tests/_broken_vendor.py MODE`` forked from
    one :class:`~tests._forkserver.ForkServer` that has this module and ``tests/_mutants.py``
    imported: ``async with Vendors() as vendors, vendors.serve(mode) as url: ...``."""

    def __init__(self) -> None:
        self._server: ForkServer | None = None

    async def __aenter__(self) -> Vendors:
        self._server = await asyncio.to_thread(
            ForkServer, [str(SCRIPT), str(SCRIPT.parent / "_mutants.py")], env=dict(os.environ),
            cwd=SCRIPT.parent.parent,
        )  # fmt: skip
        return self

    @contextlib.asynccontextmanager
    async def serve(self, mode: str, timeout: float = 30.0) -> AsyncIterator[str]:  # noqa: ASYNC109
        """Serve ``mode`` (as ``python tests/_broken_vendor.py MODE`` does) while the block
        runs; its URL. Raises :class:`VendorDidNotStart` with what it said instead. At the end
        its stdin closes, and it has :data:`STOP_S` to stop before it is killed."""
        assert self._server is not None
        with tempfile.TemporaryFile() as err:
            async with await AsyncRun.start(self._server, [str(SCRIPT), mode],
                                            env=dict(os.environ), cwd=SCRIPT.parent, stdin=True,
                                            stderr=err.fileno()) as vendor:  # fmt: skip
                try:
                    line = await asyncio.wait_for(vendor.stdout.readline(), timeout)
                    port = line.decode().strip()
                    if not port.isdigit():
                        err.seek(0)
                        said = err.read().decode(errors="replace").strip().splitlines()
                        raise VendorDidNotStart(f"the vendor printed {port!r}, not a port"
                                                f" ({said[-1] if said else 'nothing'})")
                    yield f"http://127.0.0.1:{int(port)}"
                finally:
                    vendor.close_stdin()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(vendor.wait(), STOP_S)

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.close)


#: How long a vendor whose stdin closed may take to stop before it is killed.
STOP_S = 10.0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not _known(argv[1]):
        print(f"usage: {argv[0]} reference|{'|'.join(MISTAKES)}|<a mutant of _mutants.py>",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.CRITICAL)  # the mistakes log; the test reads stdout only
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
