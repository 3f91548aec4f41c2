"""agent.db copied into a directory whose seed is another: the message names the remedy.

A person moving to a new laptop ran ``vrm init`` there, then copied agent.db over from the
old one (instead of ``vrm key import``). Every command then said only "the data directory is
damaged: agent.db belongs to another seed than the one in its seed file" — nothing on what to
do. Now it says to import the seed those relationships were made with (``vrm key import``, the
text ``vrm key export`` printed on the old machine), and that nothing was changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests._cli_helpers import fails, new_home, ok, vrm


def test_a_store_of_another_seed_names_the_remedy(tmp_path: Path) -> None:
    old = new_home(tmp_path / "old")
    ok(vrm("relationships", home=old))  # binds agent.db to the old seed
    new = new_home(tmp_path / "new")
    shutil.copy(old / "agent.db", new / "agent.db")
    before = (new / "agent.db").read_bytes()

    r = fails(vrm("relationships", home=new), 2, "another seed", "vrm key import",
              "vrm key export")
    assert "nothing was changed" in r.stderr
    assert (new / "agent.db").read_bytes() == before
    seed = ok(vrm("key", "export", home=old)).stdout.strip()  # the remedy named works
    assert ok(vrm("--json", "key", "import", home=new, stdin=seed)).json["status"] == "replaced"
    ok(vrm("relationships", home=new))
