"""An unspecified address is this machine (§13.1-7, §15.4-6): Linux connects 0.0.0.0, any
0.0.0.0/8 address and ``::`` to the machine itself. They counted as a local network's, so a
vendor on the local network whose document (or redirect) named ``http://0.0.0.0:631/`` sent the
agent to the person's own machine — no nearer, by that count, than where it came from.
"""

from __future__ import annotations

import pytest

from vrmproto._hosts import host_class, nearer


@pytest.mark.parametrize("host", ["0.0.0.0", "0.1.2.3", "0", "::", "::ffff:0.0.0.0", "0x0.1"])
def test_an_unspecified_address_is_this_machine(host: str) -> None:
    assert host_class(host) == "loopback"


def test_a_local_vendor_cannot_send_the_agent_to_this_machine_by_0_0_0_0() -> None:
    assert nearer("http://192.168.1.5:8421/", "http://0.0.0.0:631/printers")
    assert nearer("http://192.168.1.5:8421/", "http://[::]:22/")
    assert not nearer("http://192.168.1.5:8421/", "http://192.168.1.6/")
