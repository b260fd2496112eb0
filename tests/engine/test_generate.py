"""Generation on the tiny models with real trained LoRAs: seeds, strengths, stacking, PNG parameters."""

import shutil

import numpy as np
import pytest
from PIL import Image

from lorastudio.engine.generation.generate import GenerateRequest, generate, save_result
from lorastudio.engine.generation.grid import diagnose, strength_grid
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.generation.pngmeta import parse_a1111, read_png_parameters
from lorastudio.engine.generation.reproduce import request_from_params
from lorastudio.engine.generation.samplers import SAMPLERS, canonical_sampler
from lorastudio.engine.lora.file import read_lora, save_lora
from lorastudio.errors import FamilyMismatch, Invalid, NotFound


@pytest.fixture(scope="module")
def cache(settings):
    return PipelineCache(settings)


def req(**values) -> GenerateRequest:
    values.setdefault("base", "tiny-sd15")
    values.setdefault("steps", 4)
    values.setdefault("seed", 7)
    return GenerateRequest.build(**values)


def pixels(result, i=0) -> np.ndarray:
    return np.asarray(result.images[i], dtype=np.int16)


def test_same_seed_same_pixels_other_seed_other_pixels(cache):
    a = generate(cache, req(prompt="johnhero, a person"))
    b = generate(cache, req(prompt="johnhero, a person"))
    c = generate(cache, req(prompt="johnhero, a person", seed=8))
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_lora_changes_output_and_strength_zero_is_the_plain_model(cache, trained):
    plain = generate(cache, req(prompt="johnhero, a person"))
    strong = generate(
        cache, req(prompt="johnhero, a person", loras=[{"lora": str(trained["tiny-sd15"]), "strength": 1}])
    )
    zero = generate(cache, req(prompt="johnhero, a person", loras=[{"lora": str(trained["tiny-sd15"]), "strength": 0}]))
    assert np.abs(pixels(strong) - pixels(plain)).mean() > 1.0
    assert np.array_equal(pixels(zero), pixels(plain))
    assert cache.base_loads == 1  # switching LoRA sets never reloaded the base model


def test_stacking_order_does_not_matter(cache, trained):
    a = {"lora": str(trained["tiny-sd15"]), "strength": 0.8}
    b = {"lora": str(trained["style-sd15"]), "strength": 0.6}
    one = generate(cache, req(prompt="johnhero, kungfustyle, fight", loras=[a, b]))
    two = generate(cache, req(prompt="johnhero, kungfustyle, fight", loras=[b, a]))
    assert np.array_equal(pixels(one), pixels(two))
    assert one.warnings == [] and [x["name"] for x in one.params[0]["loras"]] == ["tiny-sd15", "style-sd15"]


def test_a_lora_of_another_family_is_refused_naming_both(cache, trained):
    with pytest.raises(FamilyMismatch) as exc:
        generate(cache, req(prompt="johnhero", loras=[{"lora": str(trained["tiny-sdxl"])}]))
    assert "SDXL-shaped" in str(exc.value) and "SD1.5-shaped" in str(exc.value)


def test_sdxl_generation_with_its_lora(settings, trained):
    cache = PipelineCache(settings)
    plain = generate(cache, req(prompt="johnhero", base="tiny-sdxl"))
    lora = generate(cache, req(prompt="johnhero", base="tiny-sdxl", loras=[{"lora": str(trained["tiny-sdxl"])}]))
    assert plain.images[0].size == (64, 64) and np.abs(pixels(lora) - pixels(plain)).mean() > 1.0
    assert lora.params[0]["loras"][0]["strength"] == 0.8  # the character's recommended strength


def test_fused_batches_match_unfused_and_leave_the_base_untouched(cache, trained):
    hero = [{"lora": str(trained["tiny-sd15"]), "strength": 0.8}]
    # Make the adapter resident first: peft's wrapped layers compute the plain model in another order,
    # so the no-LoRA picture is compared in the same pipeline state before and after the fused call.
    generate(cache, req(prompt="johnhero", loras=[hero[0] | {"strength": 0}]))
    plain = pixels(generate(cache, req(prompt="johnhero")))
    fused = generate(cache, req(prompt="johnhero", loras=hero, n=2))  # auto-fused: a batch in fp32
    unfused = generate(cache, req(prompt="johnhero", loras=hero, n=2, fuse=False))
    assert np.abs(pixels(fused, 1) - pixels(unfused, 1)).max() <= 1
    assert np.array_equal(pixels(generate(cache, req(prompt="johnhero"))), plain)


