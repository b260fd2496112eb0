"""The engine as a worker drives it: progress and stopping in generation, one selection shape from the
option to the PNG record, the family and kind tables, results as the JSON the API will return."""

import json

import numpy as np
import pytest

from lorastudio.engine.generation.generate import GenerateRequest, generate, save_result
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.generation.pngmeta import read_png_parameters
from lorastudio.engine.generation.reproduce import request_from_params
from lorastudio.engine.kinds import KINDS, acts_as_character
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.lora.info import read_info
from lorastudio.engine.models.base import base_family, list_base_models
from lorastudio.engine.models.families import FAMILIES
from lorastudio.engine.prompts import parse_lora_tags
from lorastudio.engine.seeds import check_seed, pick_seed
from lorastudio.engine.selection import LoraSelection
from lorastudio.engine.training.presets import get_preset
from lorastudio.errors import Invalid


@pytest.fixture(scope="module")
def cache(settings):
    return PipelineCache(settings)


def test_generation_reports_every_step_with_previews_when_asked(cache):
    events = []
    req = GenerateRequest.build(prompt="johnhero", base="tiny-sd15", seed=3, steps=4)
    result = generate(cache, req, on_progress=events.append, preview_every=2)
    assert [(e.phase, e.step, e.total) for e in events] == [("generate", s, 4) for s in (1, 2, 3, 4)]
    previews = [e.step for e in events if e.preview_image is not None]
    assert previews == [2] and events[1].preview_image.size == result.images[0].size
    assert events[0].to_dict()["preview"] is None and not result.stopped


def test_generation_stops_between_steps(cache):
    events = []
    req = GenerateRequest.build(prompt="johnhero", base="tiny-sd15", seed=3, steps=6)
    result = generate(cache, req, on_progress=events.append, should_stop=lambda: len(events) >= 2)
    assert result.stopped and result.images == [] and [e.step for e in events] == [1, 2]
    again = generate(cache, req)  # the pipeline is usable afterwards, and gives the full picture
    assert len(again.images) == 1 and not again.stopped


def test_one_selection_shape_from_option_and_tag_to_the_png_record(cache, trained, tmp_path):
    lora = tmp_path / "hero.safetensors"
    lora.write_bytes(trained["tiny-sd15"].read_bytes())
    option = LoraSelection.parse(f"{lora}:0.7@left")
    _, tags = parse_lora_tags("johnhero <lora:hero:0.5>")
    assert option == LoraSelection(lora=str(lora), strength=0.7, region="left")
    assert tags == [LoraSelection(lora="hero", strength=0.5)]
    req = GenerateRequest.build(prompt="johnhero, a person", base="tiny-sd15", seed=2, steps=2, loras=[option])
    result = generate(cache, req)
    record = read_png_parameters(save_result(result, tmp_path / "out")[0])["loras"][0]
    assert LoraSelection(lora=record["lora"], strength=record["strength"], region=record["region"]) == option
    again, index = request_from_params(read_png_parameters(result.paths[0]))
    assert again.loras == [option] and index == 0
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["images"] == [str(result.paths[0])] and as_json["loras"][0]["region"] == "left"


def test_seeds_share_one_range():
    assert check_seed(2**64 - 1) == 2**64 - 1 and check_seed(-1) is None
    assert 0 <= pick_seed(-1) < 2**32 and pick_seed(5) == 5
    for bad in (2**64, -2, True):
        with pytest.raises(Invalid, match="2\\*\\*64"):
            check_seed(bad)
    with pytest.raises(Invalid, match="seed"):
        GenerateRequest.build(prompt="x", base="tiny-sd15", seed=2**70)


def test_presets_follow_the_base_family():
    assert get_preset("character", "character", "sd15").resolution == 768
    assert get_preset("character-hires", "character", "sd15").resolution == 1024
    assert get_preset("fighting_style", "fighting_style", "sdxl").resolution == 1024
    toy = get_preset("character", "character", "toyworld")
    assert (toy.resolution, toy.bucket_step, toy.steps, toy.network_dim, toy.target) == (32, 32, 600, 16, "attn-ff")
    assert get_preset("character", "character", None).resolution == 768  # unknown (hub id): the guide's


def test_family_and_kind_tables_are_complete(settings):
    rows = {r["name"]: r for r in list_base_models(settings)}
    assert set(rows) >= {"toyworld", "tiny-sd15", "tiny-sdxl"} and rows["toyworld"]["default"]
    for name, family in FAMILIES.items():
        assert family.name == name and family.label and family.ss_base_model_version and family.architecture
    assert base_family("toyworld", settings) == "toyworld" and base_family("hf:a/b", settings) is None
    assert [k for k in KINDS if KINDS[k].character] == ["character"]
    assert acts_as_character(None) and not acts_as_character("fighting_style")
    assert sum(k.recommended_strength for k in KINDS.values() if k.name != "visual_style") == pytest.approx(1.8)


def test_untrusted_metadata_is_parsed_leniently():
    info = read_info(
        {
            "lorastudio_trigger_words": '["johnhero", "two words", 5, "' + "x" * 100 + '"]',
            "lorastudio_recommended_strength": "nan",
            "lorastudio_kind": "character",
            "lorastudio_base_family": "sd99",
            "lorastudio_description": "red gi\x00\x07 " + "y" * 400,
            "ss_tag_frequency": '{"a": {"johnhero": "many"}}',
            "ss_max_train_steps": "1e400",
        }
    )
    assert info.trigger_words == ["johnhero"] and info.kind == "character"
    assert info.recommended_strength is None and info.family is None and info.tags == []
    assert info.description.startswith("red gi ") and len(info.description) == 300
    assert info.training.steps is None
    assert len(info.warnings) == 6  # three bad triggers, the strength, the family, the long description


def test_lora_info_round_trips_through_the_file(trained):
    info = read_lora(trained["tiny-sd15"]).info
    assert info.kind == "character" and info.trigger_words == ["johnhero"] and info.recommended_strength == 0.8
    assert info.family == "tiny-sd15" and info.rank == 4 and info.training.steps == 6 and info.warnings == []
    assert np.isfinite(info.training.seconds)
