"""Error pages (an unknown page, a domain error) carry the site's header: navigation, the visitor and their
balance; htmx requests still get the bare fragment, shown in the page's flash area."""

from __future__ import annotations

from fastapi.testclient import TestClient

from lorastudio.studio import accounts
from lorastudio.studio.db import make_engine, session_factory
from lorastudio.web.app import create_app
from lorastudio.web.pages.common import NAV

LINKS = [href for _, links in NAV for _, href in links]


def _has_header(html: str, *, user: str | None, balance: int | None) -> None:
    assert '<nav aria-label="Main navigation">' in html
    for href in LINKS:
        assert f'href="{href}"' in html, href
    if user is None:
        assert 'class="user"' not in html
    else:
        assert f'class="user" >{user}</a>' in html and f"{balance} credits" in html


def test_unknown_pages_and_domain_errors_have_the_site_header_htmx_gets_the_fragment(studio_settings):
    client = TestClient(create_app(studio_settings))
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "no such page" in missing.text
    _has_header(missing.text, user="local", balance=1000)
    unknown_job = client.get("/jobs/987654")  # NotFound raised by the studio: a domain error
    assert unknown_job.status_code == 404 and "job 987654" in unknown_job.text.lower()
    _has_header(unknown_job.text, user="local", balance=1000)
    bad_id = client.get("/jobs/not-a-number")  # a validation error as a page
    assert bad_id.status_code == 422
    _has_header(bad_id.text, user="local", balance=1000)
    fragment = client.get("/no-such-page", headers={"HX-Request": "true"})
    assert fragment.status_code == 404 and fragment.headers["hx-retarget"] == "#flash"
    assert fragment.text.strip() == '<p class="flash error" role="alert">no such page</p>'


def test_with_accounts_on_the_header_shows_who_is_logged_in(studio_settings):
    settings = studio_settings.model_copy(update={"accounts": True})
    client = TestClient(create_app(settings))
    with session_factory(make_engine(settings))() as session:
        accounts.add_user(session, name="maya", password="correct horse battery", starting_credits=300)
    stranger = client.get("/no-such-page")
    assert stranger.status_code == 404
    _has_header(stranger.text, user=None, balance=None)  # nobody logged in: the navigation, no user
    login = client.post("/api/v1/auth/login", json={"name": "maya", "password": "correct horse battery"})
    assert login.status_code == 200, login.text
    maya = client.get("/no-such-page")
    _has_header(maya.text, user="maya", balance=300)
    assert client.get("/jobs/987654").status_code == 404
    _has_header(client.get("/jobs/987654").text, user="maya", balance=300)