def test_a_fused_set_stays_fused_until_another_set_is_asked_for(settings, trained):
    cache = PipelineCache(settings)
    hero = {"lora": str(trained["tiny-sd15"]), "strength": 0.8}
    style = {"lora": str(trained["style-sd15"]), "strength": 0.6}
    generate(cache, req(prompt="johnhero", loras=[hero | {"strength": 0}, style | {"strength": 0}]))
    plain = pixels(generate(cache, req(prompt="johnhero")))
    unfused = pixels(generate(cache, req(prompt="johnhero", loras=[hero, style], fuse=False)))
    assert cache.fused_set is None
    first = pixels(generate(cache, req(prompt="johnhero", loras=[hero, style])))  # fp32: fused by default
    fused_once = cache.fused_set
    again = pixels(generate(cache, req(prompt="johnhero", loras=[style, hero])))  # the same set, other order
    assert fused_once is not None and cache.fused_set is fused_once  # not folded in a second time
    assert np.abs(first - unfused).max() <= 1 and np.array_equal(first, again)
    weaker = pixels(generate(cache, req(prompt="johnhero", loras=[hero | {"strength": 0.4}, style])))
    assert cache.fused_set != fused_once and np.abs(weaker - first).mean() > 0.1
    assert np.array_equal(pixels(generate(cache, req(prompt="johnhero"))), plain)  # weights restored exactly
    assert cache.fused_set is None


def test_batches_use_consecutive_seeds_and_match_single_calls_closely(cache):
    batch = generate(cache, req(prompt="johnhero", n=3, seed=100))
    assert [p["seed"] for p in batch.params] == [100, 101, 102]
    single = generate(cache, req(prompt="johnhero", seed=101))
    # Same picture; batched maths may differ from a single image's in the last bits (as in A1111).
    assert np.abs(pixels(batch, 1) - pixels(single)).max() <= 3


def test_png_parameters_round_trip_and_reproduce_the_image(cache, trained, tmp_path):
    tag_dir = cache.settings.loras_dir
    tag_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(trained["style-sd15"], tag_dir / "kungfu.safetensors")
    first = generate(
        cache,
        req(
            prompt="johnhero fights <lora:kungfu:0.6>, kungfustyle",
            negative_prompt="blurry",
            loras=[{"lora": str(trained["tiny-sd15"]), "strength": 0.7}],
            n=2,
            sampler="euler a",
        ),
    )
    paths = save_result(first, tmp_path)
    assert [p.name for p in paths] == ["00001-7.png", "00002-8.png"]
    params = read_png_parameters(paths[1])
    assert params["source"] == "lorastudio" and params["seed"] == 8 and params["sampler"] == "Euler a"
    with Image.open(paths[1]) as img:
        a1111 = parse_a1111(img.text["parameters"])
        saved = np.asarray(img.convert("RGB"), dtype=np.int16)
    assert a1111["Steps"] == "4" and a1111["Seed"] == "8" and a1111["Sampler"] == "Euler a"
    assert a1111["negative_prompt"] == "blurry" and a1111["Size"] == "64x64" and a1111["CFG scale"] == "7.0"
    assert "<lora:tiny-sd15:0.7>" in a1111["prompt"] and "<lora:kungfu:0.6>" in a1111["prompt"]
    assert a1111["Lora hashes"].startswith("tiny-sd15: ") and len(a1111["Model hash"]) == 10
    request, index = request_from_params(params)
    assert (request.seed, request.n, index) == (7, 2, 1)
    again = generate(cache, request)
    assert np.array_equal(pixels(again, index), saved)


def test_trigger_word_warnings_and_auto_insertion(cache, trained):
    hero = {"lora": str(trained["tiny-sd15"])}
    missing = generate(cache, req(prompt="a person kicking", loras=[hero]))
    assert any("'johnhero' is not in the prompt" in w for w in missing.warnings)
    fixed = generate(cache, req(prompt="a person kicking", loras=[hero], add_triggers=True))
    assert fixed.params[0]["prompt"] == "johnhero, a person kicking" and fixed.warnings == []


