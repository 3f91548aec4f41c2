"""Which stores let the outbox close a confirmed delivery without waiting for its fsync
(:meth:`~vrmproto.client._sending.Sender._close`, which says when that is safe)."""

from __future__ import annotations

from typing import Protocol

from vrmproto.store import Commit, Store
from vrmproto.store._base import OWN_COMMITS, commit_site

__all__ = ["LazyStore", "may_close_lazily"]


class LazyStore(Protocol):
    async def commit(self, c: Commit, *, durable: bool = True) -> None: ...

    async def commit_ids(self, c: Commit, *, durable: bool = True) -> tuple[int, ...]: ...


def may_close_lazily(store: Store) -> LazyStore | None:
    """``store``, if its ``commit`` is the library's: it takes ``durable=False``, and its
    ``commit_ids`` returns the ids given to the outbox items (:class:`~vrmproto.store.Store`);
    None for any other store, whose commits are all durable and say nothing."""
    if commit_site(store) in OWN_COMMITS:  # a replaced commit is called the plain way
        return store  # type: ignore[return-value]  # its commit is one of the library's
    return None
