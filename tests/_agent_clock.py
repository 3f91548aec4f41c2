"""What the agent tests that let time pass share: one clock for the agent and the vendor, and a
transport that loses the receipts of ours on their way (the vendor gone just after it answered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vrmproto.client import Unreachable
from vrmproto.client._own import own_header
from vrmproto.testing.transport import MemoryTransport

URL = "http://acme.test"
FIELDS = {"email": "ada@example.org"}
T0 = 1_800_000_000_000
DAY_MS = 86_400_000


@dataclass
class Clock:
    """The time both sides read, in ms: moved on by the test."""

    now: int = T0

    def __call__(self) -> int:
        return self.now


class ReceiptsLost(MemoryTransport):
    """While ``losing``, lets ``through`` receipts of ours through, then loses every other one
    on the way (the vendor is gone just after it answered); down altogether while ``down``."""

    losing = False
    through = 0
    down = False

    async def post_envelope(self, inbox_url: str, envelope: bytes, **kw: Any) -> list[bytes]:
        header = own_header(envelope)
        if self.down:
            raise Unreachable(f"{inbox_url}: connection refused")
        if self.losing and header is not None and header.type == "receipt":
            if self.through <= 0:
                raise Unreachable(f"{inbox_url}: connection refused")
            self.through -= 1
        return await super().post_envelope(inbox_url, envelope, **kw)
