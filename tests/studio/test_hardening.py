"""What a hostile second user tried, and what a new user tripped on: prompt tags and base models are names
looked up among what the user may use (never paths), numbers are bounded, one trigger rule, and the
character's look reaches its LoRA."""

from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from lorastudio.engine.generation.pngmeta import parse_a1111
from lorastudio.studio.workers import Worker
from tests.studio.conftest import john_dataset


def _error(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] and body["message"]
    return body["message"]


@pytest.fixture
def hero(client, trained):
    """A character LoRA imported as 'Action Hero John' (trigger johnhero), for the tiny SD1.5 base."""
    data = trained["tiny-sd15"].read_bytes()
    made = client.post("/api/v1/loras", files={"file": ("Action Hero John.safetensors", data)})
    assert made.status_code == 201, made.text
    return made.json()


def _scene(client, prompt: str, **extra):
    return client.post("/api/v1/generations", json={"prompt": prompt, "base": "tiny-sd15", "steps": 2} | extra)


def test_a_prompt_tag_never_opens_a_file(client, hero, studio_settings):
    blob_path = client.app.state.studio.store.path(_blob(client, hero["id"]))
    assert blob_path.is_file()
    messages = set()
    for name in (
        str(blob_path),
        "../../studio.db",
        str(studio_settings.home / "studio.db"),
        "/etc/passwd",
        "/no/such/file.safetensors",
    ):
        message = _error(_scene(client, f"johnhero <lora:{name}:0.8>"))
        assert "no LoRA called" in message
        messages.add(re.sub(r"'[^']*'", "NAME", re.sub(r"<lora:[^>]*>", "TAG", message)))
    assert len(messages) == 1, messages  # the same answer whether the file exists or not: no oracle for the disk
    assert client.get("/api/v1/jobs").json() == []  # refused at submit, not a failed job


def _blob(client, lora_id: int) -> str:
    from lorastudio.studio.db import LoraVersion

    with client.app.state.studio.factory() as session:
        return session.query(LoraVersion).filter_by(lora_id=lora_id).one().blob


def test_another_users_private_lora_is_not_found_by_tag(client, hero):
    from lorastudio.studio.db import Lora

    with client.app.state.studio.factory() as session:  # the LoRA becomes someone else's, not shared
        from lorastudio.studio.accounts import add_user

        other = add_user(session, name="alice", password="correct horse battery", starting_credits=0).id
        session.get(Lora, hero["id"]).owner_id = other
        session.commit()
    for tag in ("<lora:johnhero:0.8>", f"<lora:{hero['id']}:0.8>", "<lora:Action Hero John:0.8>"):
        assert "no LoRA called" in _error(_scene(client, f"johnhero {tag}"))


