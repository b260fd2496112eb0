"""Every answer carries the security headers (pages, JSON, files, event streams, errors, the docs), and /docs
loads nothing from outside the studio (/redoc, whose bundle would, leads there)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import lorastudio.web
from lorastudio.web.app import create_app

EXPECTED = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}


@pytest.fixture
def app(studio_settings):
    app = create_app(studio_settings)

    @app.get("/api/v1/test-boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")

    return app


def _check(answer) -> None:
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    for name, value in EXPECTED.items():
        assert answer.headers.get(name) == value, f"{where}: {name} is {answer.headers.get(name)!r}"
    assert len(answer.headers.get_list("x-content-type-options")) == 1, where
    policy = answer.headers.get("content-security-policy", "")
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives.get("frame-ancestors") == "'none'", f"{where}: {policy!r}"
    assert directives.get("default-src") == "'self'" and directives.get("object-src") == "'none'", where
    scripts = directives.get("script-src", "")
    assert scripts.startswith("'self'") and "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, where
    assert "http" not in policy and "*" not in policy, f"{where}: nothing outside the studio may be allowed"


def test_every_answer_carries_the_security_headers(app):
    with TestClient(app, raise_server_exceptions=False) as client:
        job = client.post("/api/v1/generations", json={"prompt": "johnhero", "steps": 2, "seed": 1}).json()
        _check(client.post(f"/api/v1/jobs/{job['id']}/cancel"))
        with client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as events:  # ends: the job is cancelled
            assert events.headers["content-type"].startswith("text/event-stream")
            assert "event: end" in events.read().decode()
            _check(events)
        for path in (
            "/",
            "/characters",
            "/studio",
            "/api/v1/health",
            "/static/app.js",
            "/static/htmx.min.js",
            "/healthz",
            "/readyz",
            "/openapi.json",
            "/no-such-page",
            "/api/v1/no-such-thing",
            "/jobs/999999",
            "/api/v1/jobs/999999",
            "/api/v1/jobs/0",
            "/api/v1/test-boom",
        ):
            _check(client.get(path))
        assert client.get("/api/v1/test-boom").status_code == 500  # answered past every add_middleware layer
        _check(client.get("/no-such-page", headers={"HX-Request": "true"}))
        _check(client.post("/api/v1/characters", json={}))  # 422
        _check(client.get("/metrics"))  # 403: the test client is no loopback client
        for path in ("/docs", "/docs/swagger-init.js", "/docs/assets/swagger-ui.css"):
            _check(client.get(path))
        _check(client.get("/redoc", follow_redirects=False))


def test_the_page_policy_runs_no_inline_code_and_no_template_has_any(app):
    policy = TestClient(app).get("/").headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline'; img" not in policy.split("script-src")[1][:20]
    assert "style-src 'self' 'unsafe-inline'" in policy and "img-src 'self' data:" in policy
    templates = Path(lorastudio.web.__file__).parent / "templates"
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+=", re.I)  # a script body or an on*= handler
    offenders = [p.name for p in templates.rglob("*.html") if inline.search(p.read_text(encoding="utf-8"))]
    assert offenders == []  # the policy would block them: behaviours go in static/*.js


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        found = dict(attrs)
        for key in ("src", "href"):
            if found.get(key) is not None and tag in ("script", "link", "img", "iframe"):
                self.urls.append(found[key])


def test_the_api_docs_load_only_from_the_studio(app):
    client = TestClient(app)
    answer = client.get("/docs")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    parser = _Assets()
    parser.feed(answer.text)
    assert any(u.endswith(".js") for u in parser.urls), parser.urls
    assert "<script>" not in answer.text.replace(" ", ""), "an inline script would need the CSP loosened"
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), f"/docs loads {url} from outside the studio"
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert not re.search(r"https?://", answer.text), "no address outside the studio in the page"
    assert '"5.' in client.get("/docs/assets/swagger-ui-bundle.js").text  # Swagger UI 5 reads OpenAPI 3.1
    assert 'data-openapi="/openapi.json"' in answer.text
    assert "validatorUrl: null" in client.get("/docs/swagger-init.js").text  # no badge from swagger.io
    redoc = client.get("/redoc", follow_redirects=False)
    assert redoc.status_code == 308 and redoc.headers["location"] == "/docs"
