"""``vrm end`` with data the vendor still holds: the person says what becomes of it (§5.6.4-2).

Ending a relationship does not withdraw consent for what was shared, and once it has ended no
``data.erased`` can come (§5.6.4-1), so a customer who wants its data deleted must withdraw it
first. ``vrm end VENDOR`` ended at once and said nothing of it: the vendor kept the person's email
and phone, and the person learnt it (if ever) when nothing could be done any more.
"""

from __future__ import annotations

from pathlib import Path

from tests._cli_helpers import VendorHost, connected, fails, hosted, ok, vrm
from tests._world import post, serving, ui_page

vendors = hosted("outfitters")
WASATCH = "Wasatch Outfitters"
DAY_MS = 86_400_000


def _shared(tmp_path: Path, vendors: VendorHost) -> Path:
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("share", WASATCH, "email=doc@example.org", "phone=+1 801 555 0142", home=home))
    return home


def _provided(home: Path) -> list[str]:
    held = ok(vrm("data", WASATCH, "--json", home=home)).json
    return sorted(r["field"] for r in held["records"] if r["source"] == "provided")


def _state(home: Path) -> str:
    (rel,) = ok(vrm("relationships", "--json", home=home)).json["relationships"]
    return str(rel["state"])


def test_an_end_with_data_held_asks_which_and_sends_nothing(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = _shared(tmp_path, vendors)
    fails(vrm("end", WASATCH, home=home), 2, "still holds what you gave it", "--withdraw",
          "--keep-data", "nothing was sent")  # fmt: skip  (was 0: ended, data kept)
    assert _state(home) == "agreed"
    assert _provided(home) == ["email", "phone"]


def test_end_withdraw_deletes_first_then_ends(tmp_path: Path, vendors: VendorHost) -> None:
    home = _shared(tmp_path, vendors)
    ok(vrm("address", "set", "city=Park City", home=home))
    r = ok(vrm("end", WASATCH, "--withdraw", "--json", home=home)).json
    assert r["status"] == "confirmed"
    assert r["withdraw"]["status"] == "confirmed"
    assert r["withdraw"]["erased"]
    assert _state(home) == "ended"
    history = ok(vrm("history", WASATCH, "--json", home=home)).json
    kinds = [e["type"] for e in history["entries"] if e["direction"] == "out"]
    assert kinds.index("data.withdraw") < kinds.index("relationship.end")


def test_end_keep_data_ends_and_leaves_it(tmp_path: Path, vendors: VendorHost) -> None:
    home = _shared(tmp_path, vendors)
    ok(vrm("end", WASATCH, "--keep-data", home=home))
    assert _state(home) == "ended"


def test_end_withdraw_with_the_vendor_down_does_not_end(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = _shared(tmp_path, vendors)
    vendors.stop("outfitters")
    try:
        r = fails(vrm("end", WASATCH, "--withdraw", "--timeout", "0.5", home=home), 3,
                  "waits in the outbox")  # fmt: skip
        assert "not ended" in r.stdout, r
    finally:
        vendors.start("outfitters")
    assert _state(home) == "agreed"


def test_an_end_with_nothing_held_needs_no_choice(tmp_path: Path, vendors: VendorHost) -> None:
    home = connected(tmp_path, vendors["outfitters"].url)
    ok(vrm("end", WASATCH, home=home))
    assert _state(home) == "ended"


def test_after_a_withdrawal_of_all_an_end_needs_no_choice(
    tmp_path: Path, vendors: VendorHost
) -> None:
    home = _shared(tmp_path, vendors)
    ok(vrm("address", "set", "city=Park City", home=home))
    ok(vrm("withdraw", WASATCH, home=home))
    assert _provided(home) == []
    ok(vrm("end", WASATCH, home=home))  # nothing left with it: nothing to choose
    assert _state(home) == "ended"


async def test_the_page_asks_what_becomes_of_the_data_before_it_ends() -> None:
    """``vrm ui``'s End: the same choice, on the page (it ended with the data left)."""
    async with serving("outfitters") as (vendor,), ui_page() as (ui, client):
        agent = ui.node.agent
        thread = (await agent.connect(vendor.url)).thread
        await agent.share(thread, {"email": "doc@example.org"}, purposes=["delivery"],
                          categories=["contact"], expires_ms=agent.clock() + DAY_MS)  # fmt: skip
        html = await post(ui, client, f"r/{thread.hex()}/end", {"sure": "yes"})
        assert "say whether to delete it first or leave it with the vendor" in html
        (view,) = await agent.relationships()
        assert view.state == "agreed"
        html = await post(ui, client, f"r/{thread.hex()}/end", {"sure": "yes", "data": "withdraw"})
        assert "The relationship is ended." in html
        (view,) = await agent.relationships()
        assert (view.state, view.shares) == ("ended", ())


async def test_the_page_withdraws_what_an_address_update_gave() -> None:
    """With no share live, the page had no Withdraw at all, and its Withdraw named the shares
    it listed, never all: what an address update gave could not be taken back there."""
    async with serving("outfitters") as (vendor,), ui_page() as (ui, client):
        agent = ui.node.agent
        thread = (await agent.connect(vendor.url)).thread
        await agent.update_address({"city": "Park City"})
        page = await client.get(ui.guard.prefix + f"r/{thread.hex()}")
        assert "Withdraw everything you gave it" in await page.text()
        html = await post(ui, client, f"r/{thread.hex()}/withdraw", {"all": "yes"})
        assert "Withdrawn" in html
        held = await agent.request_data(thread)
        assert [r.field for r in held if r.source == "provided"] == []  # was ["city"]


def test_end_withdraw_names_the_vendor_once(tmp_path: Path, vendors: VendorHost) -> None:
    home = _shared(tmp_path, vendors)
    out = ok(vrm("end", WASATCH, "--withdraw", home=home)).stdout
    assert out.count(WASATCH) == 1, out
    assert out.index("deleted") < out.index("ended"), out