def test_a1111_tags_resolve_by_trigger_name_or_id_and_are_recorded_by_name(client, hero, studio_settings):
    tags = ("<lora:johnhero:0.8>", "<lora:Action Hero John:0.8>", f"<lora:{hero['id']}:0.8>", "<lora:JOHNHERO:0.8>")
    for tag in tags:
        made = _scene(client, f"johnhero fighting {tag}")
        assert made.status_code == 201, made.text
        request = made.json()["request"]
        assert [x["lora_id"] for x in request["loras"]] == [hero["id"]] and "<lora" not in request["prompt"]
        assert request["loras"][0]["strength"] == 0.8
    check = client.post("/studio/check", data={"prompt": "johnhero <lora:johnhero:0.8>", "base": "tiny-sd15"})
    assert "Action Hero John" in check.text and "no LoRA called" not in check.text  # the live check sees tags too
    assert "kanehero" in client.post("/studio/check", data={"prompt": "x <lora:kanehero:0.8>"}).text  # named there
    Worker(studio_settings, name="in-process").drain(limit=1)
    job = client.get("/api/v1/jobs", params={"status": "succeeded"}).json()[0]
    image = client.get(f"/api/v1/jobs/{job['id']}/images").json()[0]
    record = image["params"]["loras"][0]
    assert record["lora"] == "johnhero" and record["name"] == "johnhero" and record["lora_id"] == hero["id"]
    png = Image.open(io.BytesIO(client.get(image["url"]).content))
    assert "<lora:johnhero:0.8>" in png.text["parameters"]
    read = parse_a1111(png.text["parameters"])  # read as A1111's PNG Info reads it: prompt, then "Key: value" pairs
    assert "<lora:johnhero:0.8>" in read["prompt"] and read["Lora hashes"].startswith("johnhero: ")
    assert str(studio_settings.home) not in png.text["parameters"] + png.text["lorastudio"]
    download = client.get(f"/api/v1/loras/{hero['id']}/file")
    assert 'filename="johnhero.safetensors"' in download.headers["content-disposition"]  # A1111 finds the tag's file


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ("johnhero <lora:johnhero:nan>", "strength"),
        ("johnhero <lora:johnhero:1e308>", "strength"),
        ("johnhero <lora:johnhero:0.8> <lora:Action Hero John:0.5>", "selected twice"),
        ("<lora:johnhero:0.8>", "empty"),
        ("   ", "empty"),
    ],
)
def test_bad_tags_and_blank_prompts_are_refused_at_submit(client, hero, prompt, says):
    assert says in _error(_scene(client, prompt))


def test_the_same_lora_twice_in_a_selection_is_refused(client, hero):
    twice = [{"lora_id": hero["id"], "strength": 0.8}, {"lora_id": hero["id"], "strength": 0.5, "region": "left"}]
    assert "selected twice" in _error(_scene(client, "johnhero", loras=twice))


