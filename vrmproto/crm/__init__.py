"""Bridges from the vendor's event feed into a CRM (issue 14; the mapping is in docs/events.md).

- :func:`changes_of` — what one feed event asks of any CRM, as typed changes (:class:`Note`,
  :class:`Hold`, :class:`Erase`, :class:`Forget`, :class:`Lead`, :class:`TakeUp`); sans-IO:
  the place to start for a bridge to another CRM.
- :mod:`vrmproto.crm.tryton` — :class:`~vrmproto.crm.tryton.TrytonBridge` keeps a Tryton
  database (``party`` and ``sale_opportunity``) in step with the feed; it needs
  ``pip install 'vrmproto[tryton]'``, and importing this package does not import Tryton.
"""

from vrmproto.crm._changes import Change, Erase, Forget, Hold, Lead, Note, TakeUp, changes_of

__all__ = ["Change", "Erase", "Forget", "Hold", "Lead", "Note", "TakeUp", "changes_of"]
