"""The client side of the HTTP transport, and the customer's agent (spec §12, §13).

- :class:`Transport` — the seam between the node and a network: discovery, post an envelope,
  fetch history. :class:`EndpointClient` is the HTTP one (typed errors, bounded retries,
  :class:`RetryPolicy`); ``vrmproto.testing.transport.MemoryTransport`` delivers to an
  in-process endpoint. A new transport moves bytes and reads the peer's :class:`Answer` with
  :func:`discovery_from_answer`, :func:`replies_from_answer`, :func:`history_from_answer` and
  :func:`transient_from_answer`, so that every transport raises the same errors.
- :class:`Agent` — one person's node logic: keys derived from a master seed, relationships in a
  store, a durable outbox, and fan-out to many vendors at once with live progress.
- :class:`CustomerNode` — an :class:`Agent` and the inbound agent endpoint on one ledger.
- :class:`Outbox` — persist before sending, deliver in order per thread, retry with backoff.

Exceptions (besides the core's :class:`~vrmproto.ProtocolError` for bytes that do not
verify)::

    TransportError
    ├── PeerProblemError    refused: a signed, verified problem from the peer
    ├── InvalidResponse     an answer §12 does not allow, or that does not verify
    │   └── PeerRuleError   the peer's document or history breaks a rule (also a ProtocolError)
    ├── Transient           retry later (5xx, 429, 408), with retry_after
    │   └── Unreachable     no answer: connection refused or reset, timeout
    └── Queued              not delivered now; waiting in the outbox

and :class:`KeyChangedError` (a :class:`~vrmproto.ProtocolError`, ``bad_key``): a vendor we
already know answered with another key; ``Agent.connect(url, accept_new_key=…)`` accepts a
legitimate re-key (§11.10-1). A reference that names no relationship (or waiting message) is
:class:`NotFound` (also a ``LookupError``); a store of another master seed,
:class:`ForeignStore` (also a ``ValueError``). Each of them is a :class:`~vrmproto.VrmError`.
"""

from vrmproto._errors import PeerProblemError, TransportError
from vrmproto.client._agent import (
    DEFAULT_TERMS,
    FANOUT_RETRY,
    Agent,
    ConnectResult,
    ConnectStatus,
    IntentcastResult,
    KeyChangedError,
    Offer,
    Reconciliation,
    Ref,
    RelationshipView,
)
from vrmproto.client._data import Records
from vrmproto.client._errors import (
    ForeignStore,
    InvalidResponse,
    NotFound,
    PeerRuleError,
    Queued,
    Transient,
    Unreachable,
)
from vrmproto.client._fanout import (
    DEFAULT_CONCURRENCY,
    FanoutReport,
    Progress,
    ProgressEvent,
    Stage,
    Target,
    VendorResult,
    fan_out,
)
from vrmproto.client._http import EndpointClient
from vrmproto.client._node import CatchUp, CustomerNode
from vrmproto.client._outbox import DEFAULT_SCHEDULE, Delivery, DeliveryStatus, Outbox, OutboxRun
from vrmproto.client._transport import (
    NO_RETRY,
    Answer,
    RetryPolicy,
    Transport,
    collect_pages,
    discovery_from_answer,
    history_from_answer,
    replies_from_answer,
    transient_from_answer,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_SCHEDULE",
    "DEFAULT_TERMS",
    "FANOUT_RETRY",
    "NO_RETRY",
    "Agent",
    "Answer",
    "CatchUp",
    "ConnectResult",
    "ConnectStatus",
    "CustomerNode",
    "Delivery",
    "DeliveryStatus",
    "EndpointClient",
    "FanoutReport",
    "ForeignStore",
    "IntentcastResult",
    "InvalidResponse",
    "KeyChangedError",
    "NotFound",
    "Offer",
    "Outbox",
    "OutboxRun",
    "PeerProblemError",
    "PeerRuleError",
    "Progress",
    "ProgressEvent",
    "Queued",
    "Reconciliation",
    "Records",
    "Ref",
    "RelationshipView",
    "RetryPolicy",
    "Stage",
    "Target",
    "Transient",
    "Transport",
    "TransportError",
    "Unreachable",
    "VendorResult",
    "collect_pages",
    "discovery_from_answer",
    "fan_out",
    "history_from_answer",
    "replies_from_answer",
    "transient_from_answer",
]
