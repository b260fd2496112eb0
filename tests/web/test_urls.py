"""URLs come from one place, web/urls.py: the studio returns ids and never writes a URL; the JSON routes fill
the URL fields of what they return (the fields clients read stay as they were) and the templates build their
links with the same functions."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lorastudio.studio import characters
from lorastudio.studio.characters import CharacterIn
from lorastudio.studio.workers import Worker
from lorastudio.web import urls

SRC = Path(__file__).parents[2] / "src" / "lorastudio"


@pytest.fixture
def client(studio_settings):
    from lorastudio.web.app import create_app

    with TestClient(create_app(studio_settings), client=("127.0.0.1", 50000)) as c:
        yield c


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_no_service_and_no_template_writes_an_api_url():
    services = [
        f"{p.relative_to(SRC)}:{n}"
        for p in (SRC / "studio").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "/api/" in line
    ]
    assert services == []
    templates = [
        f"{p.name}:{n}"
        for p in (SRC / "web" / "templates").glob("*.html")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "/api/v1" in line
    ]
    assert templates == []


def test_a_characters_reference_url_is_the_web_faces(client):
    studio = client.app.state.studio
    with studio.factory() as session:
        out = characters.create_character(session, owner_id=studio.local_user, data=CharacterIn(name="John"))
        assert out.reference_image is None and not out.has_reference
    character = client.get(f"/api/v1/characters/{out.id}").json()
    assert character["reference_image"] is None and "has_reference" not in character
    put = client.put(f"/api/v1/characters/{out.id}/reference", files={"file": ("john.png", _png())})
    assert put.status_code == 200, put.text
    with studio.factory() as session:
        service = characters.get_character(session, owner_id=studio.local_user, character_id=out.id)
    assert service.reference_image is None and service.has_reference  # the studio only says there is one
    url = urls.character_reference(out.id)
    assert put.json()["reference_image"] == url == f"/api/v1/characters/{out.id}/reference"
    assert [c["reference_image"] for c in client.get("/api/v1/characters").json()] == [url]
    assert client.get(url).content == _png()
    assert f'src="{url}"' in client.get("/characters").text  # the page links it with the same function


def test_image_and_scene_urls_are_filled_by_the_routes(client, studio_settings):
    job = client.post("/api/v1/generations", json={"prompt": "johnhero fighting", "seed": 5, "steps": 2}).json()
    Worker(studio_settings, name="urls").drain()
    (image,) = client.get(f"/api/v1/jobs/{job['id']}/images").json()
    assert image["url"] == urls.image_file(image["id"]) == f"/api/v1/images/{image['id']}/file"
    assert client.get(f"/api/v1/images/{image['id']}").json()["url"] == image["url"]
    kept = client.put(f"/api/v1/images/{image['id']}/verdict", json={"verdict": "kept"}).json()
    assert kept["url"] == image["url"]
    assert client.get(image["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    board = client.post("/api/v1/storyboards", json={"title": "Alley"}).json()
    board = client.post(f"/api/v1/storyboards/{board['id']}/scenes", json={"job_id": job["id"]}).json()
    (scene,) = board["scenes"]
    assert scene["image_url"] == image["url"]
    page = client.get(f"/storyboards/{board['id']}").text
    assert f'src="{image["url"]}"' in page
    reroll = client.post(f"/api/v1/storyboards/{board['id']}/scenes/{scene['id']}/reroll").json()
    assert reroll["storyboard"]["scenes"][0]["image_url"] is None  # the new job has no image yet
    Worker(studio_settings, name="urls").drain()
    again = client.get(f"/api/v1/storyboards/{board['id']}").json()["scenes"][0]
    assert again["image_url"] == urls.image_file(again["image_id"]) and again["image_id"] != image["id"]


def test_fill_reaches_into_lists_and_nested_models():
    from lorastudio.studio.generation import ImageOut

    image = ImageOut(id=7, job_id=1, seed="5", params={}, verdict=None)
    assert image.url == ""  # as the studio leaves it
    assert urls.fill([(image,)]) == [(image,)] and image.url == "/api/v1/images/7/file"
    assert re.fullmatch(r"/api/v1/loras/3/file\?version=2", urls.lora_file(3, 2))
