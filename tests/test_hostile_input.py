"""Bad input and faults, tried as a user would: every case ends in a clear error (one JSON document with
--json), never a traceback, and nothing half-written is left behind."""

import json
import os
import stat

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lorastudio.engine.fileio.tensorfile import read_safetensors, write_safetensors


def _error(result) -> dict:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    doc = json.loads(result.stdout)  # exactly one JSON document
    return doc["error"]


def _with_metadata(src, dst, **changes):
    tensors, meta = read_safetensors(src)
    write_safetensors(dst, tensors, meta | changes)
    return dst


def test_untrusted_lora_metadata_is_ignored_with_a_warning(run, trained, tmp_path):
    bad = _with_metadata(
        trained["tiny-sd15"],
        tmp_path / "bad.safetensors",
        lorastudio_trigger_words="{johnhero",
        lorastudio_recommended_strength="abc",
        lorastudio_kind="<script>",
    )
    info = run("lora", "inspect", bad, "--json")
    assert info.exit_code == 0, info.output
    doc = json.loads(info.stdout)
    assert doc["recommended_strength"] is None and doc["kind"] is None and doc["trigger_words"] == []
    assert len(doc["warnings"]) == 3
    made = run(
        "generate",
        "johnhero",
        "--lora",
        bad,
        "--base",
        "tiny-sd15",
        "--steps",
        "2",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert made.exit_code == 0, made.output
    result = json.loads(made.stdout)
    assert result["loras"][0]["strength"] == 1.0  # the unusable recommendation fell back to 1.0
    assert any("recommended strength" in w for w in result["warnings"])


def test_absurd_recommended_strength_never_renders(run, trained, tmp_path):
    huge = _with_metadata(trained["tiny-sd15"], tmp_path / "huge.safetensors", lorastudio_recommended_strength="1e30")
    made = run(
        "generate",
        "johnhero",
        "--lora",
        huge,
        "--base",
        "tiny-sd15",
        "--steps",
        "2",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert json.loads(made.stdout)["loras"][0]["strength"] == 1.0


@pytest.mark.parametrize("tag", ["<lora:x:nan>", "<lora:x:1.2.3>", "<lora:x:inf>", "<lora:x:99>"])
def test_prompt_tags_with_bad_weights_are_refused(run, trained, tmp_path, tag):
    (tmp_path / "x.safetensors").write_bytes(trained["tiny-sd15"].read_bytes())
    result = run("generate", f"johnhero {tag}", "--base", "tiny-sd15", "--steps", "2", "--out", tmp_path, "--json")
    assert "strength" in _error(result)["message"]


@pytest.mark.parametrize("option", ["x:nan", "x:1.2.3", "x:9"])
def test_lora_option_with_bad_strength_is_refused(run, option):
    result = run("generate", "johnhero", "--lora", option, "--base", "tiny-sd15", "--json")
    assert "strength" in _error(result)["message"]


def _png(path, record):
    info = PngInfo()
    info.add_text("lorastudio", record)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"prompt": "x", "seed": 1}), "lacks base"),
        (
            json.dumps(
                {
                    "prompt": "x",
                    "base": "tiny-sd15",
                    "seed": 1,
                    "steps": 2,
                    "cfg_scale": 7,
                    "width": 64,
                    "height": 64,
                    "sampler": "Euler",
                    "batch_index": 7,
                    "batch_size": 2,
                }
            ),
            "image 7 of a batch of 2",
        ),
        (
            json.dumps(
                {
                    "prompt": ["x"],
                    "base": "tiny-sd15",
                    "seed": "a",
                    "steps": 2,
                    "cfg_scale": 7,
                    "width": 64,
                    "height": 64,
                    "sampler": "Euler",
                }
            ),
            "generation settings",
        ),
        (
            json.dumps(
                {
                    "prompt": "x",
                    "base": "tiny-sd15",
                    "seed": 1,
                    "steps": 2,
                    "cfg_scale": 7,
                    "width": 64,
                    "height": 64,
                    "sampler": "Euler",
                    "loras": "all",
                }
            ),
            "garbled",
        ),
    ],
)
def test_crafted_png_records_are_refused(run, tmp_path, record, says):
    result = run("generate", "--from-png", _png(tmp_path / "crafted.png", record), "--json")
    assert says in _error(result)["message"]


