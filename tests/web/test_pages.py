"""The pages every visitor meets: home and navigation, account (ledger, tokens), login with accounts on,
errors as pages, and nothing fetched from outside the studio."""

from __future__ import annotations

import pytest

from lorastudio.studio import accounts
from lorastudio.studio.db import make_engine, session_factory
from tests.web.conftest import serve, shot

pytestmark = pytest.mark.browser


def test_home_has_the_guide_s_navigation_and_the_balance(live, page):
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(live.url) else outside.append(r.url))
    page.goto(live.url + "/")
    nav = page.get_by_role("navigation", name="Main navigation")
    for label in ("Train New LoRA", "Character Manager", "Fighting Styles", "LoRA Library", "Studio", "Storyboard"):
        assert nav.get_by_role("link", name=label, exact=True).is_visible()
    assert "LoRA Studio" in nav.text_content() and "Production Studio" in nav.text_content()
    assert page.locator("#balance").inner_text() == "1000 credits"
    shot(page, "home")
    page.keyboard.press("Tab")  # the skip link first: keyboard users get past the header at once
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert outside == [], f"the page fetched from outside the studio: {outside}"


def test_account_page_shows_the_ledger_and_makes_and_revokes_tokens(live, page):
    page.goto(live.url + "/account")
    assert "starting credits" in page.locator("table").first.inner_text()
    page.get_by_role("button", name="Create token").click()
    assert "1-80 characters" in page.get_by_role("alert").inner_text()  # said next to the field
    page.get_by_label("Token name").fill("render farm")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").inner_text()
    assert token.startswith(accounts.TOKEN_PREFIX)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke").click()
    page.get_by_text("revoked").wait_for()
    shot(page, "account")


def test_with_accounts_on_pages_need_a_login_and_say_what_went_wrong(studio_settings, page):
    settings = studio_settings.model_copy(update={"accounts": True})
    for live in serve(settings):
        with session_factory(make_engine(settings))() as session:
            accounts.add_user(session, name="maya", password="correct horse battery", starting_credits=300)
        page.goto(live.url + "/account")
        assert page.url.startswith(live.url + "/login")
        page.get_by_label("User name").fill("maya")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Log in").click()
        assert "wrong user name or password" in page.get_by_role("alert").inner_text()
        assert page.get_by_label("User name").input_value() == "maya"  # what was typed is kept
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(live.url + "/account")
        assert page.locator(".user").inner_text() == "maya" and page.locator("#balance").inner_text() == "300 credits"
        shot(page, "login-account")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(live.url + "/login")


def test_unknown_pages_and_ids_are_pages_not_json(live, page):
    answer = page.goto(live.url + "/no-such-page")
    assert answer.status == 404 and "no such page" in page.get_by_role("alert").inner_text()
