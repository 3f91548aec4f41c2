"""A free port for a test server that must keep one port across a restart.

Ports the kernel hands out as ephemeral (``net.ipv4.ip_local_port_range``, 32768–60999 on
Linux by default) are also the source ports of every outgoing connection on the machine: one
picked there can be taken by another process's connection between our check and the server's
bind, or between a stop and a restart (seen in CI under load: "address already in use"). So
the port is drawn below that range, where only listeners live.
"""

from __future__ import annotations

import random
import socket

__all__ = ["closed_port", "free_port"]

LOW, HIGH = 20_000, 32_000


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, below the ephemeral range."""
    for _ in range(200):
        port = random.randint(LOW, HIGH)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH}")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound for a moment, then released): a
    vendor or relay that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
