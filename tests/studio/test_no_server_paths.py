"""No answer, page, PNG or export carries a server path. A whole session is played (a training, scenes with
prompt tags, a scene that fails, a storyboard exported as a ZIP), then every GET route of the OpenAPI document
and every page is read with the ids that session made, and every PNG's text chunks and the ZIP's entries
are searched for the studio's folders (its home, temp, the install, the user's home)."""

from __future__ import annotations

import io
import re
import zipfile

from PIL import Image

from lorastudio.studio.redact import server_roots
from lorastudio.studio.workers import Worker
from tests.studio.conftest import john_dataset

API = "/api/v1"


def _leaks(text: str, roots: tuple[str, ...]) -> list[str]:
    return [root for root in roots if root in text]


def test_no_answer_page_png_or_export_carries_a_server_path(client, studio_settings, john_refs, trained):
    roots = server_roots(studio_settings)
    assert str(studio_settings.home) in roots
    worker = Worker(studio_settings, name="in-process")
    character_id, dataset_id = john_dataset(client, john_refs)
    training = client.post(f"{API}/trainings", json={"dataset_id": dataset_id, "overrides": {"steps": 4}}).json()
    worker.drain()
    trained_job = client.get(f"{API}/jobs/{training['id']}").json()
    assert trained_job["status"] == "succeeded", trained_job
    hero = client.post(f"{API}/loras", files={"file": ("Hero.safetensors", trained["tiny-sd15"].read_bytes())}).json()
    scene = client.post(
        f"{API}/generations", json={"prompt": "johnhero <lora:johnhero:0.8>", "base": "tiny-sd15", "steps": 2, "n": 1}
    ).json()
    worker.drain()
    assert client.get(f"{API}/jobs/{scene['id']}").json()["status"] == "succeeded"
    # A scene whose LoRA file went bad in the store: the job fails, and its error names no folder.
    broken = client.post(f"{API}/loras", files={"file": ("Broken.safetensors", trained["style-sd15"].read_bytes())})
    store = client.app.state.studio.store
    version = broken.json()["versions"][0]
    from lorastudio.studio.db import LoraVersion

    with client.app.state.studio.factory() as session:
        blob = session.get(LoraVersion, version["id"]).blob
    store.path(blob).write_bytes(b"\x10" + b"\x00" * 40)  # damaged on disk after it was checked
    failing = client.post(
        f"{API}/generations",
        json={
            "prompt": "kungfustyle fight",
            "base": "tiny-sd15",
            "steps": 2,
            "loras": [{"lora_id": broken.json()["id"]}],
        },
    ).json()
    worker.drain()
    failed = client.get(f"{API}/jobs/{failing['id']}").json()
    assert failed["status"] == "failed" and failed["error_message"]
    board = client.post(f"{API}/storyboards", json={"title": "Fight"}).json()
    client.post(f"{API}/storyboards/{board['id']}/scenes", json={"job_id": scene["id"]}).raise_for_status()
    export = client.post(f"{API}/storyboards/{board['id']}/exports", json={"format": "zip"}).json()
    worker.drain()
    image = client.get(f"{API}/jobs/{scene['id']}/images").json()[0]
    recipe = client.post(f"{API}/recipes", json={"name": "r", "loras": [{"lora_id": hero["id"]}]}).json()
    ids = {
        "job_id": scene["id"],
        "lora_id": hero["id"],
        "image_id": image["id"],
        "dataset_id": dataset_id,
        "character_id": character_id,
        "storyboard_id": board["id"],
        "recipe_id": recipe["id"],
        "style_id": 1,
        "index": 0,
        "export_id": export["id"],
    }
    found: list[str] = []
    document = client.get("/openapi.json").json()
    for path, methods in document["paths"].items():
        if "get" not in methods:
            continue
        names = re.findall(r"{(\w+)}", path)
        if any(n not in ids for n in names):
            continue
        url = path.format(**{n: ids[n] for n in names})
        for variant in (
            url,
            url.replace(str(scene["id"]), str(training["id"])),
            url.replace(str(scene["id"]), str(failing["id"])),
        ):
            response = client.get(variant)
            body = response.content.decode("latin-1")
            if response.headers.get("content-type", "").startswith("image/png"):
                body = " ".join(Image.open(io.BytesIO(response.content)).text.values())
            found += [f"{variant}: {leak}" for leak in _leaks(body, roots)]
    pages = [
        "/",
        "/train",
        f"/train/{dataset_id}",
        "/characters",
        "/styles",
        "/library",
        "/studio",
        "/storyboards",
        f"/storyboards/{board['id']}",
        f"/jobs/{scene['id']}",
        f"/jobs/{failing['id']}",
        f"/jobs/{training['id']}",
        "/account",
    ]
    for page in pages:
        found += [f"{page}: {leak}" for leak in _leaks(client.get(page).text, roots)]
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"{API}/storyboards/{board['id']}/exports/{export['id']}").content))
    for entry in archive.namelist():
        data = archive.read(entry)
        png = entry.endswith(".png")
        text = " ".join(Image.open(io.BytesIO(data)).text.values()) if png else data.decode("latin-1")
        found += [f"zip {entry}: {leak}" for leak in _leaks(text, roots)]
    assert not found, "\n".join(found[:20])
