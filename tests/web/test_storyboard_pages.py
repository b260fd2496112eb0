"""The Storyboard pages in a browser: a storyboard made (its form's error beside the field), three finished
generations added as scenes, an image picked, scenes reordered by keyboard and by drag (persisted), a scene
re-rolled until its new image shows, a PDF exported and parsed back, and user text shown as text."""

from __future__ import annotations

import io
import re
import time

import httpx
import pytest
from playwright.sync_api import expect
from pypdf import PdfReader

from lorastudio.studio import accounts, jobs, storyboards
from lorastudio.studio.db import begin_write, make_engine, session_factory
from lorastudio.studio.storyboards import SceneIn, StoryboardIn
from tests.jobrequests import sample_request
from tests.web.conftest import serve, shot

pytestmark = pytest.mark.browser

API = "/api/v1"
SCENES = [  # (title, prompt)
    ("faces", "johnhero, kungfustyle, horse stance"),
    ("attacks", "johnhero, kungfustyle, crane kick"),
    ("blocks", "johnhero, kungfustyle, flying kick"),
]
XSS = "<script>alert(1)</script>"


def _generate(api: httpx.Client, prompt: str, seed: int) -> int:
    response = api.post(f"{API}/generations", json={"prompt": prompt, "seed": seed, "n": 2, "steps": 2})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _wait(api: httpx.Client, job_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            assert job["status"] == "succeeded", job
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def _cards(page):
    return page.locator("#scenes-list > li")


def _titles(page) -> list[str]:
    return page.locator("#scenes-list > li h3 [id$='-name']").all_inner_texts()


def _expect_titles(page, titles: list[str]) -> None:
    expect(page.locator("#scenes-list > li h3 [id$='-name']")).to_have_text(titles)


def test_storyboard_built_reordered_rerolled_and_exported(live, page):
    alerts: list[str] = []
    page.on("dialog", lambda d: (alerts.append(d.message) if d.type == "alert" else None, d.accept()))
    sent: list[dict] = []  # storyboard.js's own writes (Alt+arrow, drop) must carry the CSRF header too
    page.on("request", lambda r: sent.append(r.headers) if re.search(r"/(move|order)$", r.url) else None)
    api = httpx.Client(base_url=live.url, timeout=30)
    job_ids = [_generate(api, prompt, 1 + i) for i, (_, prompt) in enumerate(SCENES)]  # the worker runs them now

    page.goto(live.url + "/storyboards")
    page.get_by_label("Description").fill("John vs Kane in the dojo")
    page.get_by_role("button", name="Create storyboard").click()
    expect(page.locator("#new-title-error")).to_have_text("Field required")  # beside the field it is about
    assert page.get_by_label("Title").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Description").input_value() == "John vs Kane in the dojo"  # what was typed is kept
    page.get_by_label("Title").fill("Epic Fight Sequence")
    page.get_by_role("button", name="Create storyboard").click()
    page.wait_for_url(re.compile(r".*/storyboards/\d+$"))
    board_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", level=1)).to_have_text("Epic Fight Sequence")

    for job_id in job_ids:
        _wait(api, job_id)
    page.reload()  # the add form lists finished generations
    page.get_by_role("button", name="Add scene").click()
    expect(page.locator("#add-job-error")).to_have_text("Field required")
    for n, ((title, prompt), job_id) in enumerate(zip(SCENES, job_ids, strict=True), start=1):
        option = page.locator(f"#add-job option[value='{job_id}']")
        assert option.inner_text() == f"#{job_id} · {prompt}"
        page.get_by_label("Generation job").select_option(str(job_id))
        page.locator("#add-title").fill(title)
        page.get_by_role("button", name="Add scene").click()
        expect(_cards(page)).to_have_count(n)
        assert page.locator("#add-title").input_value() == ""  # the add form is fresh again
    _expect_titles(page, ["faces", "attacks", "blocks"])
    first = _cards(page).nth(0)
    assert "horse stance" in first.locator("[data-prompt]").inner_text()

    # pick the second image of "faces"
    images = api.get(f"{API}/jobs/{job_ids[0]}/images").json()
    assert first.locator("img[data-chosen]").get_attribute("src") == images[0]["url"]
    first.get_by_role("button", name=re.compile(r"^Image 2,")).click()
    first = page.locator(f"#pick-{images[1]['id']}")
    expect(first).to_have_attribute("aria-pressed", "true")
    expect(_cards(page).nth(0).locator("img[data-chosen]")).to_have_attribute("src", images[1]["url"])
    # storyboard.js puts focus back once htmx has settled the answer (and drops the data-focus it read): wait
    # for that, or the focus it restores would land after ours
    page.wait_for_function("!document.querySelector('[data-focus]')")
    assert page.evaluate("document.activeElement.id") == f"pick-{images[1]['id']}"  # focus stays on the choice

    # keyboard: Alt+ArrowDown on a focused card moves it, focus stays on it, the move is announced
    faces_id = _cards(page).nth(0).get_attribute("id")
    _cards(page).nth(0).focus()
    expect(_cards(page).nth(0)).to_be_focused()  # the key goes to the card, not to a control swapped out under it
    page.keyboard.press("Alt+ArrowDown")
    _expect_titles(page, ["attacks", "faces", "blocks"])
    expect(page.locator("#sb-announce")).to_have_text("Scene 'faces' is now 2 of 3")
    assert page.evaluate("document.activeElement.id") == faces_id
    _cards(page).nth(2).get_by_role("button", name="Move up").click()
    _expect_titles(page, ["attacks", "blocks", "faces"])
    assert page.evaluate("document.activeElement.textContent") == "Move up"

    # drag "faces" by its handle onto the top half of the first card: it goes first (in a window tall
    # enough to show both cards: a drag does not scroll the page)
    page.set_viewport_size({"width": 1366, "height": 2400})
    _cards(page).nth(2).locator(".sb-handle").drag_to(_cards(page).nth(0), target_position={"x": 60, "y": 8})
    _expect_titles(page, ["faces", "attacks", "blocks"])
    expect(page.locator("#sb-announce")).to_have_text("Scene 'faces' is now 1 of 3")
    page.set_viewport_size({"width": 1366, "height": 768})
    assert len(sent) == 3 and all("x-csrf-token" in headers for headers in sent)

    # a title that is markup is saved inline and shown as text
    title = _cards(page).nth(2).get_by_label("Scene title")
    title.fill(XSS)
    title.press("Enter")
    expect(_cards(page).nth(2).locator("h3 [id$='-name']")).to_have_text(XSS)

    page.reload()  # all of it was saved
    _expect_titles(page, ["faces", "attacks", XSS])
    expect(_cards(page).nth(0).locator("img[data-chosen]")).to_have_attribute("src", images[1]["url"])
    assert _cards(page).nth(2).get_by_label("Scene title").input_value() == XSS
    raw = api.get(f"/storyboards/{board_id}").text
    assert XSS not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw

    # re-roll "attacks": its card follows the new job and then shows its new image
    attacks = _cards(page).nth(1)
    before = attacks.locator("img[data-chosen]").get_attribute("src")
    attacks.get_by_role("button", name="Re-roll").click()
    expect(attacks.locator("[data-scene-status]")).not_to_have_text("succeeded")
    expect(attacks.locator(".sb-progress")).to_be_visible()
    expect(attacks.locator("[data-scene-status]")).to_have_text("succeeded", timeout=90_000)
    after = attacks.locator("img[data-chosen]").get_attribute("src")
    assert after and after != before
    assert api.get(after).status_code == 200

    # export a PDF: progress, then the download link; a cover and one page per panel
    page.get_by_role("button", name="Export PDF").click()
    link = page.locator("#export-result [data-export-link]")
    expect(link).to_be_visible(timeout=60_000)
    pdf = api.get(link.get_attribute("href"))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.content))
    assert len(reader.pages) == 1 + 3
    words = [" ".join(p.extract_text().split()) for p in reader.pages]
    assert "Epic Fight Sequence" in words[0] and "John vs Kane in the dojo" in words[0]
    for text, (_, prompt) in zip(words[1:], SCENES, strict=True):
        assert prompt in text
    assert "faces" in words[1] and "attacks" in words[2] and XSS in words[3]
    shot(page, "storyboard")

    page.once("dialog", lambda d: d.accept())
    _cards(page).nth(1).get_by_role("button", name="Remove").click()
    _expect_titles(page, ["faces", XSS])
    expect(page.locator("#sb-announce")).to_have_text("Removed scene 'attacks'; 2 scenes left")
    assert alerts == [], f"user text ran as script: {alerts}"


