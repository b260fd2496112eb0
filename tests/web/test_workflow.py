"""The guide's workflow in a real browser on the toy world: create Action Hero John -> upload references plus
one corrupt file (flagged, the rest proceed) -> estimate -> train -> watch progress finish -> generate a scene
with John + kungfustyle -> keep an image -> the library shows usage 1 and success 1/1 -> three scenes in a
storyboard -> export the PDF with three panels. Then: a second user cannot see John; names are text."""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from lorastudio.studio import accounts
from lorastudio.studio.db import make_engine, session_factory
from tests.web.conftest import serve, shot

pytestmark = pytest.mark.browser
TRAINING = 180_000  # ms: 8 toy-world steps plus a worker's start, on 2 slow cores


def _add_john(page, live, reference) -> None:
    page.goto(live.url + "/characters")
    page.get_by_role("button", name="Add New Character").click()  # empty: the name is required (browser check)
    assert page.get_by_label("Character name").evaluate("el => !el.validity.valid")
    page.get_by_label("Character name").fill("Action Hero John")
    page.get_by_label("Description (appearance, style)").fill("red gi, yellow hair, white headband")
    page.get_by_label("Fighting style").fill("kungfustyle")
    page.get_by_label("Reference image (PNG or JPEG)").set_input_files(str(reference))
    page.get_by_role("button", name="Add New Character").click()
    card = page.locator("article.character", has_text="Action Hero John")
    assert "johnhero" in card.inner_text() and "no LoRA yet" in card.inner_text()
    assert card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")


def _upload(page, files: list, expect: int) -> None:
    page.locator("#file-input").set_input_files(files)
    page.get_by_text(f"Uploaded {expect} of {expect} files.").wait_for(timeout=60_000)


