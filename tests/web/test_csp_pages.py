"""The pages work under the Content-Security-Policy: no violation reported on the main pages, the API docs or an
error page; the inline behaviours allowed by hash (the studio's strength slider, a delete's confirmation, the
library's details) still run; and nothing is fetched from outside the studio (/docs included)."""

from __future__ import annotations

import httpx
import pytest

from tests.web.conftest import shot

pytestmark = pytest.mark.browser

PAGES = ["/", "/train", "/characters", "/styles", "/library", "/studio", "/storyboards", "/account"]
# Registered before any page script: each violation the browser reports, whatever the console says.
SPY = """window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
    window.__csp.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " + e.sourceFile));"""


@pytest.fixture
def watched(live, page):
    """The page, with every CSP complaint and every request to outside the studio collected."""
    complaints: list[str] = []
    outside: list[str] = []
    page.add_init_script(SPY)
    page.on("console", lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("request", lambda r: None if r.url.startswith((live.url, "data:", "blob:")) else outside.append(r.url))

    def done(where: str) -> None:
        complaints.extend(page.evaluate("window.__csp"))
        assert not complaints, f"{where}: the CSP blocked something: {complaints}"
        assert not outside, f"{where}: fetched from outside the studio: {outside}"

    page.done = done
    return page


def test_main_pages_run_under_the_csp_with_no_violation(live, watched):
    page = watched
    for path in PAGES:
        answer = page.goto(live.url + path)
        assert answer.status == 200, path
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], path
        assert answer.headers["x-frame-options"] == "DENY"
        page.wait_for_load_state("networkidle")  # htmx's loads (the estimate, the balance) have run
        page.done(path)

    # Behaviours moved out of the templates still work: the strength slider shows its value...
    page.goto(live.url + "/studio")
    slider = page.locator("input[type=range]").first
    slider.fill("0.35")
    assert slider.locator("xpath=following-sibling::output[1]").inner_text() == "0.35"
    # ...and a delete asks first.
    httpx.post(live.url + "/api/v1/characters", json={"name": "Doomed Dan", "description": "a test"})
    page.goto(live.url + "/characters")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    card = page.locator("article", has_text="Doomed Dan")
    card.locator("summary").click()
    card.get_by_role("button", name="Delete character").click()
    assert asked and "Delete this character?" in asked[0]
    # The library's inline script opens a LoRA's details.
    page.goto(live.url + "/library")
    toggle = page.locator("[data-lib-toggle]").first
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    page.done("the pages' inline behaviours")


def test_an_error_page_has_the_site_header_and_no_violation(live, watched):
    page = watched
    answer = page.goto(live.url + "/no-such-page")
    assert answer.status == 404 and "no such page" in page.get_by_role("alert").inner_text()
    nav = page.get_by_role("navigation", name="Main navigation")
    assert nav.get_by_role("link", name="Character Manager").is_visible()
    assert page.locator(".user").inner_text() == "local" and page.locator("#balance").inner_text() == "1000 credits"
    shot(page, "error-404")
    page.goto(live.url + "/jobs/987654")  # a domain error (not found) as a page
    assert nav.get_by_role("link", name="Studio", exact=True).is_visible()
    page.done("error pages")


def test_the_api_docs_render_offline_under_the_csp(live, watched):
    page = watched
    answer = page.goto(live.url + "/docs")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    page.locator(".swagger-ui .info .title").filter(has_text="LoRA Studio").wait_for()
    page.get_by_text("/api/v1/characters", exact=True).first.wait_for()  # the operations are listed
    shot(page, "docs")
    page.done("/docs")
    page.goto(live.url + "/redoc")  # off (ReDoc loads its logo from its CDN): Swagger UI instead
    assert page.url == live.url + "/docs"