def test_storyboard_list_links_and_unknown_ids(live, page):
    api = httpx.Client(base_url=live.url, timeout=30)
    made = api.post(f"{API}/storyboards", json={"title": "Rooftop chase", "description": "night"}).json()
    page.goto(live.url + "/storyboards")
    row = page.get_by_role("row", name=re.compile("Rooftop chase"))
    assert row.locator("td").nth(1).inner_text() == "0"
    row.get_by_role("link", name="Rooftop chase").click()
    page.wait_for_url(f"{live.url}/storyboards/{made['id']}")
    page.get_by_role("button", name="Export PDF").click()
    expect(page.locator("#export-result [role=alert]")).to_contain_text("has no scenes yet")
    page.locator("#board-title").fill("")
    page.get_by_role("button", name="Save details").click()
    expect(page.locator("#board-title-error")).to_have_text("String should have at least 1 character")
    page.locator("#board-title").fill("Rooftop chase, take 2")
    page.get_by_role("button", name="Save details").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Rooftop chase, take 2")
    answer = page.goto(f"{live.url}/storyboards/999999")
    assert answer.status == 404 and "storyboard 999999 not found" in page.get_by_role("alert").inner_text()


def test_with_accounts_on_the_reorder_keys_send_the_login_s_csrf_token(studio_settings, page):
    settings = studio_settings.model_copy(update={"accounts": True})
    for live in serve(settings):
        with session_factory(make_engine(settings))() as session:
            maya = accounts.add_user(session, name="maya", password="correct horse battery", starting_credits=300)
            board = storyboards.create_storyboard(session, owner_id=maya.id, data=StoryboardIn(title="Alley"))
            for title in ("one", "two"):  # bare jobs (the worker fails them): only the order matters here
                begin_write(session)  # the live worker writes too: a stale read cannot become a write
                job = jobs.add_job(session, owner_id=maya.id, request=sample_request("generation", prompt=title))
                session.commit()
                storyboards.add_scene(
                    session, owner_id=maya.id, storyboard_id=board.id, data=SceneIn(job_id=job.id, title=title)
                )
        page.goto(f"{live.url}/login?next=/storyboards/{board.id}")
        page.get_by_label("User name").fill("maya")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{live.url}/storyboards/{board.id}")
        _cards(page).nth(0).focus()
        page.keyboard.press("Alt+ArrowDown")
        _expect_titles(page, ["two", "one"])  # a write without the token would be refused (403)
        expect(page.locator("#sb-announce")).to_have_text("Scene 'one' is now 2 of 2")
