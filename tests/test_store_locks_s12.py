"""The SQLite store's lock files stay open between two steps of the same name (#12).

:class:`vrmproto.store._locks.FileLocks` unlocks a released lock file and keeps its descriptor
(the last ``IDLE_FILES`` names), so the next step of the same relationship only locks it again:
no open, close or path look-up. These tests hold that the kept descriptor still excludes every
other holder, that a file swept away (by another store object) while kept is noticed and the
name's new file locked instead, that at most ``IDLE_FILES`` files stay open, and that closing
the store closes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vrmproto.store import SQLiteStore
from vrmproto.store import _locks as store_locks
from vrmproto.store._locks import IDLE_FILES, FileLocks


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_a_second_step_locks_the_file_it_kept_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = FileLocks(tmp_path / "locks")
    async with a.hold(b"t"):
        pass
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str, *args: int) -> int:
        opened.append(str(path))
        return real_open(path, *args)

    monkeypatch.setattr(store_locks.os, "open", counting_open)
    for _ in range(3):
        async with a.hold(b"t"):
            pass
    assert opened == []
    a.close()


async def test_a_kept_file_still_excludes_others(tmp_path: Path) -> None:
    a = FileLocks(tmp_path / "locks")
    b = FileLocks(tmp_path / "locks")
    async with a.hold(b"t"):
        pass
    async with b.hold(b"t"):
        pass  # b's first lock swept a's kept file away; both now keep the name's file open
    async with a.hold(b"t"):
        assert b._try(b"t") is None  # held elsewhere (b keeps its descriptor for later)
    async with b.hold(b"t"):
        assert a._try(b"t") is None
    a.close()
    b.close()


async def test_a_kept_file_swept_away_is_noticed(tmp_path: Path) -> None:
    """Another store object's sweep unlinks the file ``a`` keeps open (nobody holds it): ``a``'s
    next step locks the name's new file, which a third object then cannot lock."""
    a = FileLocks(tmp_path / "locks")
    b = FileLocks(tmp_path / "locks")
    async with a.hold(b"t"):
        pass
    assert b.sweep() == 1
    assert not (tmp_path / "locks" / b"t".hex()).exists()
    c = FileLocks(tmp_path / "locks")
    async with a.hold(b"t"):
        assert (tmp_path / "locks" / b"t".hex()).exists()
        assert c._try(b"t") is None  # held: a locked the file the name leads to
    got = c._try(b"t")
    assert got is not None
    assert got[0] >= 0
    os.close(got[0])
    a.close()
    b.close()
    c.close()


async def test_at_most_idle_files_stay_open_and_close_closes_them(tmp_path: Path) -> None:
    before = open_fds()
    store = await SQLiteStore.open(tmp_path / "vrm.db")
    with_store = open_fds()
    for i in range(IDLE_FILES * 2):
        async with store.lock(b"n%d" % i):
            pass
    assert open_fds() - with_store == IDLE_FILES
    async with store.lock(b"n0"):  # long evicted: opened again
        pass
    assert open_fds() - with_store == IDLE_FILES
    await store.close()
    assert open_fds() == before
