"""Services without a worker: the guide's cost table, recipes, and an API whose every field is described."""

import pytest

from lorastudio.studio.credits import estimate, record_timing
from lorastudio.studio.db import make_engine, session_factory
from lorastudio.studio.library import suggest_trigger


@pytest.fixture
def session(client, studio_settings):
    with session_factory(make_engine(studio_settings))() as s:
        yield s


def _mid(pair):
    return sum(pair) / 2


RATE = 10 / 3


def _est(session, **work):
    values = (
        dict(
            kind="character",
            images=20,
            steps=1200,
            batch_size=1,
            resolution=768,
            family="sd15",
            credits_per_minute=RATE,
            dollars_per_gpu_hour=3.2,
            hires_dollars=0.5,
        )
        | work
    )
    return estimate(session, **values)


def test_the_reference_gpu_lands_in_the_guides_table(session):
    char = _est(session)  # the guide: 15-25 min, 50-75 credits, ~$1.00
    style = _est(session, kind="fighting_style", images=30, steps=1750, batch_size=2)  # 20-35 min, ~$1.50
    assert (
        15 <= _mid(char.minutes) <= 25 and 50 <= _mid(char.credits) <= 75 and char.dollars == pytest.approx(1, abs=0.2)
    )
    assert 20 <= _mid(style.minutes) <= 35 and style.dollars == pytest.approx(1.5, abs=0.3)
    assert "RTX 6000 Ada" in char.device and char.measured_minutes is None


def test_the_estimate_follows_the_work_not_the_image_count(session):
    base = _est(session)
    assert _est(session, images=200).minutes == base.minutes  # more pictures, same steps: same work
    assert _mid(_est(session, steps=2400).minutes) > 1.9 * _mid(base.minutes)
    assert _mid(_est(session, resolution=1024).minutes) > 1.6 * _mid(base.minutes)  # (1024/768)^2 of the pixels
    assert _mid(_est(session, batch_size=4).minutes) > 1.8 * _mid(base.minutes)
    assert _mid(_est(session, family="sdxl", resolution=1024).minutes) > 2 * _mid(base.minutes)


def test_measured_speeds_replace_the_reference_and_name_the_device(session):
    record_timing(session, device="cpu", family="sd15", resolution=768, batch_size=1, seconds_per_step=0.5)
    session.commit()
    learned = _est(session)
    assert learned.measured_minutes == pytest.approx(10.0) and learned.device == "cpu"
    assert not any("GPU" in line for line in learned.breakdown) and "measured here on cpu" in learned.breakdown[0]
    assert _est(session, resolution=384).measured_minutes == pytest.approx(2.5)  # scaled from 768 by pixels


def test_one_charge_rule_in_the_estimate_and_the_ledger(client, session):
    from lorastudio.studio.credits import charge_rule, cost_of

    e = _est(session)
    assert e.rule == charge_rule(RATE) and e.breakdown[-1] == e.rule and "per minute it runs" in e.rule
    assert cost_of(113, RATE) == 7  # the 113 s run of the issue: 1.88 min x 3.33 = 6.3 -> 7, not the old floor of 38
    assert e.credits == (cost_of(e.minutes[0] * 60, RATE), cost_of(e.minutes[1] * 60, RATE))


def test_trigger_suggestions():
    assert suggest_trigger("Action Hero John", set()) == "johnhero"
    assert suggest_trigger("Villain Kane", {"kanehero"}) == "kanehero2"
    assert suggest_trigger("Super", set()) not in ("superhero", "super")
    assert suggest_trigger("Capoeira", set(), "style") == "capoeirastyle"