def test_the_guides_workflow_in_the_browser(live, page, john_refs, tmp_path):
    refs = sorted(john_refs.glob("*.png"))
    _add_john(page, live, refs[0])
    shot(page, "character-manager")
    page.get_by_role("button", name="Train LoRA").click()
    page.wait_for_url(re.compile(r".*/train/\d+$"))
    assert "johnhero" in page.locator("main").inner_text()

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really an image")
    _upload(page, [str(p) for p in refs[:12]] + [str(broken)], expect=13)
    row = page.locator("tr", has_text="broken.png")
    assert row.locator("[data-verdict]").get_attribute("data-verdict") == "skipped"
    assert row.locator(".problem").inner_text().strip()  # says what is wrong with it
    assert page.locator("#dataset-images").get_attribute("data-usable") == "12"
    caption = page.get_by_label(f"Caption of {refs[1].name}")
    caption.fill("johnhero, a fighter in a red gi, crane kick")
    caption.press("Enter")
    page.locator(f"#image-row-{caption.get_attribute('id').split('-')[1]} [role=status]").wait_for()

    estimate = page.locator("#estimate")
    estimate.locator("[data-credits]").wait_for()
    assert "credits" in estimate.inner_text() and "12 images" in estimate.inner_text()
    page.get_by_text("Advanced", exact=True).click()
    page.get_by_label("Steps", exact=True).fill("abc")
    page.get_by_label("Steps", exact=True).press("Tab")
    page.locator("#adv-steps-error", has_text="steps: use a whole number").wait_for()  # said beside the field
    page.get_by_label("Steps", exact=True).fill("8")
    page.get_by_label("Checkpoint every N steps").fill("4")
    page.get_by_label("Checkpoint every N steps").press("Tab")
    page.locator("#estimate", has_text="8 steps").wait_for()
    shot(page, "train-new-lora")
    page.get_by_role("button", name="Train LoRA").click()
    panel = page.locator("#job-area section.job")
    panel.wait_for()
    done = panel.locator("[data-lora-link]")
    done.wait_for(timeout=TRAINING)
    assert panel.get_attribute("data-status") == "succeeded"
    curve = panel.locator("svg[data-loss-curve] path")
    curve.wait_for(state="attached")  # drawn by app.js once htmx has settled the finished panel
    assert curve.count() == 1  # the loss curve was drawn, once
    charged = page.locator("#balance").inner_text()
    assert charged != "1000 credits" and charged.endswith("credits")
    shot(page, "training-finished")

    page.get_by_role("link", name="Use it in the Studio").click()
    prompt = page.get_by_label("Prompt", exact=True)
    assert prompt.input_value() == "johnhero"
    prompt.press("End")
    prompt.type(", kungf")
    page.get_by_role("option", name=re.compile("kungfustyle")).wait_for()
    prompt.press("Enter")  # completes the trigger word
    prompt.type("horse stance, in a dojo")
    assert prompt.input_value() == "johnhero, kungfustyle, horse stance, in a dojo"
    page.locator("#scene-check", has_text="Kung Fu Martial Arts").wait_for()
    page.get_by_label("Steps", exact=True).fill("4")
    page.get_by_label("Batch (variations)").fill("2")
    page.get_by_role("button", name="Generate", exact=True).click()
    gallery = page.locator("#results section.job").first.locator(".gallery figure")
    gallery.nth(1).wait_for(timeout=60_000)
    gallery.first.get_by_role("button", name="Keep").click()
    page.locator("#results figure.kept").wait_for()
    shot(page, "studio")

    library = page.context.new_page()  # the Studio keeps its results in this tab
    library.goto(live.url + "/library?q=johnhero")
    john = library.locator("tbody.lib-lora", has_text="Action Hero John")
    assert "1 of 1 kept" in john.locator(".lib-success").inner_text()  # success 1/1: one image judged, kept
    assert john.locator("td.num").first.inner_text().strip() == "1"  # usage: the one scene so far
    shot(library, "library")
    library.close()

    for action in ("crane kick", "at night"):
        prompt.fill(f"johnhero, kungfustyle, {action}")
        page.get_by_label("Batch (variations)").fill("1")
        page.get_by_role("button", name="Generate", exact=True).click()
    panels = page.locator("#results section.job")
    for i in range(3):
        panels.nth(i).locator(".gallery figure").first.wait_for(timeout=60_000)
    for i in (2, 1, 0):  # oldest first: the scenes go in the order they were made
        form = panels.nth(i).locator("form", has_text="Add to storyboard")
        if i < 2:  # the lists refreshed when the first scene made the storyboard: it comes first
            form.locator("option", has_text="Fight sequence").wait_for(state="attached")
            form.get_by_label("Add to storyboard").select_option(index=0)
        form.get_by_role("button", name="Add scene").click()
        panels.nth(i).get_by_role("status").filter(has_text="Added as scene").wait_for()
    board_link = panels.nth(0).get_by_role("link", name="Fight sequence")

    board_link.click()
    page.wait_for_url(re.compile(r".*/storyboards/\d+$"))
    assert page.locator("ol li.scene, ol > li").count() >= 3
    page.get_by_role("button", name=re.compile("PDF")).click()
    link = page.locator("[data-export-link]")
    link.wait_for(timeout=60_000)
    pdf = page.request.get(live.url + link.get_attribute("href"))
    assert pdf.ok
    assert len(PdfReader(io.BytesIO(pdf.body())).pages) == 4  # a cover and three panels
    shot(page, "storyboard-exported")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete storyboard").click()  # with its three scenes
    page.wait_for_url(live.url + "/storyboards")
    assert "Fight sequence" not in page.locator("main").inner_text()


def test_a_second_user_cannot_see_john_and_names_are_text(studio_settings, browser):
    settings = studio_settings.model_copy(update={"accounts": True})
    for live in serve(settings):
        with session_factory(make_engine(settings))() as session:
            for name in ("maya", "bob"):
                accounts.add_user(session, name=name, password=f"{name} password 123", starting_credits=100)
        maya, bob = (browser.new_context(viewport={"width": 768, "height": 1024}) for _ in range(2))  # tablet
        try:
            page = _login(maya, live, "maya")
            page.goto(live.url + "/characters")
            for name in ("Action Hero John", "<script>alert(1)</script>"):
                page.get_by_label("Character name").fill(name)
                page.get_by_role("button", name="Add New Character").click()
                page.locator("article.character h2", has_text=name).wait_for()  # the tag is shown as text
            page.locator("article.character", has_text="Action Hero John").get_by_role(
                "button", name="Train LoRA"
            ).click()
            page.wait_for_url(re.compile(r".*/train/\d+$"))
            dataset_url = page.url
            shot(page, "train-tablet")
            page.goto(live.url + "/studio")
            assert page.locator("script:not([src])").count() == 0
            other = _login(bob, live, "bob")
            other.goto(live.url + "/characters")
            assert other.locator("article.character").count() == 0
            assert "Action Hero John" not in other.locator("main").inner_text()
            answer = other.goto(dataset_url)
            assert answer.status == 404 and "not found" in other.get_by_role("alert").inner_text()
        finally:
            maya.close()
            bob.close()


def _login(context, live, name: str):
    page = context.new_page()
    page.goto(live.url + "/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(f"{name} password 123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live.url + "/")
    return page
