"""Session 21b: ``vrm vendor serve`` with a ``[store] path`` it cannot serve from says which
path and what to fix, before serving — and leaves what is there as it was.

Before: a directory at the path was chmod-ed 0600 (made untraversable) and the vendor said
``vrm: sqlite: unable to open database file.`` (exit 1); a path in a missing directory said
``vrm: No such file or directory (…/v.db-serve.lock)``, naming a file the vendor never wrote.
"""

from __future__ import annotations

import stat
from pathlib import Path

from _cli_helpers import fails, vrm

SEED = 'seed = "eef7010a19794491b6779e2795788d233186a0c4a13fbb27846f000390d0ded5"\n'


def _serve(tmp_path: Path, store_path: Path) -> tuple[Path, list[str]]:
    config = tmp_path / "v.toml"
    config.write_text(f'name = "Corner Shop"\n{SEED}[store]\npath = "{store_path}"\n', "utf-8")
    return config, ["vendor", "serve", "--config", str(config), "--no-advertise",
                    "--data-dir", str(tmp_path / "data")]  # fmt: skip


def test_a_directory_at_the_store_path_is_named_and_left_alone(tmp_path: Path) -> None:
    where = tmp_path / "db"
    where.mkdir(mode=0o755)
    where.chmod(0o755)
    _, args = _serve(tmp_path, where)
    fails(vrm(*args, home=tmp_path / "home"), 2, "store.path", str(where), "is a directory")
    assert stat.S_IMODE(where.stat().st_mode) == 0o755


def test_a_store_path_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    where = tmp_path / "nowhere" / "v.db"
    _, args = _serve(tmp_path, where)
    fails(vrm(*args, home=tmp_path / "home"), 2, "store.path", str(where.parent),
          "no such directory")  # fmt: skip
    assert not where.parent.exists()


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    where = tmp_path / "v.db"
    where.write_bytes(b"not a database, but forty bytes or more of something else\n" * 4)
    _, args = _serve(tmp_path, where)
    fails(vrm(*args, home=tmp_path / "home"), 1, "cannot open the store", str(where),
          "not a database")  # fmt: skip
