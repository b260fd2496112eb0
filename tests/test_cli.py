"""The CLI through typer's in-process runner: real files, real tiny models, JSON on stdout."""

import json

from lorastudio.config import Settings
from lorastudio.engine.data.synthetic import write_reference_set


def test_dataset_check_json_reports_every_image(run, tmp_path):
    write_reference_set(tmp_path, 5, size=128)
    (tmp_path / "bad.png").write_bytes(b"")
    result = run(
        "dataset", "check", tmp_path, "--kind", "character", "--trigger", "johnhero", "--resolution", "128", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == {"total": 6, "valid": 5, "skipped": 1, "warnings": 0}
    assert report["usable"] and report["notes"][0]["code"] == "few_images"


def test_train_then_inspect(run, figure_dir, tmp_path):
    out = tmp_path / "hero.safetensors"
    result = run(
        "train",
        figure_dir,
        "--kind",
        "character",
        "--trigger",
        "johnhero",
        "--base",
        "tiny-sd15",
        "--steps",
        "3",
        "--resolution",
        "64",
        "--dim",
        "4",
        "--out",
        out,
        "--description",
        "red gi",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["lora"] == str(out) and summary["steps"] == 3 and out.exists()
    info = json.loads(run("lora", "inspect", out, "--json").stdout)
    assert info["rank"] == 4 and info["trigger_words"] == ["johnhero"] and info["kind"] == "character"
    assert info["description"] == "red gi" and info["metadata"]["modelspec.description"] == "red gi"
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


def test_an_engine_error_names_the_flag_to_change(run, figure_dir, tmp_path):
    # The engine names the setting (precision); the CLI words it as its flag, on stderr and in the JSON error.
    args = (
        "train",
        figure_dir,
        "--kind",
        "character",
        "--trigger",
        "johnhero",
        "--base",
        "tiny-sd15",
        "--precision",
        "fp16",
        "--device",
        "cpu",
        "--out",
        tmp_path / "x.safetensors",
    )
    said = run(*args)
    assert said.exit_code == 2 and "fp16 training needs a GPU; on CPU use --precision no" in said.stderr
    error = json.loads(run(*args, "--json").stdout)["error"]
    assert error["setting"] == "--precision" and "on CPU use --precision no" in error["message"]
    assert "setting" not in json.loads(run("train", tmp_path, "--kind", "dance", "--trigger", "x", "--json").stdout)


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


def test_generate_then_reproduce_from_png(run, trained, tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "out"
    lora = f"{trained['tiny-sd15']}:0.7"
    result = run(
        "generate",
        "johnhero, fighting stance",
        "--lora",
        lora,
        "--base",
        "tiny-sd15",
        "--seed",
        "5",
        "--n",
        "2",
        "--steps",
        "3",
        "--sampler",
        "DDIM",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["seeds"] == [5, 6] and len(made["images"]) == 2 and made["warnings"] == []
    again = run("generate", "--from-png", made["images"][1], "--out", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.output
    copy = json.loads(again.stdout)["images"]
    assert len(copy) == 1
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in (made["images"][1], copy[0]))
    assert np.array_equal(a, b)


def test_generate_warns_about_a_missing_trigger_word(run, trained, tmp_path):
    result = run(
        "generate",
        "a fighter",
        "--lora",
        trained["tiny-sd15"],
        "--base",
        "tiny-sd15",
        "--steps",
        "2",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "'johnhero' is not in the prompt" in result.stderr and "00001-" in result.stdout


def test_grid_and_diagnose(run, trained, tmp_path):
    grid = tmp_path / "grid.png"
    result = run(
        "grid",
        "johnhero",
        "--lora",
        trained["tiny-sd15"],
        "--strengths",
        "0.5,1",
        "--seeds",
        "1,2",
        "--base",
        "tiny-sd15",
        "--steps",
        "2",
        "--out",
        grid,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == ["no LoRA", "strength 0.5", "strength 1"] and grid.exists()
    result = run(
        "diagnose", "johnhero", "--lora", f"{trained['tiny-sd15']}:1.0", "--base", "tiny-sd15", "--steps", "2", "--json"
    )
    effects = json.loads(result.stdout)["effects"]
    assert effects[0]["mean_abs_diff"] > 0 and effects[0]["verdict"]
    bad = run("grid", "johnhero", "--lora", trained["tiny-sd15"], "--strengths", "a,b", "--base", "tiny-sd15")
    assert bad.exit_code == 2 and "comma-separated" in bad.stderr


def test_generate_errors(run, tmp_path):
    result = run("generate", "--json")
    assert json.loads(result.stdout)["error"]["message"].startswith("give a prompt")
    result = run("generate", "x", "--sampler", "warp", "--base", "tiny-sd15")
    assert result.exit_code == 2 and "unknown sampler" in result.stderr
    png = tmp_path / "plain.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(png)
    result = run("generate", "--from-png", png)
    assert result.exit_code == 2 and "carries no generation parameters" in result.stderr


def test_toyworld_references_and_check(run, tmp_path):
    result = run("toyworld", "references", "johnhero", "--out", tmp_path / "refs", "--n", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 3 and (tmp_path / "refs" / "johnhero_00.txt").exists()
    checked = json.loads(
        run("toyworld", "check", tmp_path / "refs" / "johnhero_00.png", "--character", "johnhero", "--json").stdout
    )
    assert checked["found_at"] and checked["fighters"][0]["body"] in (
        "red",
        "blue",
        "green",
        "yellow",
        "magenta",
        "cyan",
        "orange",
    )
    assert run("toyworld", "check", tmp_path / "refs" / "johnhero_00.png", "--character", "nobody").exit_code == 2
    styles = run("toyworld", "references", "sword", "--out", tmp_path / "sword", "--n", "2", "--json")
    assert json.loads(styles.stdout)["images"] == 2
    assert "swordstyle" in (tmp_path / "sword" / "sword_00.txt").read_text()


def test_toyworld_is_the_default_base_and_says_so(run, tmp_path):
    result = run(
        "generate",
        "green fighter with magenta head, boxingstyle, jab, in a dojo",
        "--seed",
        "1",
        "--steps",
        "4",
        "--out",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert "toyworld" in result.stderr and "not Stable Diffusion" in result.stderr
    models = {m["name"]: m for m in json.loads(run("models", "list", "--json").stdout)}
    assert models["toyworld"]["default"] and models["toyworld"]["ready"]


def test_regional_loras_from_the_command_line(run, trained, tmp_path):
    from lorastudio.engine.selection import LoraSelection

    assert LoraSelection.parse("a/b@c.safetensors:0.8@left") == LoraSelection(
        lora="a/b@c.safetensors", strength=0.8, region="left"
    )
    assert LoraSelection.parse("hero@right") == LoraSelection(lora="hero", region="right")
    lora = tmp_path / "hero.safetensors"
    lora.write_bytes(trained["tiny-sd15"].read_bytes())
    described = run("lora", "describe", lora, "tall, red gi", "--trigger", "hero", "--json")
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout) == {"file": str(lora), "description": "tall, red gi", "trigger_words": ["hero"]}
    result = run(
        "generate",
        "hero facing a person",
        "--lora",
        f"{lora}:0.8@left",
        "--base",
        "tiny-sd15",
        "--steps",
        "2",
        "--region-blend",
        "0.2",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["loras"][0]["region"] == "left" and made["warnings"] == []
    bad = run("generate", "hero", "--lora", f"{lora}@upper", "--base", "tiny-sd15", "--json")
    assert bad.exit_code == 2 and "region 'upper'" in json.loads(bad.stdout)["error"]["message"]
    nothing = run("lora", "describe", lora)
    assert nothing.exit_code == 2 and "give a description" in nothing.stderr


def test_train_profile_prints_the_time_of_each_phase(run, figure_dir, tmp_path):
    result = run(
        "train",
        figure_dir,
        "--kind",
        "character",
        "--trigger",
        "johnhero",
        "--base",
        "tiny-sd15",
        "--steps",
        "2",
        "--resolution",
        "64",
        "--dim",
        "4",
        "--out",
        tmp_path / "p.safetensors",
        "--profile",
    )
    assert result.exit_code == 0, result.output
    assert "time per phase:" in result.stdout and "forward" in result.stdout and "backward" in result.stdout
