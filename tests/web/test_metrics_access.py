"""/metrics is served to loopback clients, to the metrics token, or to anyone when public; forwarding headers
count only from the trusted proxies, so a reverse proxy on the same machine opens nothing to the world."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from lorastudio.errors import Invalid
from lorastudio.web.app import create_app
from lorastudio.web.clients import client_host, client_of

TOKEN = "s3cret-scraper-token-0123456789"


@pytest.fixture
def app(studio_settings):
    return create_app(studio_settings.model_copy(update={"metrics_token": TOKEN, "trusted_proxies": "10.0.0.2"}))


def _get(app, peer: str, **headers: str):
    with TestClient(app, client=(peer, 40000)) as client:
        return client.get("/metrics", headers=headers)


def test_metrics_for_loopback_clients_and_the_token_only(app):
    assert _get(app, "127.0.0.1").status_code == 200
    assert _get(app, "::1").status_code == 200
    refused = _get(app, "203.0.113.9")
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/json"
    message = refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "forbidden"
    assert "LORASTUDIO_METRICS_TOKEN" in message and "LORASTUDIO_METRICS_PUBLIC" in message
    assert "lorastudio_jobs" not in refused.text
    token = _get(app, "203.0.113.9", authorization=f"Bearer {TOKEN}")
    assert token.status_code == 200 and "lorastudio_queue_depth" in token.text
    wrong = _get(app, "203.0.113.9", authorization=f"Bearer {TOKEN[:-1]}x")
    assert wrong.status_code == 403 and "token is wrong" in wrong.json()["error"]["message"]
    assert _get(app, "203.0.113.9", authorization=f"Basic {TOKEN}").status_code == 403


def test_metrics_public_serves_anyone_and_closed_it_serves_no_stranger(studio_settings):
    public = create_app(studio_settings.model_copy(update={"metrics_public": True}))
    assert _get(public, "203.0.113.9").status_code == 200
    closed = create_app(studio_settings)
    assert _get(closed, "203.0.113.9", authorization=f"Bearer {TOKEN}").status_code == 403  # no token set


def test_a_proxy_on_this_machine_that_is_not_trusted_opens_nothing(app):
    # nginx on the same machine connects from 127.0.0.1 and says whom it forwards for.
    assert _get(app, "127.0.0.1", **{"x-forwarded-for": "203.0.113.9"}).status_code == 403
    assert _get(app, "127.0.0.1", **{"x-forwarded-for": "127.0.0.1"}).status_code == 403
    assert _get(app, "127.0.0.1", forwarded="for=203.0.113.9;proto=https").status_code == 403
    # A trusted proxy on another machine (10.0.0.2): its own loopback is not this machine's.
    assert _get(app, "10.0.0.2", **{"x-forwarded-for": "127.0.0.1"}).status_code == 403
    assert _get(app, "10.0.0.2").status_code == 403
    assert _get(app, "10.0.0.2", **{"x-forwarded-for": "203.0.113.9"}, authorization=f"Bearer {TOKEN}").is_success


def test_a_trusted_proxy_on_this_machine_passes_on_local_scrapers_only(studio_settings):
    app = create_app(studio_settings.model_copy(update={"trusted_proxies": "127.0.0.1, ::1"}))
    assert _get(app, "127.0.0.1", **{"x-forwarded-for": "127.0.0.1"}).status_code == 200
    assert _get(app, "127.0.0.1", **{"x-forwarded-for": "203.0.113.9"}).status_code == 403
    # A client that sends its own X-Forwarded-For: 127.0.0.1 has its real address appended by the proxy.
    assert _get(app, "127.0.0.1", **{"x-forwarded-for": "127.0.0.1, 203.0.113.9"}).status_code == 403


def _request(peer: str | None, headers: list[tuple[str, str]]) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "client": (peer, 1) if peer else None,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "address", "loopback"),
    [
        ("127.0.0.1", [], "", "127.0.0.1", True),
        ("::ffff:127.0.0.1", [], "", "::ffff:127.0.0.1", True),
        ("198.51.100.1", [], "", "198.51.100.1", False),
        ("127.0.0.1", [("X-Forwarded-For", "198.51.100.7")], "", "127.0.0.1", False),  # not believed
        ("127.0.0.1", [("X-Forwarded-For", "198.51.100.7")], "127.0.0.1", "198.51.100.7", False),
        # Two trusted hops (a load balancer, then the proxy): the client is the first untrusted from the right.
        ("10.1.2.3", [("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.9")], "10.0.0.0/8", "198.51.100.7", False),
        ("10.1.2.3", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "10.0.0.9")], "10.0.0.0/8", "6.6.6.6", False),
        ("10.1.2.3", [("Forwarded", 'for="[2001:db8::17]:4711";proto=https')], "10.1.2.3", "2001:db8::17", False),
        ("10.1.2.3", [("Forwarded", "for=192.0.2.60:8080, for=10.0.0.4")], "10.0.0.0/8", "192.0.2.60", False),
        ("10.1.2.3", [("X-Forwarded-For", "unknown")], "10.1.2.3", "unknown", False),
        ("2001:db8::1", [("X-Forwarded-For", "::1")], "2001:db8::/64", "::1", False),  # the proxy's own loopback
        ("::1", [("X-Forwarded-For", "127.0.0.1")], "::1", "127.0.0.1", True),  # through a proxy on this machine
        ("::1", [("X-Forwarded-For", "127.0.0.1, 10.0.0.3")], "::1, 10.0.0.0/8", "127.0.0.1", False),
        (None, [], "", None, False),
    ],
)
def test_client_of_believes_only_trusted_proxies(peer, headers, trusted, address, loopback):
    client = client_of(_request(peer, headers), trusted)
    assert (client.address, client.is_loopback) == (address, loopback)
    assert client_host(_request(peer, headers), trusted) == (address or "unknown")


def test_a_mistyped_trusted_proxy_stops_the_start(studio_settings):
    with pytest.raises(Invalid, match="LORASTUDIO_TRUSTED_PROXIES: 'nginx.local' is not an IP address"):
        create_app(studio_settings.model_copy(update={"trusted_proxies": "127.0.0.1, nginx.local"}))