def test_a_base_model_is_a_listed_name_never_a_path(client, studio_settings, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    answers = set()
    for base in ("/etc", "/no/such/folder", str(tmp_path / "not-a-model"), "../models", "tiny-sd15/../../etc"):
        message = _error(_scene(client, "johnhero", base=base))
        assert "is not one of this studio's models" in message and "$LORASTUDIO_HOME/models" in message
        answers.add(re.sub(r"'[^']*'", "BASE", message, count=1))
    assert len(answers) == 1  # no oracle: an existing folder and a missing one read the same
    assert "download" in _error(_scene(client, "johnhero", base="hf:org/model"))
    assert _scene(client, "johnhero", base="tiny-sd15").status_code == 201
    dataset = client.post("/api/v1/datasets", json={"name": "d", "kind": "pose", "trigger": "posexyz"}).json()
    assert "not one of" in _error(client.get(f"/api/v1/datasets/{dataset['id']}", params={"base": "/etc"}))


def test_training_settings_are_bounded_finite_and_only_the_tunable_ones(client, john_refs):
    _, dataset_id = john_dataset(client, john_refs)

    def train(overrides: dict | str):
        body = (
            overrides if isinstance(overrides, str) else json.dumps({"dataset_id": dataset_id, "overrides": overrides})
        )
        return client.post("/api/v1/trainings", content=body, headers={"content-type": "application/json"})

    # Python's json reads Infinity and NaN: they must be refused as the numbers they are, not crash the server.
    for raw in ("Infinity", "-Infinity", "NaN", "1e308"):
        for field in ("steps", "network_alpha", "min_snr_gamma", "learning_rate", "noise_offset"):
            body = f'{{"dataset_id": {dataset_id}, "overrides": {{"{field}": {raw}}}}}'
            assert train(body).status_code == 422, (field, raw)
    assert "min_images" in _error(train({"min_images": 1_000_000_000}))
    assert "not one of" in _error(client.post("/api/v1/trainings", json={"dataset_id": dataset_id, "base": "/etc"}))
    assert train({"seed": -1, "steps": 4}).status_code == 201  # -1: a random seed, recorded


def test_numbers_in_paths_and_queries_are_plain_bounded_digits(client, hero):
    assert client.get(f"/api/v1/loras/{hero['id']}").status_code == 200
    for path in (f"/api/v1/loras/{hero['id']}_0", "/api/v1/loras/1_0", "/api/v1/loras/+1", "/api/v1/loras/%D9%A1"):
        _error(client.get(path))
    _error(client.get(f"/api/v1/loras/{hero['id']}/file", params={"version": "1180591620717411303424"}))
    _error(client.get(f"/api/v1/loras/{hero['id']}/file", params={"version": "1_0"}))
    _error(client.get("/api/v1/loras", params={"page": "1_0"}))


def test_one_trigger_rule_for_characters_and_datasets(client):
    for trigger in ("hero", "HERO", "fighter", "kungfustyle"):
        response = client.post("/api/v1/datasets", json={"name": "d", "kind": "character", "trigger": trigger})
        assert response.status_code in (409, 422), (trigger, response.text)
    character = client.post("/api/v1/characters", json={"name": "Action Hero John"}).json()
    own = client.post(
        "/api/v1/datasets",
        json={"name": "John", "kind": "character", "trigger": "johnhero", "character_id": character["id"]},
    )
    assert own.status_code == 201  # a character's own dataset takes its word
    _error(client.post("/api/v1/datasets", json={"name": "x", "kind": "pose", "trigger": "johnhero"}), 409)


def test_idempotency_keys_are_visible_ascii(client, john_refs):
    _, dataset_id = john_dataset(client, john_refs)
    body = {"dataset_id": dataset_id, "overrides": {"steps": 4}}
    for key in ("clé".encode(), b"a b", b"\x01x", "日本".encode()):
        refused = client.post("/api/v1/trainings", json=body, headers={"Idempotency-Key": key})
        assert "idempotency-key" in _error(refused)
    assert client.post("/api/v1/trainings", json=body, headers={"Idempotency-Key": "ok-1"}).status_code == 201


def test_a_characters_description_reaches_its_lora_and_the_library_can_edit_it(client, studio_settings, john_refs):
    character_id, dataset_id = john_dataset(client, john_refs)  # "Action Hero John", described as "red gi"
    job = client.post("/api/v1/trainings", json={"dataset_id": dataset_id, "overrides": {"steps": 2}}).json()
    assert job["request"]["plan"]["description"] == "red gi"
    Worker(studio_settings, name="in-process").drain()
    lora_id = client.get(f"/api/v1/jobs/{job['id']}").json()["result"]["lora_id"]
    assert client.get(f"/api/v1/loras/{lora_id}").json()["description"] == "red gi"
    client.patch(f"/api/v1/characters/{character_id}", json={"description": "red gi, white headband"})
    assert client.get(f"/api/v1/loras/{lora_id}").json()["description"] == "red gi, white headband"
    edited = client.patch(f"/api/v1/loras/{lora_id}", json={"description": "red gi, yellow hair, white headband"})
    assert edited.status_code == 200 and edited.json()["description"] == "red gi, yellow hair, white headband"
    body = {"prompt": "johnhero fights", "steps": 2, "loras": [{"lora_id": lora_id, "region": "left"}]}
    scene = client.post("/api/v1/generations", json=body).json()
    assert scene["request"]["loras"][0]["description"] == "red gi, yellow hair, white headband"  # what the passes read
    _error(client.patch(f"/api/v1/loras/{lora_id}", json={"description": "x" * 301}))


def test_reimporting_a_downloaded_lora_makes_no_second_entry(client, hero):
    data = client.get(f"/api/v1/loras/{hero['id']}/file").content
    again = client.post("/api/v1/loras", files={"file": ("johnhero.safetensors", data)})
    assert "already in your library" in _error(again, 409)
    assert client.get("/api/v1/loras", params={"q": "johnhero"}).json()["total"] == 1


def test_a_refused_reference_image_creates_no_character(client):
    form = {"name": "Villain Kane", "description": "black gi"}
    page = client.post("/characters", data=form, files={"reference": ("kane.png", b"not an image at all")})
    assert page.status_code == 422 and "Villain Kane" in page.text  # the form comes back as typed
    assert client.get("/api/v1/characters").json() == []
