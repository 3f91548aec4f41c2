"""The agent's shortcuts of issue #12's share path, held to the code they stand for.

- :func:`vrmproto._quick.quick_make` builds what ``cls(...)`` builds — every signature
  ``cls`` takes, defaults, factories, keyword-only fields, ``__post_init__`` and its refusals —
  and is the class itself wherever that cannot be promised;
- the store records the agent builds with it (a Commit, a thread record, a share note, outbox
  items) are the ones the classes build;
- :func:`vrmproto.client._drafts.with_status` is ``dataclasses.replace(note, status=…)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from vrmproto._quick import quick_make
from vrmproto.client import _drafts, _ledger, _meta, _outbox, _sending
from vrmproto.store import Commit, NewOutboxItem, OutboxItem, ShareNote, ThreadKind, ThreadRecord


def _variety() -> type[Any]:
    @dataclass(frozen=True, slots=True)
    class Variety:
        a: int
        b: str = "b"
        c: tuple[int, ...] = field(default_factory=tuple)
        d: list[int] = field(default_factory=list, kw_only=True)
        e: int = field(default=5, kw_only=True)

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("a is never negative")

    return Variety


def _call(make: Any, *args: Any, **kwargs: Any) -> object:
    try:
        got = make(*args, **kwargs)
    except TypeError:  # (its text counts ``self`` in the class's case)
        return TypeError
    except ValueError as exc:
        return ValueError, str(exc)
    return type(got), tuple(getattr(got, f.name) for f in dataclasses.fields(got)), repr(got)


def test_quick_make_builds_what_the_class_builds_for_every_call() -> None:
    cls = _variety()
    make = quick_make(cls)
    assert make is not cls
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}), ((1, "x"), {}), ((1, "x", (2,)), {}), ((1,), {"d": [1], "e": 2}),
        ((), {"a": 1, "b": "z"}), ((-1,), {}), ((), {}), ((1, "x", (), [3]), {}),
        ((1,), {"g": 1}), ((1,), {"a": 2}),
    ]  # fmt: skip
    for args, kwargs in calls:
        assert _call(make, *args, **kwargs) == _call(cls, *args, **kwargs), (args, kwargs)
    one, two = make(1), make(1)
    assert one.d is not two.d  # a fresh list from the factory, each time
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.__setattr__("a", 2)
    assert cls.__init__.__code__.co_filename == "<string>"  # the class itself is left alone


@dataclass(frozen=True)
class _NoSlots:
    a: int


@dataclass(frozen=True, slots=True)
class _NotTaken:
    a: int
    b: int = field(default=0, init=False)


@pytest.mark.parametrize("cls", [int, _NoSlots, _NotTaken])
def test_quick_make_is_the_class_itself_where_it_cannot_promise_the_same(cls: type[Any]) -> None:
    assert quick_make(cls) is cls


H = bytes(range(32))
T = bytes(16)


def test_the_records_of_the_share_path_are_the_classes_own() -> None:
    """Each shortcut the share path uses builds the class's object, field for field."""
    assert _ledger._new_commit is not Commit
    kw = {"relationships": (), "history": (), "outbox_done": (3,), "share_notes": ()}
    assert _ledger._new_commit(**kw) == Commit(**kw)  # type: ignore[arg-type]
    assert type(_ledger._new_commit()) is Commit
    rec = {"thread": T, "kind": ThreadKind.VENDOR, "vendor_key": H, "name": "Acme",
           "inbox": "https://a/inbox", "history_url": "https://a/history", "lifetime_ms": 9,
           "generation": 2, "last_activity_ms": 7, "types": ("data.share",)}  # fmt: skip
    assert _meta._new_thread_record(**rec) == ThreadRecord(**rec)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="intent_id"):  # its __post_init__ still refuses
        _meta._new_thread_record(**{**rec, "kind": ThreadKind.INTENT})
    note = (H, T, "Acme", (("email", "a@b"),), (1,), (2,), 10, 5, "queued")
    assert _drafts._new_note(*note) == ShareNote(*note)
    assert _drafts._new_note(*note, withdrawn_ms=4) == ShareNote(*note, withdrawn_ms=4)
    new = ("https://a", T, H, b"env", 5, 6)
    assert _sending._new_outbox_item(*new) == NewOutboxItem(*new)
    item = (7, "https://a", T, H, b"env", 0, 5, "", 6)
    assert _outbox._new_item(*item) == OutboxItem(*item)
    assert _outbox.queued(7, NewOutboxItem(*new)) == OutboxItem(*item)


@pytest.mark.parametrize("withdrawn", [None, 12])
def test_with_status_is_replace(withdrawn: int | None) -> None:
    note = ShareNote(H, T, "Acme", (("email", "a@b"),), (1,), (2,), 10, 5, "queued", withdrawn)
    for status in ("confirmed", "refused", "dropped"):
        got = _drafts.with_status(note, status)
        assert got == dataclasses.replace(note, status=status)
        assert [f.name for f in dataclasses.fields(got)] == [f.name for f in
                                                             dataclasses.fields(ShareNote)]


def test_random_ids_are_fresh_in_threads_and_in_a_forked_child() -> None:
    """The agent's ids come from ``os.urandom`` in batches: none is handed out twice, by two
    threads at once or by a child forked while ids wait in the batch."""
    import os  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from vrmproto.client import _transport  # noqa: PLC0415

    make = _transport.default_random_id
    got: list[bytes] = []

    def draw() -> None:
        got.extend(make() for _ in range(2_000))

    workers = [threading.Thread(target=draw) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(got) == 8_000 == len(set(got))
    assert all(type(i) is bytes and len(i) == 16 for i in got)
    make()  # the batch holds ids now
    assert _transport._ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent, then out at once
        os.write(write, b"".join(make() for _ in range(8)))
        os._exit(0)
    os.close(write)
    child = os.read(read, 128)
    os.close(read)
    os.waitpid(pid, 0)
    ours = b"".join(make() for _ in range(8))
    assert len(child) == 128
    assert {child[i : i + 16] for i in range(0, 128, 16)}.isdisjoint(
        ours[i : i + 16] for i in range(0, 128, 16))
