"""Accounts on: logins with CSRF, API tokens, rate limiting, public LoRAs, and one rule for every route:
another user's ids are not found (404, never 403). The route list comes from the app itself, so a new
route is covered (or this test fails asking for an example body)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from lorastudio.engine.toyworld.prebuilt import prebuilt_lora_path
from lorastudio.studio import accounts
from lorastudio.studio.db import make_engine, session_factory
from lorastudio.studio.workers import Worker
from lorastudio.web.state import COOKIE

PASSWORD = "correct horse battery"


@pytest.fixture
def team_settings(studio_settings):
    return studio_settings.model_copy(update={"accounts": True})


@pytest.fixture
def team(team_settings):
    """The app with accounts on and two users, each with an API token: (client, {name: headers})."""
    from lorastudio.web.app import create_app

    with TestClient(create_app(team_settings)) as client:
        headers = {}
        with session_factory(make_engine(team_settings))() as session:
            for name in ("maya", "kane"):
                user = accounts.add_user(session, name=name, password=PASSWORD, starting_credits=500)
                _, secret = accounts.create_token(session, user_id=user.id, name="tests")
                headers[name] = {"Authorization": f"Bearer {secret}"}
        yield client, headers


def _maya_world(client, settings, h, john_refs) -> dict:
    """One of each object Maya can own, with the ids of each."""
    ids = {}
    john = client.post("/api/v1/characters", json={"name": "Action Hero John"}, headers=h).json()
    ids["character_id"] = john["id"]
    png = (john_refs / "johnhero_00.png").read_bytes()
    assert client.put(
        f"/api/v1/characters/{john['id']}/reference", files={"file": ("r.png", png)}, headers=h
    ).is_success
    ids["style_id"] = client.post("/api/v1/styles", json={"name": "Capoeira"}, headers=h).json()["id"]
    data = {"name": "John", "kind": "character", "trigger": "johnhero", "character_id": john["id"]}
    ids["dataset_id"] = client.post("/api/v1/datasets", json=data, headers=h).json()["id"]
    up = client.post(f"/api/v1/datasets/{ids['dataset_id']}/images", files=[("files", ("a.png", png))], headers=h)
    ids["dataset_image_id"] = up.json()["images"][0]["id"]
    lora = client.post(
        "/api/v1/loras", files={"file": ("mine.safetensors", prebuilt_lora_path("sword").read_bytes())}, headers=h
    ).json()
    ids["lora_id"] = lora["id"]
    scene = client.post(
        "/api/v1/generations",
        json={"prompt": "johnhero", "steps": 2, "loras": [{"lora_id": lora["id"], "strength": 1.0}]},
        headers=h,
    ).json()
    ids["job_id"] = scene["id"]
    recipe = {"name": "r", "loras": [{"lora_id": lora["id"], "strength": 0.8}], "prompt_template": "johnhero"}
    ids["recipe_id"] = client.post("/api/v1/recipes", json=recipe, headers=h).json()["id"]
    Worker(settings, name="in-process").drain()
    ids["image_id"] = client.get(f"/api/v1/jobs/{scene['id']}/images", headers=h).json()[0]["id"]
    board = client.post("/api/v1/storyboards", json={"title": "Epic Fight Sequence"}, headers=h).json()
    ids["storyboard_id"] = board["id"]
    added = client.post(f"/api/v1/storyboards/{board['id']}/scenes", json={"job_id": scene["id"]}, headers=h)
    assert added.status_code == 201, added.text
    ids["scene_id"] = added.json()["id"]
    export = client.post(f"/api/v1/storyboards/{board['id']}/exports", json={"format": "png"}, headers=h)
    assert export.status_code == 201, export.text
    ids["export_job_id"] = export.json()["id"]
    Worker(settings, name="in-process").drain()
    ids["token_id"] = client.get("/api/v1/auth/tokens", headers=h).json()[0]["id"]
    return ids


# A valid body for each route that takes one, so that a 404 can only come from the ids.
BODIES = {
    ("POST", "/datasets/{dataset_id}/captions"): {"json": {"captioner": "toyworld"}},
    ("PATCH", "/characters/{character_id}"): {"json": {"description": "x"}},
    ("PUT", "/characters/{character_id}/reference"): {"files": {"file": ("r.png", b"")}},
    ("PATCH", "/loras/{lora_id}"): {"json": {"description": "mine now"}},
    ("PUT", "/loras/{lora_id}/rating"): {"json": {"stars": 5}},
    ("PUT", "/loras/{lora_id}/public"): {"json": {"public": True}},
    ("POST", "/datasets/{dataset_id}/images"): {"files": [("files", ("a.png", b""))]},
    ("PUT", "/datasets/{dataset_id}/images/{image_id}/caption"): {"json": {"caption": "x"}},
    ("PUT", "/images/{image_id}/verdict"): {"json": {"verdict": "kept"}},
    ("POST", "/recipes/{recipe_id}/apply"): {"json": {}},
    ("PATCH", "/storyboards/{storyboard_id}"): {"json": {"title": "mine now"}},
    ("POST", "/storyboards/{storyboard_id}/scenes"): {"json": {"job_id": 1}},
    ("PATCH", "/storyboards/{storyboard_id}/scenes/{scene_id}"): {"json": {"title": "x"}},
    ("PUT", "/storyboards/{storyboard_id}/order"): {"json": {"scene_ids": [1]}},
    ("POST", "/storyboards/{storyboard_id}/scenes/{scene_id}/move"): {"json": {"direction": "up"}},
    ("POST", "/storyboards/{storyboard_id}/exports"): {"json": {"format": "pdf"}},
}


def _fill(path: str, ids: dict) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in ("index", "step"):
            return "0"
        if name == "alternative_id":  # Maya's LoRA is not found for Kane before any alternative is looked up
            return "1"
        if name == "image_id" and path.startswith("/datasets"):
            return str(ids["dataset_image_id"])
        if name == "job_id" and "/exports/" in path:
            return str(ids["export_job_id"])
        return str(ids[name])

    return re.sub(r"\{(\w+)\}", value, path)


def test_every_route_answers_another_user_s_ids_with_404(team, team_settings, john_refs):
    client, h = team
    ids = _maya_world(client, team_settings, h["maya"], john_refs)
    swept = 0
    for path, ops in client.app.openapi()["paths"].items():
        route = path.removeprefix("/api/v1")
        if "{" not in route:
            continue
        for method, op in ops.items():
            method = method.upper()
            body = BODIES.get((method, route), {})
            assert "requestBody" not in op or body, f"add an example body for {method} {route} to BODIES"
            answer = client.request(method, "/api/v1" + _fill(route, ids), headers=h["kane"], **body)
            assert answer.status_code == 404, f"{method} {route}: {answer.status_code} {answer.text[:200]}"
            assert answer.json()["error"]["code"] == "not_found"
            # ...and Maya reaches the same object.
            swept += 1
    assert swept >= 35
    # Ids inside bodies are checked the same way.
    kane = h["kane"]
    board = client.post("/api/v1/storyboards", json={"title": "Kane's"}, headers=kane).json()
    inside = [
        ("/trainings", {"dataset_id": ids["dataset_id"]}),
        ("/trainings/estimate", {"dataset_id": ids["dataset_id"]}),
        ("/generations", {"prompt": "x", "loras": [{"lora_id": ids["lora_id"]}]}),
        ("/recipes", {"name": "stolen", "loras": [{"lora_id": ids["lora_id"]}]}),
        ("/datasets", {"name": "x", "kind": "character", "trigger": "xhero", "character_id": ids["character_id"]}),
        (f"/storyboards/{board['id']}/scenes", {"job_id": ids["job_id"]}),
    ]
    for path, body in inside:
        answer = client.post("/api/v1" + path, json=body, headers=kane)
        assert answer.status_code == 404, f"POST {path}: {answer.status_code} {answer.text[:200]}"
    # Lists show Kane only his own (and what is shipped with the studio).
    for path in ("/characters", "/datasets", "/jobs", "/recipes", "/storyboards", "/auth/tokens"):
        listed = client.get("/api/v1" + path, headers=kane).json()
        listed = listed["items"] if isinstance(listed, dict) else listed
        assert all(x["id"] not in ids.values() or path in ("/storyboards", "/auth/tokens") for x in listed), path
    assert [b["id"] for b in client.get("/api/v1/storyboards", headers=kane).json()] == [board["id"]]
    assert ids["lora_id"] not in [x["id"] for x in client.get("/api/v1/loras", headers=kane).json()["items"]]
    assert "Capoeira" not in [s["name"] for s in client.get("/api/v1/styles", headers=kane).json()]
    maya_sees = client.get(f"/api/v1/storyboards/{ids['storyboard_id']}", headers=h["maya"])
    assert maya_sees.status_code == 200


def test_a_public_lora_is_in_everyone_s_library_read_only_and_counts_their_use(team, team_settings):
    client, h = team
    lora = client.post(
        "/api/v1/loras", files={"file": ("s.safetensors", prebuilt_lora_path("sword").read_bytes())}, headers=h["maya"]
    ).json()
    assert lora["public"] is False
    shared = client.put(f"/api/v1/loras/{lora['id']}/public", json={"public": True}, headers=h["maya"]).json()
    assert shared["public"] is True
    assert lora["id"] in [x["id"] for x in client.get("/api/v1/loras", headers=h["kane"]).json()["items"]]
    assert client.get(f"/api/v1/loras/{lora['id']}/file", headers=h["kane"]).status_code == 200
    refused = client.delete(f"/api/v1/loras/{lora['id']}", headers=h["kane"])
    assert refused.status_code == 403 and "only its owner" in refused.json()["error"]["message"]
    assert (
        client.put(f"/api/v1/loras/{lora['id']}/public", json={"public": False}, headers=h["kane"]).status_code == 403
    )
    used = client.post(
        "/api/v1/generations",
        json={"prompt": "swordstyle", "steps": 2, "loras": [{"lora_id": lora["id"]}]},
        headers=h["kane"],
    )
    assert used.status_code == 201, used.text
    Worker(team_settings, name="in-process").drain()
    done = client.get(f"/api/v1/jobs/{used.json()['id']}", headers=h["kane"]).json()
    assert done["status"] == "succeeded", (done["error_code"], done["error_message"])
    assert client.get(f"/api/v1/loras/{lora['id']}", headers=h["maya"]).json()["usage_count"] == 1
    client.put(f"/api/v1/loras/{lora['id']}/public", json={"public": False}, headers=h["maya"])
    assert client.get(f"/api/v1/loras/{lora['id']}", headers=h["kane"]).status_code == 404


def test_login_cookie_csrf_logout_and_rate_limit(team):
    client, _ = team
    assert client.get("/api/v1/characters").status_code == 401
    wrong = client.post("/api/v1/auth/login", json={"name": "maya", "password": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert client.post("/api/v1/auth/login", json={"name": "nobody", "password": "x"}).status_code == 401
    login = client.post("/api/v1/auth/login", json={"name": "maya", "password": PASSWORD})
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    csrf = login.json()["csrf_token"]
    me = client.get("/api/v1/auth/me").json()
    assert me["user"]["name"] == "maya" and me["accounts"] is True and me["user"]["balance"] == 500
    assert me["csrf_token"] == csrf
    no_token = client.post("/api/v1/characters", json={"name": "Villain Kane"})
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["error"]["message"]
    forged = client.post("/api/v1/characters", json={"name": "Villain Kane"}, headers={"X-CSRF-Token": "guess"})
    assert forged.status_code == 403
    made = client.post("/api/v1/characters", json={"name": "Villain Kane"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.clear()
    assert client.get("/api/v1/characters").status_code == 401
    for _ in range(accounts.FAILS_PER_USER - 1):  # one failure above already
        client.post("/api/v1/auth/login", json={"name": "maya", "password": "nope"})
    limited = client.post("/api/v1/auth/login", json={"name": "maya", "password": PASSWORD})
    assert limited.status_code == 429 and "wait 15 minutes" in limited.json()["error"]["message"]


def test_tokens_are_listed_without_secrets_and_refused_once_revoked(team, team_settings):
    client, h = team
    made = client.post("/api/v1/auth/tokens", json={"name": "render farm"}, headers=h["maya"])
    assert made.status_code == 201
    secret = made.json()["token"]
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/auth/me", headers=bearer).json()["user"]["name"] == "maya"
    listed = client.get("/api/v1/auth/tokens", headers=h["maya"]).json()
    assert [t["name"] for t in listed] == ["tests", "render farm"] and all("token" not in t for t in listed)
    assert secret.startswith(listed[1]["prefix"]) and secret not in str(listed)
    assert client.delete(f"/api/v1/auth/tokens/{made.json()['id']}", headers=h["kane"]).status_code == 404
    assert client.delete(f"/api/v1/auth/tokens/{made.json()['id']}", headers=h["maya"]).json()["revoked"] is True
    refused = client.get("/api/v1/auth/me", headers=bearer)
    assert refused.status_code == 401 and "not valid" in refused.json()["error"]["message"]
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Basic eDp5"}).status_code == 401
    with session_factory(make_engine(team_settings))() as session:
        accounts.set_disabled(session, name="kane")
    assert client.get("/api/v1/auth/me", headers=h["kane"]).status_code == 401
    assert client.post("/api/v1/auth/login", json={"name": "kane", "password": PASSWORD}).status_code == 401


def test_users_and_credits_from_the_command_line(run, settings, monkeypatch):
    monkeypatch.setenv("LORASTUDIO_HOME", str(settings.home / "cli-studio"))
    added = run("users", "add", "maya", "--password-stdin", "--json", input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert run("users", "add", "maya", "--password-stdin", input=PASSWORD + "\n").exit_code == 2
    short = run("users", "add", "kane", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "10 to 1024 characters" in short.output
    granted = run("credits", "grant", "maya", "250", "--note", "welcome bonus")
    assert granted.exit_code == 0 and "balance" in granted.output
    history = run("credits", "history", "maya", "--json")
    assert '"balance": 1250' in history.output and "welcome bonus" in history.output
    assert run("credits", "grant", "nobody", "5").exit_code == 2
    assert run("credits", "grant", "maya", "0").exit_code == 2
    assert "maya" in run("users", "list").output
    assert run("users", "disable", "maya").exit_code == 0
    assert "(disabled)" in run("users", "list").output
    token = run("users", "token", "local", "--label", "scripts")
    assert token.exit_code == 0 and token.output.strip().startswith(accounts.TOKEN_PREFIX)


def test_listening_beyond_loopback_needs_accounts(run):
    refused = run("serve", "--host", "0.0.0.0", "--workers", "0")
    assert refused.exit_code == 2 and "LORASTUDIO_ACCOUNTS=true" in refused.output
