"""Everyday ``vrm`` (found by s16-hunt-agent).

- ``vrm outbox run`` whose only message the vendor refused ended "vrm: 0 message(s) still
  waiting (`vrm outbox` says why)" — and ``vrm outbox`` then said "every message was
  delivered", of one that was refused. Now the run says what was refused or dropped, and what
  still waits, each only when there is some; the empty outbox says nothing waits.
- ``vrm connect Wasatch`` — the start of a known vendor's name, which ``vrm share Wasatch``
  takes — looked for "Wasatch" on the local network for 2 s and failed (exit 2); now it names
  the vendor as ``vrm share`` does (one vendor whose name starts so; several are ambiguous).
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from tests._cli_helpers import new_home, ok, vendor_host, vrm
from vrmproto import PeerProblemError
from vrmproto.cli._cmd_outbox import _report_run
from vrmproto.cli._context import Env
from vrmproto.client import Delivery, OutboxRun, TransportError
from vrmproto.client._waiting import Waiting, WaitReason

THREAD = os.urandom(16)


def run_report(capsys: pytest.CaptureFixture[str], *deliveries: Delivery,
               left: int) -> tuple[int, str]:  # fmt: skip
    waiting = [Waiting(THREAD, os.urandom(16), "data.share", WaitReason.UNREACHABLE)] * left
    with pytest.raises(click.exceptions.Exit) as info:
        _report_run(Env(json=True), OutboxRun(deliveries), {THREAD: "Acme"}, waiting)
    return info.value.exit_code, capsys.readouterr().err


def test_outbox_run_says_what_was_refused_and_what_still_waits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused = Delivery(THREAD, os.urandom(16), os.urandom(32), "refused", type="data.share",
                       error=PeerProblemError("no_relationship", "unknown thread"))
    queued = Delivery(THREAD, os.urandom(16), os.urandom(32), "queued", type="data.share",
                      error=TransportError("POST x: connection refused"))
    code, err = run_report(capsys, refused, left=0)
    assert code == 1
    assert "1 message(s) refused or dropped" in err
    assert "still waiting" not in err
    code, err = run_report(capsys, queued, left=1)  # still queued: 3 (the s17 contract)
    assert (code, "refused" in err) == (3, False)
    assert "1 message(s) still waiting" in err
    code, err = run_report(capsys, refused, queued, left=1)
    assert "1 message(s) refused or dropped (see above); 1 message(s) still waiting" in err


def test_connect_names_a_known_vendor_by_the_start_of_its_name(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        ok(vrm("connect", host["outfitters"].url, home=home))
        r = ok(vrm("connect", "wasatch", "--interface", "203.0.113.1", home=home))
        assert "already connected" in r.stdout, r
        assert "local network" not in r.stderr, r
        assert "The outbox is empty: nothing waits" in ok(vrm("outbox", home=home)).stdout


def test_connect_by_name_goes_where_the_vendor_is_now(tmp_path: Path) -> None:
    """``vrm connect NAME`` went to the URL of the *least* recently active relationship with
    that name: after a vendor moved (an ended relationship at its old address, a live one at
    the new), to the old address, where nothing answers."""
    home = new_home(tmp_path)
    with vendor_host("outfitters") as host:
        v = host["outfitters"]
        old = v.url
        ok(vrm("connect", old, home=home))
        ok(vrm("end", "Wasatch Outfitters", home=home))
        host.stop("outfitters")
        v.port = 0  # the same vendor (its key, its data) at another address
        host.start("outfitters")
        assert v.url != old
        ok(vrm("connect", v.url, home=home))
        r = ok(vrm("connect", "Wasatch Outfitters", home=home))
        assert "already connected" in r.stdout, r
        assert v.url in r.stdout, r
