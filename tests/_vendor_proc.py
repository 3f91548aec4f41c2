"""Helpers for the server tests, and a vendor server to run as a subprocess.

As a script: ``python tests/_vendor_proc.py <db path> <vendor seed hex> [header timeout ms]``
opens a SQLiteStore at the path, serves the reference vendor endpoint on 127.0.0.1 (a free
port), prints the port on stdout and serves until it is killed or its stdin closes.

As a module: :class:`Customer`, the customer's side of one relationship driving a vendor over
HTTP, and small helpers to post bytes and to craft envelopes the core would never build.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from vrmproto import (
    DEFAULT_LIMITS,
    AddressUpdate,
    Body,
    DataRequest,
    DataShare,
    DataWithdraw,
    FieldsContent,
    Identity,
    Received,
    Relationship,
    Role,
    Signed,
    TermRef,
    TermsOffer,
    encode,
    latest,
    open_envelope,
)
from vrmproto._binding import CONTENT_TYPE, DEFAULT_INBOX_PATH, decode_replies
from vrmproto._keys import Context, sha256
from vrmproto._vocab import DATA_FORMAT
from vrmproto.server import DEFAULT_CONNECTION_LIMITS, Endpoint, ReferencePolicy, serve
from vrmproto.store import SQLiteStore, Store

VENDOR_SEED = bytes(range(32))
ACCEPTED = ("vrm.no-tracking", "vrm.no-third-party", "vrm.return-on-request")
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def terms(*ids: str) -> tuple[TermRef, ...]:
    refs = []
    for term_id in ids:
        term = latest(term_id)
        if term_id == "vrm.return-on-request":
            refs.append(TermRef.of(term, format=DATA_FORMAT))
        elif term_id == "vrm.delete-after":
            refs.append(TermRef.of(term, days=30))
        else:
            refs.append(TermRef.of(term))
    return tuple(refs)


@dataclass
class Reply:
    """An HTTP answer: status, body bytes and headers."""

    status: int
    body: bytes
    headers: dict[str, str]

    def problem(self) -> Any:
        """The signed problem body, verified (raises if it is not one)."""
        msg = open_envelope(self.body, now=now_ms())
        assert msg.type == "problem", msg.type
        return msg


async def post(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    *,
    content_type: str | None = CONTENT_TYPE,
) -> Reply:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    async with session.post(url, data=data, headers=headers) as resp:
        body = await resp.read()
        return Reply(resp.status, body, dict(resp.headers))


class Customer:
    """One customer key in one relationship with a vendor, over HTTP."""

    def __init__(
        self,
        vendor: Identity,
        *,
        identity: Identity | None = None,
        thread: bytes | None = None,
        base_url: str = "",
    ) -> None:
        self.vendor = vendor
        self.rel = Relationship(
            role=Role.CUSTOMER,
            identity=identity or Identity(os.urandom(32)),
            thread=thread or os.urandom(16),
            peer_key=vendor.public_key,
            peer_enc_key=vendor.enc_public_key,
        )
        self.base_url = base_url

    @property
    def identity(self) -> Identity:
        """Our current key in the relationship (it changes when we rotate)."""
        return self.rel.identity

    @property
    def thread(self) -> bytes:
        return self.rel.thread

    @property
    def inbox(self) -> str:
        return self.base_url + DEFAULT_INBOX_PATH

    def send(self, body: Body, *, msg_id: bytes | None = None) -> Signed[Any]:
        return self.rel.send(body, now=now_ms(), msg_id=msg_id or os.urandom(16)).message

    def offer(self, *ids: str) -> Signed[Any]:
        return self.send(TermsOffer(terms=terms(*ids), enc_key=self.identity.enc_public_key))

    def share(self, fields: dict[str, str], *, purposes: tuple[int, ...] = (2,),
              categories: tuple[int, ...] = (2,)) -> Signed[Any]:  # fmt: skip
        assert self.rel.agreement is not None
        msg_id = os.urandom(16)
        sealed = self.rel.seal(FieldsContent(fields=fields), msg_id=msg_id)
        return self.send(
            DataShare(agreement=self.rel.agreement, purposes=purposes, categories=categories,
                      expires=now_ms() + DAY_MS, sealed=sealed),
            msg_id=msg_id,
        )  # fmt: skip

    def address(self, fields: dict[str, str]) -> Signed[Any]:
        assert self.rel.agreement is not None
        msg_id = os.urandom(16)
        sealed = self.rel.seal(FieldsContent(fields=fields), msg_id=msg_id)
        return self.send(AddressUpdate(agreement=self.rel.agreement, sealed=sealed),
                         msg_id=msg_id)  # fmt: skip

    def withdraw(self, *shares: bytes) -> Signed[Any]:
        assert self.rel.agreement is not None
        return self.send(DataWithdraw(agreement=self.rel.agreement, shares=shares))

    def request(self) -> Signed[Any]:
        assert self.rel.agreement is not None
        return self.send(DataRequest(agreement=self.rel.agreement, format=DATA_FORMAT))

    def absorb(self, reply: Reply, sent: Signed[Any]) -> list[Received]:
        """Check a 200: the receipt first, acknowledging ``sent``; apply every reply."""
        assert reply.status == 200, (reply.status, reply.body[:200])
        assert reply.headers["Content-Type"] == CONTENT_TYPE
        envelopes = decode_replies(reply.body, limits=DEFAULT_LIMITS)
        receipt = open_envelope(envelopes[0], now=now_ms(), recipients=(self.identity.public_key,))
        assert receipt.type == "receipt"
        assert receipt.sender == self.vendor.public_key or receipt.sender == self.rel.peer_key
        assert receipt.body.ack == sent.hash
        return [self.rel.receive(env, now=now_ms()) for env in envelopes]

    async def deliver(self, session: aiohttp.ClientSession, msg: Signed[Any]) -> list[Received]:
        return self.absorb(await post(session, self.inbox, msg.envelope), msg)

    async def agree(self, session: aiohttp.ClientSession, *ids: str) -> None:
        got = await self.deliver(session, self.offer(*(ids or ACCEPTED)))
        assert [r.message.type for r in got] == ["receipt", "terms.accept"]


def craft(
    identity: Identity,
    header: dict[str, Any],
    body: bytes,
    *,
    envelope: dict[str, Any] | None = None,
    signature: bytes | None = None,
) -> bytes:
    """Envelope bytes from a raw header map, signed by ``identity`` (or with ``signature``)."""
    hdr = encode(header)
    sig = signature if signature is not None else identity.sign(Context.MESSAGE, hdr)
    env: dict[str, Any] = {"body": body, "hdr": hdr, "sig": sig}
    env.update(envelope or {})
    return encode(env)


def header_for(identity: Identity, recipient: bytes, body: bytes, **kw: Any) -> dict[str, Any]:
    """A well-formed header map for a terms.offer ``body``; keyword arguments override fields
    (``type=``, ``v=``, and ``**{"from": key}``)."""
    now = now_ms()
    fields: dict[str, Any] = {
        "body": sha256(body),
        "created": now,
        "expires": now + DAY_MS,
        "from": identity.public_key,
        "id": os.urandom(16),
        "prev": None,
        "thread": os.urandom(16),
        "to": recipient,
        "type": "terms.offer",
        "v": 1,
    }
    fields.update(kw)
    return fields


# -- the vendor server subprocess ---------------------------------------------------------------


async def _serve(db: Path, seed: bytes, header_timeout_ms: int | None = None) -> None:
    """``header_timeout_ms``: the connections' header deadline (§10.1-5), else the default."""
    store = await SQLiteStore.open(db)
    endpoint = Endpoint(
        Identity(seed),
        store=store,
        policy=ReferencePolicy(accepts_terms=ACCEPTED),
        name="crash-test vendor",
    )
    limits = DEFAULT_CONNECTION_LIMITS
    if header_timeout_ms is not None:
        limits = dataclasses.replace(limits, header_timeout_ms=header_timeout_ms)
    server = await serve(endpoint, connection_limits=limits)
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    await store.close()


if __name__ == "__main__":
    timeout = int(sys.argv[3]) if len(sys.argv) > 3 else None
    asyncio.run(_serve(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]), timeout))


class InProcessVendor:
    """The reference :class:`Endpoint` of :data:`VENDOR_SEED` on ``store``, in this process: a
    :class:`Customer`'s message is handed to it directly (no HTTP) and must be taken (200)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.endpoint = Endpoint(Identity(VENDOR_SEED), store=store,
                                 policy=ReferencePolicy(accepts_terms=ACCEPTED))  # fmt: skip

    async def deliver(self, c: Customer, msg: Any) -> None:
        r = await self.endpoint.handle_inbox(msg.envelope)
        assert r.status == 200, r.body
        c.absorb(Reply(r.status, r.body, dict(r.headers)), msg)
