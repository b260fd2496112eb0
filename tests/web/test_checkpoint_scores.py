"""Checkpoint scores in the browser: a toy-world training from the Train page scores its checkpoints (the studio's
default), the job panel draws the score curves beside the loss with the chosen checkpoint marked and the renders
per checkpoint in a strip, says why that checkpoint became the version, and the library shows that version's
scores and switches to another checkpoint (and says so in words when it cannot)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.web.conftest import shot
from tests.web.test_train_reload_and_cancel import _john_dataset

TRAINING = 120_000  # ms: a worker's first job loads the toy model; the run itself takes seconds
# A short run: the baseline and the checkpoints at 10 and 20 scored, each with two prompts of four sampling steps.
FIELDS = {"steps": "20", "checkpoint_every": "10", "sample_every": "0", "eval_share": "1", "eval_prompts": "2"}
FIELDS |= {"eval_steps": "4"}
# Counts what app.js adds to a running panel (one with data-job-events): score points and checkpoints' renders.
LIVE_WATCH = """() => {
  window.__live = {points: 0, checkpoints: 0};
  new MutationObserver(changes => changes.forEach(change => change.addedNodes.forEach(node => {
    if (node.nodeType !== 1 || !node.closest("section.job[data-job-events]")) return;
    if (node.matches("svg[data-score-curves] circle")) window.__live.points += 1;
    if (node.matches("figure.eval-checkpoint")) window.__live.checkpoints += 1;
  }))).observe(document.body, {childList: true, subtree: true});
}"""


@pytest.mark.browser
def test_a_scored_training_shows_its_curves_and_renders_and_the_library_switches(live, page, john_refs):
    page.goto(f"{live.url}/train/{_john_dataset(live, john_refs)}")
    page.get_by_text("Advanced", exact=True).click()
    page.get_by_text("More settings", exact=True).click()
    for name, value in FIELDS.items():
        page.locator(f"#advanced [name={name}]").fill(value)
    page.locator("#advanced [name=steps]").press("Tab")
    estimate = page.locator("#estimate", has_text="20 steps")
    expect(estimate).to_contain_text("scoring the checkpoints")  # the evaluation's time is in the estimate
    # What the running panel's script draws from the progress events, before the finished panel replaces it.
    page.evaluate(LIVE_WATCH)
    page.get_by_role("button", name="Train LoRA").click()

    finished = page.locator("#job-area section.job[data-status=succeeded]")
    finished.locator("[data-lora-link]").wait_for(timeout=TRAINING)
    summary = finished.locator("[data-eval-summary]")
    expect(summary).to_contain_text(re.compile(r"Step (10|20) became version 1\. \S"))  # and why
    chosen = int(re.search(r"Step (\d+) became", summary.inner_text()).group(1))
    expect(summary).to_contain_text("Ranked by the toy world's detectors")  # no scorer model: said, not silent
    expect(summary).to_contain_text(re.compile(r"Scoring the checkpoints took \d+% of the run"))

    curves = finished.locator("svg[data-score-curves]")
    expect(curves.locator("path[data-curve=identity]")).to_have_count(1)
    expect(curves.locator("path[data-curve=adherence]")).to_have_count(1)
    assert curves.locator("circle").count() >= 3 * 2  # the baseline and two checkpoints, per curve
    marker = curves.locator("line[data-chosen-marker]")
    expect(marker).to_have_count(1)
    assert marker.locator("title").text_content() == f"chosen checkpoint: step {chosen}"
    expect(finished.locator("[data-legend=identity]")).to_have_text("identity (toy detectors)")
    expect(finished.locator("svg[data-loss-curve] path")).to_have_count(1)  # beside the loss curve

    strip = finished.locator("[data-eval-renders]")
    figures = strip.locator("figure.eval-checkpoint")
    expect(figures).to_have_count(3)
    assert [f.get_attribute("data-step") for f in figures.all()] == ["0", "10", "20"]
    expect(strip.locator("figure.chosen")).to_have_attribute("data-step", str(chosen))
    renders = strip.locator("img")
    expect(renders).to_have_count(6)
    assert all(img.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0 for img in renders.all())
    assert strip.evaluate("s => getComputedStyle(s).overflowX") == "auto"  # scrolls sideways
    live = page.evaluate("window.__live")
    assert live["points"] > 0 and live["checkpoints"] > 0, live  # the curves and the strip grew while it ran
    shot(page, "checkpoint-scores-job")

    lora_id = re.search(r"lora=(\d+)", finished.locator("[data-lora-link]").get_attribute("href")).group(1)
    page.locator("[data-lora-link]").click()  # the library, its row open
    row = page.locator(f"tbody#lora-{lora_id}")
    v1 = row.locator("tr[data-version='1'] [data-version-scores]")
    expect(v1).to_contain_text(f"step {chosen}")
    expect(v1).to_contain_text("chosen")
    expect(v1).to_contain_text("identity")
    other = 30 - chosen  # the other checkpoint (10 or 20)
    switch = row.get_by_role("button", name=f"Switch to step {other}")
    expect(switch).to_be_visible()
    stale = page.context.new_page()  # a second tab with the same row, which will not know of the switch
    stale.goto(page.url)
    switch.click()
    expect(row.get_by_role("status")).to_have_text(f"Switched: version 2 is the checkpoint at step {other}.")
    v2 = row.locator("tr[data-version='2'] [data-version-scores]")
    expect(v2).to_contain_text(f"step {other}")
    expect(v2).to_contain_text("switched by you")
    expect(row.get_by_role("button", name=f"Switch to step {chosen}")).to_be_visible()  # and back again
    shot(page, "checkpoint-scores-library")

    stale_row = stale.locator(f"tbody#lora-{lora_id}")
    stale_row.get_by_role("button", name=f"Switch to step {other}").click()
    expect(stale_row.locator("[role=alert]")).to_contain_text("has no alternative")  # in words, in the row
    expect(stale_row.locator("tr[data-version='2']")).to_have_count(1)  # and the row shows what is true now
    stale.close()
