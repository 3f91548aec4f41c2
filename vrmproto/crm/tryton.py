"""A Tryton database kept in step with the vendor's event feed (issue 14; docs/events.md).

Needs ``pip install 'vrmproto[tryton]'`` (trytond, trytond-party, trytond-sale-opportunity)::

    bridge = await TrytonBridge.create("crm", path=Path("/var/lib/tryton"), company="Acme")
    await bridge.run(endpoint.events)          # until cancelled; a restart resumes

- :class:`TrytonBridge` — the asyncio pump: reads the feed after the cursor Tryton keeps and
  applies each event on a thread of its own.
- :class:`TrytonCRM` — the blocking part: one Tryton transaction per event, idempotent.
- :data:`MODULES` — the Tryton modules it writes to.
- :class:`FeedRewound` — the feed no longer holds what Tryton applied at its cursor (the
  vendor's store restored from a backup): ``run(..., after=0)`` goes through it again.
"""

from vrmproto.crm._bridge import FeedRewound, TrytonBridge
from vrmproto.crm._tryton import MODULES, TrytonCRM

__all__ = ["MODULES", "FeedRewound", "TrytonBridge", "TrytonCRM"]
