"""Hostile and mistaken requests: clear JSON errors with the right status, nothing lost, no 500s."""

import io
import zipfile

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.studio.conftest import upload_refs


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] and body["message"]
    return body


def _zip(entries: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16  # a symbolic link
            z.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.fixture
def dataset_id(client):
    return client.post("/api/v1/datasets", json={"name": "d", "kind": "character", "trigger": "johnhero"}).json()["id"]


def test_malformed_and_mistyped_bodies_are_422(client):
    _error(client.post("/api/v1/characters", content=b"{not json", headers={"content-type": "application/json"}), 422)
    _error(client.post("/api/v1/characters", json={"name": 5}), 422)
    _error(client.post("/api/v1/characters", json={"name": "x", "extra": 1}), 422)
    _error(client.post("/api/v1/characters", json={"name": "x" * 10_000}), 422)
    _error(client.post("/api/v1/generations", json={"prompt": "x", "seed": 2**70}), 422)
    _error(client.post("/api/v1/generations", json={"prompt": "x", "loras": [{"lora_id": 1, "strength": "nan"}]}), 422)
    _error(client.post("/api/v1/trainings", json={"dataset_id": "one"}), 422)
    _error(client.get("/api/v1/loras", params={"sort": "hacked"}), 422)
    _error(client.get("/api/v1/loras", params={"per_page": 10_000}), 422)


def test_library_search_takes_any_text_as_plain_text(client, trained):
    def total(q: str) -> int:
        response = client.get("/api/v1/loras", params={"q": q})
        assert response.status_code == 200, response.text
        return response.json()["total"]

    assert total("KUNG") == total("ungfusty") == total("kungfustyle") == 1  # substrings, any case
    # Search syntax (FTS5 operators, LIKE wildcards, quotes, NUL) is text to find, never a query.
    for q in ['x"y', "100%", "_", "a_b", "\x00zzz", "NEAR(a b)", "*", "kung OR sword", "' --"]:
        assert total(q) == 0, q
    assert total("ku") == 1 and total("  ") == total("\x00") == 4  # short: a scan; blank: everything
    imported = client.post("/api/v1/loras", files={"file": ("zz.safetensors", trained["tiny-sd15"].read_bytes())})
    name = imported.json()["name"]
    assert total(name) >= 1
    client.delete(f"/api/v1/loras/{imported.json()['id']}")
    assert total(name) == 0


def test_unknown_ids_are_404(client):
    paths = ["/api/v1/characters/999", "/api/v1/loras/999", "/api/v1/datasets/999", "/api/v1/jobs/999"]
    paths += ["/api/v1/images/999", "/api/v1/styles/999", "/api/v1/loras/999/file", "/api/v1/jobs/999/events"]
    for path in paths:
        assert _error(client.get(path), 404)["code"] == "not_found"
    _error(client.post("/api/v1/trainings", json={"dataset_id": 999}), 404)
    _error(client.post("/api/v1/generations", json={"prompt": "x", "loras": [{"lora_id": 999}]}), 404)


def test_trigger_words_are_suggested_unique_and_never_common(client):
    john = client.post("/api/v1/characters", json={"name": "Action Hero John"}).json()
    again = client.post("/api/v1/characters", json={"name": "Action Hero John"}).json()
    assert (john["trigger"], again["trigger"]) == ("johnhero", "johnhero2")
    assert client.post("/api/v1/characters", json={"name": "Kane"}).json()["trigger"] == "kanehero"
    assert client.post("/api/v1/characters", json={"name": "Super"}).json()["trigger"] != "superhero"
    _error(client.post("/api/v1/characters", json={"name": "x", "trigger": "johnhero"}), 409)
    _error(client.post("/api/v1/characters", json={"name": "x", "trigger": "kungfustyle"}), 409)
    _error(client.post("/api/v1/characters", json={"name": "x", "trigger": "hero"}), 422)
    _error(client.post("/api/v1/characters", json={"name": "x", "trigger": "two words"}), 422)


def test_hostile_file_names_are_cleaned_and_kept_as_text(client, dataset_id, john_refs):
    png = (john_refs / "johnhero_00.png").read_bytes()
    names = ["../../etc/passwd.png", "a\x00b.png", "x" * 300 + ".png", "<script>alert(1)</script>.png"]
    result = client.post(f"/api/v1/datasets/{dataset_id}/images", files=[("files", (n, png)) for n in names]).json()
    stored = [i["filename"] for i in result["images"]]
    assert all("/" not in n and "\x00" not in n and len(n) <= 120 and "<" not in n for n in stored)
    assert stored[0] == "passwd.png"
    assert [i["status"] for i in result["images"]].count("skipped") == 3  # three exact duplicates of the first


def test_evil_zips_are_refused_and_nothing_is_lost(client, dataset_id, john_refs, studio_settings):
    assert upload_refs(client, dataset_id, john_refs).json()["usable"] == 20
    png = (john_refs / "johnhero_01.png").read_bytes()
    evil = {
        "traversal": _zip({"../../escape.png": png}),
        "absolute": _zip({"/etc/cron.d/x.png": png}),
        "link": _zip({"ok.png": png}, link="link.png"),
        "bomb": _zip({"big.png": b"\x00" * (studio_settings.max_zip_mb * 2**20 + 1)}),
        "not a zip": b"PK\x03\x04garbage",
    }
    for label, data in evil.items():
        response = client.post(f"/api/v1/datasets/{dataset_id}/images", files=[("files", ("evil.zip", data))])
        assert response.status_code in (413, 422), (label, response.text)
    many = _zip({f"{i}.png": png for i in range(studio_settings.max_upload_files + 1)})
    _error(client.post(f"/api/v1/datasets/{dataset_id}/images", files=[("files", ("many.zip", many))]), 413)
    after = client.get(f"/api/v1/datasets/{dataset_id}").json()
    assert after["usable"] == 20 and len(after["images"]) == 20
    good = _zip({"folder/extra.png": png, "folder/extra.txt": b"johnhero, kicking", "__MACOSX/._x.png": b"junk"})
    added = client.post(f"/api/v1/datasets/{dataset_id}/images", files=[("files", ("refs.zip", good))]).json()
    extra = [i for i in added["images"] if i["filename"] == "extra.png"]
    assert len(added["images"]) == 21 and extra[0]["caption"] == "johnhero, kicking"


def test_oversize_uploads_are_413(client, dataset_id, studio_settings):
    big = b"\x89PNG" + b"\x00" * (studio_settings.max_upload_mb * 2**20)
    _error(client.post(f"/api/v1/datasets/{dataset_id}/images", files=[("files", ("big.png", big))]), 413)


def test_imported_loras_get_the_engines_refusals(client, trained, tmp_path):
    ok = client.post("/api/v1/loras", files={"file": ("hero.safetensors", trained["tiny-sd15"].read_bytes())})
    assert ok.status_code == 201 and ok.json()["family"] == "tiny-sd15" and ok.json()["source"] == "imported"
    assert "pickle" in _error(client.post("/api/v1/loras", files={"file": ("m.ckpt", b"\x80\x04")}), 422)["message"]
    _error(client.post("/api/v1/loras", files={"file": ("bad.safetensors", b"\x10" + b"\x00" * 20)}), 422)
    download = client.get(f"/api/v1/loras/{ok.json()['id']}/file")
    assert download.content == trained["tiny-sd15"].read_bytes()


def test_delete_keeps_files_a_job_in_flight_uses(client, trained):
    lora = client.post("/api/v1/loras", files={"file": ("hero.safetensors", trained["tiny-sd15"].read_bytes())}).json()
    job = client.post(
        "/api/v1/generations", json={"prompt": "johnhero", "base": "tiny-sd15", "loras": [{"lora_id": lora["id"]}]}
    ).json()
    from lorastudio.studio.db import make_engine, session_factory
    from lorastudio.studio.library import record_usage

    factory = session_factory(make_engine(client.app.state.studio.settings))
    with factory() as session:
        record_usage(session, job_id=job["id"], lora_ids=[lora["id"]])
        session.commit()
    answer = client.delete(f"/api/v1/loras/{lora['id']}").json()
    assert answer["files_kept"] and "kept until" in answer["message"]
    assert client.get(f"/api/v1/loras/{lora['id']}").status_code == 404
    assert client.app.state.studio.store.exists(job["request"]["loras"][0]["lora"])


def test_no_route_answers_500(client):
    """Hypothesis over the OpenAPI schema (schemathesis' strategies), every operation."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:

        @given(operation.as_strategy())
        @settings(
            max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def call(case):
            response = case.call()
            assert response.status_code < 500, (
                f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
            )

        call()
