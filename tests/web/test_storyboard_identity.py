"""Identity across a storyboard in a browser: each panel says how much it looks like the hero's references, the
panel where the hero is not drawn is flagged as drifted (in words, beside the score, and on the card's heading),
an image made before scoring says "not scored", and the board's consistency line follows a reorder."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import expect

from lorastudio.studio.context import open_studio
from lorastudio.studio.db import Image
from tests.studio.test_storyboard_identity import LOOKS, SCENES, generate, hero_refs, make_hero  # noqa: F401
from tests.web.conftest import shot

pytestmark = pytest.mark.browser
API = "/api/v1"


def _done(api: httpx.Client, job_id: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"{API}/jobs/{job_id}").json()["status"]
        if status in ("succeeded", "failed", "canceled"):
            assert status == "succeeded"
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_storyboard_page_shows_scores_and_the_drifted_panel(live, page, hero_refs, tmp_path):  # noqa: F811
    studio = open_studio(live.settings, migrate=False)
    api = httpx.Client(base_url=live.url, timeout=30)
    _, lora_id = make_hero(api, studio, hero_refs, tmp_path)
    pick = [{"lora_id": lora_id, "strength": 0.5}]
    jobs = [generate(api, SCENES[0][1], SCENES[0][2], pick), generate(api, SCENES[3][1], SCENES[3][2], pick)]
    jobs.append(generate(api, "a fighter, in a dojo", 3, [], steps=2))
    for job in jobs:
        _done(api, job["id"])
    with studio.factory() as session:  # the last as an image drawn before the worker scored identity
        session.query(Image).filter(Image.job_id == jobs[2]["id"]).one().identity = None
        session.commit()
    board = api.post(f"{API}/storyboards", json={"title": "Green Hero's fight"}).json()
    for title, job in zip(("faces", "drifts", "before"), jobs, strict=True):
        added = api.post(f"{API}/storyboards/{board['id']}/scenes", json={"job_id": job["id"], "title": title})
        assert added.status_code == 201, added.text

    page.goto(f"{live.url}/storyboards/{board['id']}")
    faces, drifts, before = (page.locator("#scenes-list > li").nth(i) for i in range(3))
    expect(faces.locator("[data-identity='greenhero']")).to_have_text("greenhero ✓ found (toy detectors)")
    expect(faces.locator(".sb-drift")).to_have_count(0)
    hero = drifts.locator("[data-identity='greenhero']")
    expect(hero.locator("[data-score]")).to_have_text("greenhero ✗ not found (toy detectors)")
    expect(hero.locator(".sb-drift")).to_have_text("drifted")
    expect(hero.locator(".sb-drift-reason")).to_have_text("the detectors do not find greenhero in this panel")
    expect(drifts.locator("[data-drift-flag]")).to_have_text("⚠ greenhero drifted")  # seen without reading on
    kane = drifts.locator("[data-identity='kanehero']")  # named in the prompt, no pictures to compare with
    expect(kane).to_contain_text("kanehero: not measured")
    expect(kane).to_contain_text("has no reference pictures")
    expect(before.locator("[data-identity-none]")).to_have_text("Identity: not scored (made before identity scoring).")
    summary = page.locator("#sb-identity")
    expect(summary.locator("[data-consistency='greenhero']")).to_have_text("greenhero: 2 panels, 1 drifted (scene 2)")
    expect(summary.locator("[data-not-scored]")).to_contain_text("1 panel not scored")
    shot(page, "storyboard-identity")

    drifts.get_by_role("button", name="Move up").click()  # the flag follows the panel; the line says where it is
    expect(summary.locator("[data-consistency='greenhero']")).to_have_text("greenhero: 2 panels, 1 drifted (scene 1)")
    expect(page.locator("#scenes-list > li").first.locator("[data-drift-flag]")).to_be_visible()
    api.close()
