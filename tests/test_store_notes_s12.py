"""A share note's fields are encoded once for its two writes (queued, then its outcome), and
never given to another note (:func:`vrmproto.store._sqlite_rows.note_row`, #12)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vrmproto.store import Commit, SQLiteStore
from vrmproto.testing.store_contract import T1, T2, note


@pytest.mark.parametrize("inline", [False, True])
async def test_each_note_reads_back_its_own_fields(tmp_path: Path, inline: bool) -> None:
    a = replace(note(T1, "a"), status="queued")
    b = replace(note(T2, "b"), fields=(("city", "Lod"),), status="queued")
    listed = replace(note(T1, "c"), fields=[["zip", "1000"]])  # type: ignore[arg-type]
    async with await SQLiteStore.open(tmp_path / "vrm.db", inline=inline) as s:
        await s.commit(Commit(share_notes=(a,)))
        await s.commit(Commit(share_notes=(b,)))
        done = replace(a, status="confirmed")  # the same fields tuple as a's
        await s.commit(Commit(share_notes=(done,)))
        await s.commit(Commit(share_notes=(replace(b, fields=(("city", "Haifa"),)),)))
        await s.commit(Commit(share_notes=(listed,)))
        listed.fields.append(["zip", "2000"])  # type: ignore[attr-defined]  # a list may change
        await s.commit(Commit(share_notes=(replace(listed, status="confirmed"),)))
        assert {n.share: n for n in await s.share_notes(T1)} == {n.share: n for n in (
            done, replace(listed, fields=(("zip", "1000"), ("zip", "2000")), status="confirmed"))}
        assert [n.fields for n in await s.share_notes(T2)] == [(("city", "Haifa"),)]