def test_recipes_save_and_apply(client, trained):
    lora = client.post("/api/v1/loras", files={"file": ("hero.safetensors", trained["tiny-sd15"].read_bytes())}).json()
    body = {
        "name": "John, kung fu",
        "loras": [{"lora_id": lora["id"], "strength": 0.8, "region": "left"}],
        "prompt_template": "johnhero, kungfustyle, {action}",
        "seed": 42,
        "steps": 4,
        "base": "tiny-sd15",  # the LoRA's family: another base is refused at submit
    }
    recipe = client.post("/api/v1/recipes", json=body)
    assert recipe.status_code == 201, recipe.text
    assert client.post("/api/v1/recipes", json=body).status_code == 409
    unknown = client.post("/api/v1/recipes", json=body | {"name": "other", "base": "/etc/passwd"})
    assert unknown.status_code == 422 and "not one of this studio's models" in unknown.text
    job = client.post(f"/api/v1/recipes/{recipe.json()['id']}/apply", json={"action": "crane kick"}).json()
    assert job["request"]["prompt"].startswith("johnhero, kungfustyle") and "crane kick" in job["request"]["prompt"]
    assert job["request"]["seed"] == 42 and job["request"]["loras"][0]["region"] == "left"
    assert [r["name"] for r in client.get("/api/v1/recipes").json()] == ["John, kung fu"]


def test_every_api_field_and_route_is_described(client):
    spec = client.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
    skip = ("HTTPValidation", "ValidationError", "Body_")  # FastAPI's own
    ours = {n: s for n, s in spec["components"]["schemas"].items() if not n.startswith(skip)}
    assert len(ours) >= 15
    for name, schema in ours.items():
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"


def test_train_lora_from_a_character_or_a_style_prefills_the_dataset(client):
    john = client.post("/api/v1/characters", json={"name": "Action Hero John"}).json()
    dataset = client.post(f"/api/v1/characters/{john['id']}/dataset").json()
    assert (dataset["kind"], dataset["trigger"], dataset["character_id"]) == ("character", "johnhero", john["id"])
    style = client.post("/api/v1/styles", json={"name": "Capoeira", "phrases": ["ginga", "spinning kick"]}).json()
    assert style["trigger"] == "capoeirastyle" and not style["builtin"]
    prefilled = client.post(f"/api/v1/styles/{style['id']}/dataset").json()
    assert (prefilled["kind"], prefilled["trigger"], prefilled["style_id"]) == (
        "fighting_style",
        "capoeirastyle",
        style["id"],
    )
    builtin = client.get("/api/v1/styles").json()[0]
    assert client.delete(f"/api/v1/styles/{builtin['id']}").status_code == 409


def test_a_fresh_install_has_the_four_style_loras_and_uses_them_by_trigger(client):
    styles = {s["trigger"]: s for s in client.get("/api/v1/styles").json()}
    shipped = client.get("/api/v1/loras", params={"per_page": 100}).json()["items"]
    assert sorted((x["source"], x["family"], x["kind"], x["trigger_words"][0]) for x in shipped) == [
        ("prebuilt", "toyworld", "fighting_style", t) for t in ("boxingstyle", "kungfustyle", "mmastyle", "swordstyle")
    ]
    assert {x["style_id"]: x["id"] for x in shipped} == {s["id"]: s["lora_id"] for s in styles.values()}
    on_toyworld = client.post("/api/v1/generations", json={"prompt": "swordstyle, in a forest", "n": 1, "steps": 2})
    assert [x["lora_id"] for x in on_toyworld.json()["request"]["loras"]] == [styles["swordstyle"]["lora_id"]]
    assert on_toyworld.json()["request"]["prompt"] == "swordstyle, in a forest"
    # The shipped files are for the toy world only: on another base the trigger stands for its phrases.
    on_sd15 = client.post("/api/v1/generations", json={"prompt": "swordstyle, in a forest", "base": "tiny-sd15"})
    assert on_sd15.status_code == 201, on_sd15.text
    assert on_sd15.json()["request"]["loras"] == []
    assert on_sd15.json()["request"]["prompt"].startswith(", ".join(["swordstyle", *styles["swordstyle"]["phrases"]]))
