"""Auto-captioning in the studio: refused at submit in words (unknown captioner, no model configured, no
images, someone else's dataset, one already running); a real worker runs the job (no credits held, progress
in its phase), writes captions marked "auto" and keeps every caption the user wrote unless told to
overwrite, while its own earlier ones are replaced; a corrupt upload is counted, not fatal."""

from __future__ import annotations

import pytest

from lorastudio.engine import HELD_OUT_CHARACTERS, caption_folder
from lorastudio.studio.workers import Worker

JOHN = HELD_OUT_CHARACTERS["johnhero"]


def _dataset(client, refs, tmp_path) -> int:
    """John's dataset: five pictures without captions, one with its .txt, one corrupt upload."""
    character = client.post("/api/v1/characters", json={"name": "Action Hero John", "description": "red gi"}).json()
    dataset = client.post(
        "/api/v1/datasets",
        json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": character["id"]},
    ).json()
    pngs = sorted(refs.glob("*.png"))[:6]
    files = [("files", (p.name, p.read_bytes())) for p in pngs]
    files.append(("files", (pngs[5].with_suffix(".txt").name, b"johnhero, my own words")))
    files.append(("files", ("broken.png", b"\x89PNG\r\n\x1a\n broken")))
    assert client.post(f"/api/v1/datasets/{dataset['id']}/images", files=files).status_code == 200
    return dataset["id"]


def _caption(client, dataset_id: int, **body):
    return client.post(f"/api/v1/datasets/{dataset_id}/captions", json=body)


def test_captioning_is_refused_at_submit_in_words(client, john_refs, tmp_path):
    dataset_id = _dataset(client, john_refs, tmp_path)
    unknown = _caption(client, dataset_id, captioner="../../models/blip")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["message"] == "unknown captioner '../../models/blip'; use one of: toyworld, model"
    no_model = _caption(client, dataset_id, captioner="model")
    assert no_model.status_code == 422 and "LORASTUDIO_CAPTIONER" in no_model.json()["error"]["message"]
    assert no_model.json()["error"]["setting"] == "captioner"
    assert _caption(client, 999_999, captioner="toyworld").status_code == 404
    empty = client.post("/api/v1/datasets", json={"name": "Empty", "kind": "character", "trigger": "emptyhero"})
    refused = _caption(client, empty.json()["id"], captioner="toyworld")
    assert refused.status_code == 422 and "no images to caption" in refused.json()["error"]["message"]
    assert _caption(client, dataset_id, captioner="toyworld", overwrite="maybe").status_code == 422

    key = {"Idempotency-Key": "caption-once"}
    first = client.post(f"/api/v1/datasets/{dataset_id}/captions", json={"captioner": "toyworld"}, headers=key)
    assert first.status_code == 201, first.text
    again = client.post(f"/api/v1/datasets/{dataset_id}/captions", json={"captioner": "toyworld"}, headers=key)
    assert again.json()["id"] == first.json()["id"]  # a retried submit, not a second job
    busy = _caption(client, dataset_id, captioner="toyworld")
    assert busy.status_code == 409 and f"job {first.json()['id']}" in busy.json()["error"]["message"]
    job = first.json()
    assert job["type"] == "caption" and job["family"] is None and job["memory_mb"] is None  # any worker takes it
    assert client.get("/api/v1/credits").json()["balance"] == 1000  # nothing held: captioning is cheap


def test_a_worker_captions_and_keeps_what_the_user_wrote(client, studio_settings, john_refs, tmp_path):
    dataset_id = _dataset(client, john_refs, tmp_path)
    images = {i["filename"]: i for i in client.get(f"/api/v1/datasets/{dataset_id}").json()["images"]}
    pictures = sorted(p.name for p in john_refs.glob("*.png"))[:6]
    mine, edited, others = pictures[5], pictures[0], pictures[1:5]
    assert images[mine]["caption_source"] == "user" and images[mine]["caption"] == "johnhero, my own words"
    assert images[edited]["caption_source"] == "auto"  # the "johnhero, a person" made for an upload
    client.put(
        f"/api/v1/datasets/{dataset_id}/images/{images[edited]['id']}/caption", json={"caption": "johnhero typed"}
    )

    job = _caption(client, dataset_id, captioner="toyworld").json()
    assert Worker(studio_settings, name="in-process").drain() == 1
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done
    assert done["result"] == {"type": "caption", "captioned": 4, "kept": 2, "failed": 1, "captioner": "toyworld"}
    assert done["progress"]["phase"] == "caption" and done["progress"]["step"] == done["progress"]["total"] == 4

    # What the engine writes for the same pictures in a folder is what the studio stored.
    folder = tmp_path / "same"
    folder.mkdir()
    for p in sorted(john_refs.glob("*.png"))[:6]:
        (folder / p.name).write_bytes(p.read_bytes())
    expected = caption_folder(
        folder, _toy(), trigger="johnhero", kind="character", description="red gi", leave_out_identity=True
    ).captions
    after = {i["filename"]: i for i in client.get(f"/api/v1/datasets/{dataset_id}").json()["images"]}
    assert after[mine]["caption"] == "johnhero, my own words" and after[mine]["caption_source"] == "user"
    assert after[edited]["caption"] == "johnhero typed" and after[edited]["caption_source"] == "user"
    for name in others:
        assert after[name]["caption_source"] == "auto"
        assert after[name]["caption"] == expected[name] and JOHN.words() not in expected[name]

    # Its own captions are replaced by the next run; with overwrite, the user's too (the look kept this time).
    job = _caption(client, dataset_id, captioner="toyworld", overwrite=True, leave_out_identity=False).json()
    Worker(studio_settings, name="in-process").drain()
    done = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["result"]["captioned"] == 6 and done["result"]["kept"] == 0 and done["result"]["failed"] == 1
    final = {i["filename"]: i for i in client.get(f"/api/v1/datasets/{dataset_id}").json()["images"]}
    assert all(final[n]["caption_source"] == "auto" for n in sorted(final) if n != "broken.png")
    assert all(final[n]["caption"].startswith("johnhero, ") for n in sorted(final) if n != "broken.png")
    assert any(JOHN.words() in final[n]["caption"] for n in sorted(final) if n != "broken.png")


def _toy():
    from lorastudio.engine import ToyCaptioner

    return ToyCaptioner()


@pytest.mark.slow  # a second app and a model load: about 7 s on 2 cores
def test_the_configured_model_captions_on_a_worker(studio_settings, john_refs, tmp_path):
    from fastapi.testclient import TestClient

    from lorastudio.engine import build_tiny_blip
    from lorastudio.web.app import create_app

    settings = studio_settings.model_copy(update={"captioner": str(build_tiny_blip(tmp_path / "tiny-blip"))})
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        dataset_id = _dataset(client, john_refs, tmp_path)
        job = _caption(client, dataset_id, captioner="model")
        assert job.status_code == 201, job.text
        Worker(settings, name="in-process").drain()
        done = client.get(f"/api/v1/jobs/{job.json()['id']}").json()
        assert done["status"] == "succeeded", done
        assert done["result"]["captioner"] == "BLIP tiny-blip" and done["result"]["captioned"] == 5
        images = client.get(f"/api/v1/datasets/{dataset_id}").json()["images"]
        auto = [i["caption"] for i in images if i["caption_source"] == "auto"]
        assert len(auto) == 5 and all(c.startswith("johnhero") and c.count("johnhero") == 1 for c in auto)
        assert str(tmp_path) not in str(done)  # the model by its name, never its folder
