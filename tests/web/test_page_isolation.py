"""Every page route answers another user's ids as the API does: not found (a page, not JSON, not 403).
The route list comes from the page modules, so a new page is covered or this test asks for its form."""

from __future__ import annotations

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from lorastudio.web.pages import MODULES
from tests.studio.test_accounts import PASSWORD, _fill, _maya_world, team, team_settings  # noqa: F401

MAYAS = ("Action Hero John", "Capoeira", "Epic Fight Sequence", "mine")  # names of what _maya_world makes
PNG = ("a.png", b"\x89PNG\r\n\x1a\n")
# Form fields for routes that require some, so that a 404 can only come from the ids.
FORMS = {
    ("POST", "/train/{dataset_id}/images"): {"files": [("files", PNG)]},
    ("POST", "/characters/{character_id}/reference"): {"files": [("reference", PNG)]},
    ("POST", "/library/{lora_id}/rate"): {"data": {"stars": "5"}},
    ("POST", "/train/{dataset_id}/images/{image_id}/caption"): {"data": {"caption": "johnhero, stolen"}},
    ("POST", "/library/{lora_id}/public"): {"data": {"public": "true"}},
    ("POST", "/storyboards/{board_id}/exports"): {"data": {"fmt": "pdf"}},
    ("POST", "/storyboards/{board_id}/scenes/{scene_id}/move"): {"data": {"direction": "up"}},
    ("POST", "/storyboards/{board_id}/order"): {"data": {"scene_ids": "SCENE"}},
    ("POST", "/storyboards/{board_id}/scenes"): {"data": {"job_id": "JOB"}},
}


def _page_routes():
    for module in MODULES:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and "{" in route.path:
                for method in route.methods - {"HEAD"}:
                    yield method, route.path


def test_every_page_answers_another_user_s_ids_with_a_not_found_page(team, team_settings, john_refs):  # noqa: F811
    client, h = team
    ids = _maya_world(client, team_settings, h["maya"], john_refs)
    kane = TestClient(client.app)
    answer = kane.post("/login", data={"name": "kane", "password": PASSWORD, "next": "/"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    csrf = kane.get("/api/v1/auth/me").json()["csrf_token"]
    swept = 0
    for method, path in sorted(set(_page_routes())):
        named = path.replace("{board_id}", "{storyboard_id}").replace("/train/", "/datasets/", 1)
        url = _fill(named, ids).replace("/datasets/", "/train/", 1) if path.startswith("/train/") else _fill(named, ids)
        extra = dict(FORMS.get((method, path), {}))
        if path.endswith("/progress"):
            extra["params"] = {"job": ids["job_id"]}
        fields = {
            k: {"SCENE": str(ids["scene_id"]), "JOB": str(ids["job_id"])}.get(v, v)
            for k, v in extra.pop("data", {}).items()
        }
        data = {"csrf_token": csrf} | fields if method == "POST" else None
        answer = kane.request(method, url, data=data, follow_redirects=False, **extra)
        # A not-found page, or a fragment saying so where the action was (library rows, storyboard cards).
        assert answer.status_code in (404, 422, 200), f"{method} {path}: {answer.status_code} {answer.text[:300]}"
        assert answer.headers["content-type"].startswith("text/html") and "not found" in answer.text, answer.text
        assert not any(name in answer.text for name in MAYAS), f"{method} {path} shows Maya's things"
        swept += 1
    assert swept >= 15
