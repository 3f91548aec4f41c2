"""Names announced without records do not keep a browse from hearing a vendor (s21).

Anyone on a network can send one packet naming dozens of ``_vrm._tcp`` instances that have no
SRV, TXT or address records. Before, each such name took one of the 16 slots a browse resolves
and checks in (``RESOLVE_AT_ONCE``) for up to 3 s while it asked for records that never came:
a vendor heard after them waited, and ``vrm connect NAME`` (a 2 s browse) never found it. Now a
name whose records came with its announcement, as a responder sends them (RFC 6763 §12.1),
is taken from zeroconf's cache without waiting for a slot, and the document checks have slots
of their own. Run in a private network namespace (tests/test_discovery.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.test_discovery import _run_in_namespace

_INSIDE = textwrap.dedent(
    """
    import asyncio, json, socket
    from zeroconf import DNSOutgoing, DNSPointer
    from zeroconf.const import _CLASS_IN, _FLAGS_AA, _FLAGS_QR_RESPONSE, _TYPE_PTR
    from vrmproto import Identity
    from vrmproto.discovery import SERVICE_TYPE, advertise, browse
    from vrmproto.server import Endpoint, ReferencePolicy, serve
    from vrmproto.store import MemoryStore

    def empty_names(count):
        out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
        for i in range(count):
            out.add_answer_at_time(DNSPointer(SERVICE_TYPE, _TYPE_PTR, _CLASS_IN, 4500,
                                              f"Nothing {i}.{SERVICE_TYPE}"), 0)
        return out.packets()

    async def main():
        who = Identity(bytes(range(32)))
        ep = Endpoint(who, store=MemoryStore(), name="Corner Shop", policy=ReferencePolicy())
        server = await serve(ep, "127.0.0.1", 0)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sent = []

        def first_look(found):
            if not sent:  # the browse has begun: the flood goes before the vendor's answer
                for packet in empty_names(40):
                    sender.sendto(packet, ("224.0.0.251", 5353))
                sent.append(True)
            return any(f.name == "Corner Shop" for f in found)

        async with advertise("Corner Shop", server.port, who.public_key):
            found = await browse(2.0, stop_when=first_look)
        sender.close()
        await server.close()
        print(json.dumps([[f.name, f.verified] for f in found]))

    asyncio.run(main())
    """
)


def test_a_flood_of_empty_names_does_not_hide_a_vendor(tmp_path: Path) -> None:
    found = _run_in_namespace(tmp_path, _INSIDE)
    assert ["Corner Shop", True] in found, found