def test_output_paths_are_checked_before_any_work(run, trained, figure_dir, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "dir.safetensors"
    a_dir.mkdir()
    lora = trained["tiny-sd15"]
    assert "is a file" in _error(run("generate", "x", "--base", "tiny-sd15", "--out", a_file, "--json"))["message"]
    train = ("train", figure_dir, "--kind", "character", "--trigger", "johnhero", "--base", "tiny-sd15")
    assert "is a folder" in _error(run(*train, "--out", a_dir, "--json"))["message"]
    assert "is a file" in _error(run(*train, "--run-dir", a_file, "--json"))["message"]
    assert "not writable" in _error(run("lora", "convert", lora, "--out", "/proc/x.safetensors", "--json"))["message"]
    assert "is a folder" in _error(run("lora", "convert", lora, "--out", a_dir, "--json"))["message"]
    grid = ("grid", "x", "--lora", lora, "--base", "tiny-sd15", "--steps", "1")
    assert "is a folder" in _error(run(*grid, "--out", tmp_path, "--json"))["message"]
    long_trigger = _error(run("train", figure_dir, "--kind", "character", "--trigger", "j" * 10_000, "--json"))
    assert "at most 64" in long_trigger["message"]


def test_one_seed_range_everywhere(run, figure_dir, trained, tmp_path):
    huge = str(2**70)
    train = ("train", figure_dir, "--kind", "character", "--trigger", "johnhero", "--base", "tiny-sd15")
    assert "seed" in _error(run(*train, "--seed", huge, "--json"))["message"]
    grid = (
        "grid",
        "x",
        "--lora",
        trained["tiny-sd15"],
        "--base",
        "tiny-sd15",
        "--steps",
        "1",
        "--out",
        tmp_path / "g.png",
    )
    assert "2**64" in _error(run(*grid, "--seeds", huge, "--json"))["message"]
    assert "strength" in _error(run(*grid, "--strengths", "nan", "--json"))["message"]
    assert "seed" in _error(run("generate", "x", "--base", "tiny-sd15", "--seed", huge, "--json"))["message"]
    picked = run(
        *train,
        "--seed",
        "-1",
        "--steps",
        "1",
        "--resolution",
        "64",
        "--dim",
        "2",
        "--out",
        tmp_path / "s.safetensors",
        "--run-dir",
        tmp_path / "run",
        "--json",
    )
    assert picked.exit_code == 0, picked.output
    seed = json.loads(picked.stdout)["seed"]
    assert 0 <= seed < 2**64
    assert read_safetensors(tmp_path / "s.safetensors")[1]["ss_seed"] == str(seed)


def test_resume_from_a_damaged_checkpoint_names_it_and_the_one_before(run, figure_dir, tmp_path):
    args = (
        "train",
        figure_dir,
        "--kind",
        "character",
        "--trigger",
        "johnhero",
        "--base",
        "tiny-sd15",
        "--steps",
        "4",
        "--resolution",
        "64",
        "--dim",
        "2",
        "--checkpoint-every",
        "1",
        "--out",
        tmp_path / "r.safetensors",
        "--run-dir",
        tmp_path / "run",
    )
    assert run(*args, "--json").exit_code == 0
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert len(checkpoints) == 3
    checkpoints[-1].write_bytes(checkpoints[-1].read_bytes()[:100])  # a crash or disk error cut it short
    message = _error(run(*args, "--resume", "--json"))["message"]
    assert checkpoints[-1].name in message and checkpoints[-2].name in message and "damaged" in message


def test_dataset_check_refuses_impossible_resolutions(run, figure_dir):
    for bad in ("-5", "0", "100000"):
        message = _error(run("dataset", "check", figure_dir, "--resolution", bad, "--json"))["message"]
        assert "resolution" in message


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "x", "--width", "abc", "--json"),
        ("train", "--json"),
        ("grid", "--json", "--nonsense"),
        ("lora", "inspect", "--json"),
    ],
)
def test_json_promises_one_document_even_for_usage_errors(args):
    from typer.testing import CliRunner

    from lorastudio.cli import app

    result = CliRunner().invoke(app, list(args))
    error = _error(result)
    assert error["code"] == "usage" and error["message"]


def test_bad_settings_are_a_clear_error(run, monkeypatch):
    monkeypatch.setenv("LORASTUDIO_DEVICE", "gpu")
    message = _error(run("models", "list", "--json"))["message"]
    assert "device" in message and "LORASTUDIO_" in message


def test_written_files_follow_the_umask(run, trained, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "copy.safetensors"
        assert run("lora", "convert", trained["tiny-sd15"], "--out", out).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_readme_flow_trains_the_toyworld_references_as_written(run, tmp_path):
    """`toyworld references johnhero --out refs/`, then `train refs/ --kind character --trigger johnhero`:
    the preset follows the default base (toyworld, 32 px and its recipe), so the 32x32 renders train."""
    refs = tmp_path / "refs"
    assert run("toyworld", "references", "johnhero", "--out", refs).exit_code == 0
    checked = json.loads(run("dataset", "check", refs, "--kind", "character", "--trigger", "johnhero", "--json").stdout)
    assert checked["usable"] and checked["counts"]["skipped"] == 0 and checked["resolution"] == 32
    # The README's command, with --steps cut so the test stays fast (the toy recipe's 600 take ~2 minutes).
    result = run(
        "train",
        refs,
        "--kind",
        "character",
        "--trigger",
        "johnhero",
        "--steps",
        "2",
        "--out",
        tmp_path / "johnhero.safetensors",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["resolution"] == 32 and summary["images_used"] == 20 and summary["family"] == "toyworld"
    meta = read_safetensors(tmp_path / "johnhero.safetensors")[1]
    assert meta["ss_network_dim"] == "16" and meta["lorastudio_target"] == "attn-ff"  # the toy recipe
