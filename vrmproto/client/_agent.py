"""The customer's agent: one person's keys, relationships and outbox, talking to many vendors.

:class:`Agent` is the node logic the ``vrm`` command line and the demo drive. It holds one
:class:`~vrmproto.MasterSeed` and derives every identity from it: a pairwise key per vendor,
moved on by each rotation (§2.3, §2.6), and a throw-away key per intentcast (§2.4) — so vendors
cannot correlate the person across each other. Everything it knows is in the
:class:`~vrmproto.store.Store`; restarting from the same store resumes every relationship.

Every message goes through the :class:`~vrmproto.client.Outbox` (persist before sending, deliver
in order per thread, queue what cannot be delivered now). The many-vendor operations —
:meth:`Agent.update_address` and :meth:`Agent.intentcast` — fan out in parallel with a progress
callback (:mod:`vrmproto.client._fanout`).

A relationship is named by a *ref*: its 16-byte thread id, the thread id in hex (or a unique
prefix of at least 6 hex digits), or the vendor's name or base URL (the agreed relationship with
that vendor, else the most recent one). Text with ``://`` in it is a URL and matches addresses
only: a name is the vendor's own claim, and a vendor naming itself after another's URL must not
be what that URL names.

The operations live in modules named for what they own, each a part of :class:`Agent`:
:mod:`._terms` (opening a relationship), :mod:`._data` (shares, withdrawals, requests, the
address update), :mod:`._intents` (intentcasts), :mod:`._reconcile` (views, history,
reconciliation); what they share is :mod:`._agent_base`, what they return :mod:`._views`.
"""

from __future__ import annotations

from vrmproto.client._data import DataOps
from vrmproto.client._intents import IntentOps
from vrmproto.client._reconcile import MAX_LOST_ROTATIONS, HistoryOps
from vrmproto.client._terms import TermsOps
from vrmproto.client._views import (
    DEFAULT_TERMS,
    FANOUT_RETRY,
    ConnectResult,
    ConnectStatus,
    IntentcastResult,
    KeyChangedError,
    Offer,
    Reconciliation,
    Ref,
    RelationshipView,
)

__all__ = [
    "DEFAULT_TERMS",
    "FANOUT_RETRY",
    "MAX_LOST_ROTATIONS",
    "Agent",
    "ConnectResult",
    "ConnectStatus",
    "IntentcastResult",
    "KeyChangedError",
    "Offer",
    "Reconciliation",
    "Ref",
    "RelationshipView",
]


class Agent(TermsOps, DataOps, IntentOps, HistoryOps):
    """A customer's node logic: see the module docstring. Open with :meth:`open`."""
