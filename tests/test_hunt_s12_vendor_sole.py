"""``vrm vendor serve`` is the only server of its SQLite store.

Two processes on one SQLite store fork a relationship's history when a customer key sends each
of them a message linking to the same one (``tests/test_hunt_s12_vendor_fork.py``), and keep
their rate limits apart (§12.9-8). ``--workers 2`` on SQLite is refused for that reason, but a
second ``vrm vendor serve`` on the same data directory (a service still running, a second
terminal) was not: it started, and both served.
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorProcess, fails, vrm


def test_a_second_server_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "shop.toml"
    config.write_text('name = "Corner Shop"\naccepts_terms = "all"\n')
    args = ("--config", str(config), "--data-dir", str(tmp_path / "shop"), "--no-advertise")
    first = VendorProcess(*args)
    try:
        fails(vrm("vendor", "serve", *args, home=tmp_path / "you"), 2,
              "another vrm vendor serve is serving from")  # fmt: skip
    finally:
        code, _ = first.stop()
    assert code == 0
    again = VendorProcess(*args)  # the lock went with the first server
    again.stop()
    other = VendorProcess(*args[:2], "--data-dir", str(tmp_path / "other"), "--no-advertise")
    other.stop()  # another data directory is another store
