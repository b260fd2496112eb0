"""The CLI through typer's in-process runner: real files, real tiny models, JSON on stdout."""

import json

import pytest
from typer.testing import CliRunner

from lorastudio.cli import app
from lorastudio.config import Settings
from lorastudio.engine.synthetic import write_reference_set


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("LORASTUDIO_HOME", str(settings.home))
    monkeypatch.setenv("LORASTUDIO_DEVICE", "cpu")
    runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result

    return invoke


def test_dataset_check_json_reports_every_image(run, tmp_path):
    write_reference_set(tmp_path, 5, size=128)
    (tmp_path / "bad.png").write_bytes(b"")
    result = run("dataset", "check", tmp_path, "--kind", "character", "--trigger", "johnhero",
                 "--resolution", "128", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == {"total": 6, "valid": 5, "skipped": 1, "warnings": 0}
    assert report["usable"] and report["notes"][0]["code"] == "few_images"


def test_train_then_inspect(run, figure_dir, tmp_path):
    out = tmp_path / "hero.safetensors"
    result = run("train", figure_dir, "--kind", "character", "--trigger", "johnhero", "--base", "tiny-sd15",
                 "--steps", "3", "--resolution", "64", "--dim", "4", "--out", out, "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["lora"] == str(out) and summary["steps"] == 3 and out.exists()
    info = json.loads(run("lora", "inspect", out, "--json").stdout)
    assert info["rank"] == 4 and info["trigger_words"] == ["johnhero"] and info["kind"] == "character"
    human = run("lora", "inspect", out, "--base", "tiny-sd15")
    assert human.exit_code == 0 and "johnhero" in human.stdout
    mismatch = run("lora", "inspect", out, "--base", "tiny-sdxl", "--json")
    assert mismatch.exit_code == 2
    assert json.loads(mismatch.stdout)["error"]["code"] == "family_mismatch"


def test_errors_are_one_line_with_what_to_do(run, tmp_path):
    result = run("train", tmp_path / "missing", "--kind", "character", "--trigger", "x")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = run("train", tmp_path, "--kind", "dance", "--trigger", "x", "--json")
    assert json.loads(result.stdout)["error"]["message"].startswith("unknown kind 'dance'")
    (tmp_path / "m.ckpt").write_bytes(b"x")
    result = run("lora", "inspect", tmp_path / "m.ckpt")
    assert result.exit_code == 2 and "pickle" in result.stderr and "Traceback" not in result.output


def test_models_and_presets_lists(run):
    models = json.loads(run("models", "list", "--json").stdout)
    assert {m["name"] for m in models} >= {"tiny-sd15", "tiny-sdxl"}
    assert all(m["ready"] for m in models if m["built_in"])
    presets = {p["name"]: p for p in json.loads(run("presets", "--json").stdout)}
    assert presets["character"]["network_dim"] == 64 and presets["fighting_style-hires"]["resolution"] == 1024
    assert "character" in run("presets").stdout


def test_every_setting_is_described_and_documented():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, name
        assert f"LORASTUDIO_{name.upper()}" in readme, f"LORASTUDIO_{name.upper()} missing from README"
