"""The LoRA Library page in a browser: the table of a fresh studio's four pre-built styles, live search,
filters, sort and paging kept in the URL; rating by click; import with its progress and its refusals next
to the file input; share, delete and the refusal to delete a pre-built LoRA; names shown as text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from lorastudio.engine.toyworld.prebuilt import prebuilt_lora_path
from lorastudio.studio.db import Lora, make_engine, session_factory
from tests.web.conftest import shot

pytestmark = pytest.mark.browser

PREBUILT = {
    "Professional Boxing": "boxingstyle",
    "Kung Fu Martial Arts": "kungfustyle",
    "Mixed Martial Arts": "mmastyle",
    "Sword Combat": "swordstyle",
}
MMA = prebuilt_lora_path("mma").read_bytes()
# Runs after the page's own listener: records what the progress bar showed at each upload event.
PROGRESS_SPY = """window.seen = [];
document.addEventListener("htmx:xhr:progress",
                          () => window.seen.push(document.querySelector("#lib-progress").value));"""


def _names(page) -> list[str]:
    return page.locator("tbody.lib-lora .lib-toggle").all_inner_texts()


def _wait_rows(page, n: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('tbody.lib-lora:not(.lib-gone)').length === {n}")


def _row(page, name: str):
    return page.locator("tbody.lib-lora", has=page.get_by_role("button", name=name, exact=True))


def _upload(page, name: str, data: bytes) -> None:
    page.get_by_label("LoRA file (.safetensors)").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": data}
    )
    page.get_by_role("button", name="Import", exact=True).click()


def test_table_search_filters_sort_and_paging_keep_the_url(live, page):
    page.goto(live.url + "/library")
    assert sorted(_names(page)) == sorted(PREBUILT)
    for name, trigger in PREBUILT.items():
        row = _row(page, name)
        assert trigger in row.locator(".lib-triggers").inner_text()
        assert "pre-built" in row.inner_text() and "fighting style" in row.inner_text()
    boxing = _row(page, "Professional Boxing").locator("tr.lib-main td")
    cells = boxing.all_inner_texts()  # triggers, base, uses, success, rating, training time, versions, actions
    assert cells[1:4] == ["toyworld", "0", "—"] and "no ratings yet" in cells[4]
    assert cells[5] == "4 min 42 s" and cells[6] == "1"  # 281.9 s of training, one version
    assert page.get_by_role("status").filter(has_text="LoRAs").inner_text() == "Page 1 of 1, 4 LoRAs"
    shot(page, "library")

    page.get_by_label("Search").fill("kung")
    page.wait_for_url(re.compile(r"/library\?q=kung$"))
    _wait_rows(page, 1)
    assert _names(page) == ["Kung Fu Martial Arts"]
    page.reload()  # the address keeps the search
    assert page.get_by_label("Search").input_value() == "kung" and _names(page) == ["Kung Fu Martial Arts"]
    page.get_by_label("Search").fill("")
    _wait_rows(page, 4)

    page.get_by_label("Kind").select_option("pose")
    _wait_rows(page, 0)
    assert "No LoRAs match these filters" in page.locator("#library-results").inner_text()
    page.get_by_label("Kind").select_option("fighting_style")
    _wait_rows(page, 4)
    page.wait_for_url(re.compile(r"kind=fighting_style"))

    page.get_by_label("Sort by").select_option("name")
    page.get_by_label("Order").select_option("asc")
    page.wait_for_url(re.compile(r"sort=name&order=asc"))
    page.wait_for_function("() => document.querySelector('th[aria-sort]')?.getAttribute('aria-sort') === 'ascending'")
    assert _names(page) == sorted(PREBUILT)
    page.get_by_role("link", name="Name", exact=True).click()  # the sorted column's header turns the order around
    page.wait_for_url(lambda url: "sort=name" in url and "order=asc" not in url)  # desc, the default, is left out
    assert _names(page) == sorted(PREBUILT, reverse=True)
    assert page.locator("th[aria-sort]").get_attribute("aria-sort") == "descending"

    page.goto(live.url + "/library?sort=name&order=asc&per_page=3")
    assert page.get_by_role("status").filter(has_text="LoRAs").inner_text() == "Page 1 of 2, 4 LoRAs"
    page.get_by_role("link", name="Next →").click()
    expect(page.locator(".lib-count")).to_have_text("Page 2 of 2, 4 LoRAs")
    page.wait_for_url(re.compile(r"page=2"))
    assert _names(page) == ["Sword Combat"]

    page.goto(live.url + "/library?page=abc&sort=hacked&kind=%3Cb%3E")  # words, not a traceback
    alerts = page.get_by_role("alert").all_inner_texts()
    assert any("page 'abc' is not a number" in a for a in alerts) and any("unknown sort" in a for a in alerts)
    assert any("unknown kind '<b>'" in a for a in alerts)
    assert len(_names(page)) == 4


def test_rating_by_click_and_a_lora_picked_by_id(live, page):
    page.goto(live.url + "/library?lora=2")  # where the training page links after a run
    picked = page.locator("#lora-2")
    assert "lib-highlight" in picked.get_attribute("class")
    details = page.locator("#details-2")
    assert details.is_visible()
    versions = details.get_by_role("table", name="Versions of Kung Fu Martial Arts").inner_text()
    assert "v1" in versions and "353 KB" in versions and "5 min 29 s" in versions  # 361,144 bytes; 328.6 s
    download = details.get_by_role("link", name="Download Kung Fu Martial Arts version 1")
    assert download.get_attribute("href") == "/api/v1/loras/2/file?version=1"
    assert page.request.get(live.url + "/api/v1/loras/2/file").ok
    shot(page, "library-details")

    picked.get_by_role("button", name="Rate 3 stars").click()
    page.wait_for_function("() => document.querySelector('#lora-2 .lib-avg').textContent.includes('3.0 (1 rating)')")
    assert picked.locator(".star.on").count() == 3
    assert picked.get_by_role("button", name="Rate 3 stars").get_attribute("aria-pressed") == "true"
    assert page.locator("#details-2").is_visible()  # the swapped row stays open
    picked.get_by_role("button", name="Rate 5 stars").click()  # one rating per user: it replaces the first
    page.wait_for_function("() => document.querySelector('#lora-2 .lib-avg').textContent.includes('5.0 (1 rating)')")
    assert picked.locator(".star.on").count() == 5
    page.reload()
    assert page.locator("#lora-2 .star.on").count() == 5  # the user's own stars are shown

    picked.get_by_role(
        "button", name="Kung Fu Martial Arts", exact=True
    ).click()  # the name opens and closes the details
    assert not page.locator("#details-2").is_visible()

    gone = {"name": "gone.safetensors", "mimeType": "application/octet-stream", "buffer": MMA}
    imported = page.request.post(live.url + "/api/v1/loras", multipart={"file": gone}).json()
    page.reload()
    row = page.locator(f"#lora-{imported['id']}")
    page.request.post(live.url + f"/library/{imported['id']}/delete")  # deleted behind the page's back
    row.get_by_role("button", name="Rate 4 stars").click()
    assert "not found in your library" in page.locator(f"#lora-{imported['id']}").get_by_role("alert").inner_text()


def test_import_share_delete_and_names_shown_as_text(live, page):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.goto(live.url + "/library")
    form = page.locator("#library-import")

    _upload(page, "garbage.safetensors", b"\x10" + b"\x00" * 40)
    assert "not a readable .safetensors file" in form.get_by_role("alert").inner_text()
    assert page.get_by_label("LoRA file (.safetensors)").get_attribute("aria-invalid") == "true"
    assert len(_names(page)) == 4  # the table is untouched
    _upload(page, "notes.txt", b"hello")
    expect(form.get_by_role("alert")).to_contain_text("imported as .safetensors files only")  # once swapped

    page.evaluate(PROGRESS_SPY)
    _upload(page, "My Sword.safetensors", prebuilt_lora_path("sword").read_bytes())
    assert "Imported “My Sword”" in form.get_by_role("status").inner_text()
    assert form.get_by_role("alert").count() == 0
    _wait_rows(page, 5)  # the table refreshed itself
    assert 100 in page.evaluate("window.seen")  # the progress bar followed the upload
    mine = _row(page, "My Sword")
    assert "imported" in mine.inner_text() and "swordstyle" in mine.inner_text()

    mine.get_by_role("button", name="Share My Sword with every user").click()
    page.get_by_text("Shared: every user can now use it").wait_for()
    assert "public" in _row(page, "My Sword").locator(".lib-tags").inner_text()
    assert _row(page, "Sword Combat").get_by_role("button", name=re.compile("^Share")).count() == 0  # not theirs

    _row(page, "Sword Combat").get_by_role("button", name="Delete Sword Combat").click()
    assert "cannot be changed or deleted" in _row(page, "Sword Combat").get_by_role("alert").inner_text()

    lora_id = int(mine.get_attribute("data-lora-id"))
    mine.get_by_role("button", name="Delete My Sword").click()
    expect(page.locator(f"#lora-{lora_id}").get_by_role("status")).to_have_text("“My Sword” deleted.")
    assert dialogs[-1].startswith("Delete “My Sword” from the library?")
    page.reload()
    assert "My Sword" not in _names(page) and len(_names(page)) == 4

    hostile = "<script>alert(1)</script>"
    _upload(page, "x.safetensors", prebuilt_lora_path("boxing").read_bytes())
    _wait_rows(page, 5)
    with session_factory(make_engine(live.settings))() as session:  # import names files cleanly: rename it
        lora = session.query(Lora).filter(Lora.name == "x").one()
        lora.name = hostile
        session.commit()
    page.reload()
    assert page.get_by_role("button", name=hostile, exact=True).inner_text() == hostile
    shot(page, "library-import")
    page.get_by_role("button", name=f"Delete {hostile}").click()
    expect(page.locator(".lib-gone").get_by_role("status")).to_have_text(f"“{hostile}” deleted.")
    assert hostile in dialogs[-1]  # the confirm shows it as text too
    assert not any(d == "1" for d in dialogs)  # no script ran