def test_strength_warnings_follow_the_guide(cache, trained, tmp_path):
    villain = read_lora(trained["tiny-sd15"])  # a second character: same metadata, other weights
    villain.tensors = {k: v * 0.9 if k.endswith("up.weight") else v for k, v in villain.tensors.items()}
    other = save_lora(tmp_path / "villain.safetensors", villain)
    result = generate(
        cache,
        req(
            prompt="johnhero, kungfustyle",
            loras=[{"lora": str(trained["tiny-sd15"]), "strength": 1.0}, {"lora": str(other), "strength": 0.7}],
        ),
    )
    assert any("guide suggests 0.6-0.8 each" in w and "tiny-sd15" in w for w in result.warnings)
    hero, style = str(trained["tiny-sd15"]), str(trained["style-sd15"])
    over = generate(
        cache,
        req(prompt="johnhero, kungfustyle", loras=[{"lora": hero, "strength": 1.2}, {"lora": style, "strength": 1.0}]),
    )
    assert any("total LoRA strength 2.20 is above 1.8" in w for w in over.warnings)


def test_the_same_lora_twice_is_refused(cache, trained, tmp_path):
    twin = shutil.copy(trained["tiny-sd15"], tmp_path / "twin.safetensors")
    with pytest.raises(Invalid, match="selected twice"):
        generate(cache, req(prompt="johnhero", loras=[{"lora": str(trained["tiny-sd15"])}, {"lora": str(twin)}]))


def test_unknown_names_and_bad_settings_are_refused(cache):
    with pytest.raises(NotFound, match="not found"):
        generate(cache, req(prompt="x <lora:nobody:0.5>"))
    with pytest.raises(Invalid, match="unknown sampler"):
        req(prompt="x", sampler="warp drive")
    with pytest.raises(Invalid, match="multiple of 8"):
        req(prompt="x", width=100)
    with pytest.raises(Invalid, match="steps"):
        req(prompt="x", steps=0)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_and_aliases_resolve(cache, sampler):
    result = generate(cache, req(prompt="johnhero", sampler=sampler, steps=3))
    assert result.params[0]["sampler"] == sampler
    assert canonical_sampler(sampler.lower().replace(" ", "_").replace("+", "p")) == sampler


def test_variation_seed_moves_a_little(cache):
    base = pixels(generate(cache, req(prompt="johnhero")))
    near = pixels(generate(cache, req(prompt="johnhero", variation_seed=99, variation_strength=0.1)))
    far = pixels(generate(cache, req(prompt="johnhero", seed=99)))
    assert 0 < np.abs(near - base).mean() < np.abs(far - base).mean()


def test_strength_grid_has_the_no_lora_baseline_row(cache, trained):
    request = req(prompt="johnhero, a person", loras=[{"lora": str(trained["tiny-sd15"])}])
    grid = strength_grid(cache, request, [0.5, 1.0], [7, 8])
    assert grid.rows == ["no LoRA", "strength 0.5", "strength 1"] and grid.seeds == [7, 8]
    plain = generate(cache, req(prompt="johnhero, a person")).images[0]
    cell = plain.resize((192, 192), Image.Resampling.NEAREST)  # 64px cells are shown 3x
    corner = grid.image.crop((150, 28, 150 + 192, 28 + 192))
    assert np.array_equal(np.asarray(corner), np.asarray(cell))


def test_diagnose_measures_each_lora_against_the_plain_image(cache, trained):
    hero, style = str(trained["tiny-sd15"]), str(trained["style-sd15"])
    request = req(
        prompt="johnhero, kungfustyle", loras=[{"lora": hero, "strength": 1.0}, {"lora": style, "strength": 0.0}]
    )
    effects, _ = diagnose(cache, request)
    by_name = {e.lora: e for e in effects}
    assert by_name["tiny-sd15"].mean_abs_diff > 1.0
    assert by_name["style-sd15"].mean_abs_diff == 0.0 and by_name["style-sd15"].verdict.startswith("no visible")


def test_lru_keeps_at_most_max_loras_resident(settings, trained):
    cache = PipelineCache(settings, max_loras=1)
    generate(cache, req(prompt="johnhero", loras=[{"lora": str(trained["tiny-sd15"])}]))
    generate(cache, req(prompt="kungfustyle", loras=[{"lora": str(trained["style-sd15"])}]))
    assert [x.name for x in cache.loras.values()] == ["style-sd15"]
    assert len(cache.base.pipe.get_list_adapters()["unet"]) == 1
