"""Regional LoRAs: region parsing, masks, per-pass prompts, and generation on the tiny models."""

import shutil

import numpy as np
import pytest
import torch

from lorastudio.engine.generation.generate import GenerateRequest, generate
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.generation.pngmeta import a1111_parameters, parse_a1111
from lorastudio.engine.generation.regions import (
    RegionPass,
    blend_latents,
    pass_prompt,
    plan_passes,
    region_masks,
)
from lorastudio.engine.generation.reproduce import request_from_params
from lorastudio.engine.lora.file import describe_lora, inspect_lora, read_lora
from lorastudio.engine.selection import parse_region
from lorastudio.errors import Invalid


@pytest.fixture(scope="module")
def cache(settings):
    return PipelineCache(settings)


@pytest.fixture(scope="module")
def described(trained, tmp_path_factory):
    """Two character LoRAs with their own trigger words and descriptions (copies of trained files, so
    different metadata makes them different files) per family."""
    folder = tmp_path_factory.mktemp("described")
    out = {}
    for family in ("tiny-sd15", "tiny-sdxl"):
        for name, words in [("hero", "a tall person"), ("rival", "a short person")]:
            path = shutil.copy(trained[family], folder / f"{family}-{name}.safetensors")
            describe_lora(path, words, trigger=name)
            out[family, name] = path
    return out


def req(**values) -> GenerateRequest:
    values.setdefault("base", "tiny-sd15")
    values.setdefault("steps", 4)
    values.setdefault("seed", 7)
    values.setdefault("prompt", "johnhero, a person")
    return GenerateRequest.build(**values)


def pixels(result, i=0) -> np.ndarray:
    return np.asarray(result.images[i], dtype=np.float32)


def test_parse_region_names_boxes_and_mistakes():
    assert parse_region(" Left ") == "left"
    assert parse_region("0,0,0.25,1") == "0,0,0.25,1"
    for bad in ("middle", "0,0,1", "0.5,0,0.2,1", "0,0,1.5,1"):
        with pytest.raises(Invalid, match="left, right"):
            parse_region(bad)
    with pytest.raises(Invalid, match="region"):
        req(loras=[{"lora": "x", "region": "upper"}])


def test_plan_passes_adds_whole_picture_loras_to_every_region():
    passes = plan_passes([("hero", 0.8, "left"), ("rival", 0.8, "right"), ("style", 0.6, None)])
    assert passes == [
        RegionPass("left", {"style": 0.6, "hero": 0.8}),
        RegionPass("right", {"style": 0.6, "rival": 0.8}),
        RegionPass(None, {"style": 0.6}),
    ]


def test_masks_split_the_picture_and_sum_to_one():
    passes, masks = region_masks(plan_passes([("a", 1, "left"), ("b", 1, "right")]), 8, 8)
    assert [p.region for p in passes] == ["left", "right"]  # nothing left uncovered: no third pass
    assert torch.allclose(masks.sum(0), torch.ones(1, 8, 8))
    assert masks[0, 0, :, :4].min() > 0.99 and masks[0, 0, :, 4:].max() < 0.01
    passes, masks = region_masks(plan_passes([("a", 1, "0,0,0.25,1")]), 8, 8)
    assert [p.region for p in passes] == ["0,0,0.25,1", None]
    assert masks[1, 0, :, 2:].min() > 0.99  # the rest of the picture belongs to the plain pass


def test_blend_latents_takes_each_region_from_its_own_copy():
    masks = region_masks(plan_passes([("a", 1, "left"), ("b", 1, "right")]), 2, 2)[1]
    copies = torch.stack([torch.zeros(4, 2, 2), torch.ones(4, 2, 2)])  # pass a's copy, pass b's copy
    mixed = blend_latents(copies, masks)
    assert torch.equal(mixed[0], mixed[1])
    assert mixed[0, :, :, 0].eq(0).all() and mixed[0, :, :, 1].eq(1).all()


def test_pass_prompt_names_other_characters_by_this_regions_description():
    confined = [(("johnhero",), "red fighter", "left"), (("kanehero",), "blue fighter", "right")]
    prompt = "johnhero facing kanehero, kungfustyle"
    assert pass_prompt(prompt, "left", confined) == "johnhero facing red fighter, kungfustyle"
    assert pass_prompt(prompt, "right", confined) == "blue fighter facing kanehero, kungfustyle"
    assert pass_prompt(prompt, None, confined) == "red fighter facing blue fighter, kungfustyle"
    undescribed = [(("johnhero",), "", "left"), (("kanehero",), "", "right")]
    assert pass_prompt(prompt, "left", undescribed) == prompt


def test_lora_on_the_left_changes_only_the_left(cache, trained):
    lora = str(trained["tiny-sd15"])
    plain = pixels(generate(cache, req()))
    full = pixels(generate(cache, req(loras=[{"lora": lora, "strength": 1}])))
    left = pixels(generate(cache, req(loras=[{"lora": lora, "strength": 1, "region": "left"}], region_blend=0)))
    w = plain.shape[1]
    # Each side is much closer to its own source than to the other. Not equal: the VAE decoder's
    # attention lets every latent pixel touch every image pixel a little.
    lhs, rhs = (slice(None), slice(0, w // 2 - 8)), (slice(None), slice(w // 2 + 8, w))
    assert np.abs(full - plain)[rhs].mean() > 2.0 and np.abs(full - plain)[lhs].mean() > 2.0
    assert np.abs(left - full)[lhs].mean() < np.abs(left - plain)[lhs].mean() / 2
    assert np.abs(left - plain)[rhs].mean() < np.abs(left - full)[rhs].mean() / 2


def test_region_full_is_the_whole_picture(cache, trained):
    lora = str(trained["tiny-sd15"])
    a = generate(cache, req(loras=[{"lora": lora, "strength": 0.8}]))
    b = generate(cache, req(loras=[{"lora": lora, "strength": 0.8, "region": "full"}]))
    assert np.array_equal(pixels(a), pixels(b))
    assert "region" not in b.params[0]["loras"][0]


def test_two_regions_on_sdxl_batch_and_reproduce(cache, described):
    # tiny-sdxl: pooled text embeddings and size ids are split per pass too
    loras = [
        {"lora": str(described["tiny-sdxl", "hero"]), "strength": 1, "region": "left"},
        {"lora": str(described["tiny-sdxl", "rival"]), "strength": 1, "region": "right"},
    ]
    result = generate(cache, req(base="tiny-sdxl", prompt="hero facing rival", n=2, loras=loras))
    assert len(result.images) == 2 and [x["region"] for x in result.params[1]["loras"]] == ["left", "right"]
    again, index = request_from_params(result.params[1])
    assert index == 1 and [c.region for c in again.loras] == ["left", "right"]
    assert np.array_equal(pixels(generate(cache, again), 1), pixels(result, 1))
    text = parse_a1111(a1111_parameters(result.params[0]))
    assert text["Lora regions"] == "tiny-sdxl-hero: left, tiny-sdxl-rival: right" and text["Region blend"] == "0.1"
    swapped = [{**loras[0], "region": "right"}, {**loras[1], "region": "left"}]
    other = generate(cache, req(base="tiny-sdxl", prompt="hero facing rival", n=2, loras=swapped))
    assert not np.array_equal(pixels(other), pixels(result))


def test_regions_cannot_be_fused(cache, trained):
    with pytest.raises(Invalid, match="cannot be fused"):
        generate(cache, req(fuse=True, loras=[{"lora": str(trained["tiny-sd15"]), "region": "left"}]))


def test_warnings_point_two_characters_to_regions(cache, described):
    both = [{"lora": str(described["tiny-sd15", n]), "strength": 0.7} for n in ("hero", "rival")]
    shared = generate(cache, req(prompt="hero facing rival", loras=both)).warnings
    assert any("bleeds" in w and " on the left and " in w and " on the right, " in w for w in shared)
    apart = [{**both[0], "region": "left"}, {**both[1], "region": "right"}]
    assert generate(cache, req(prompt="hero facing rival", loras=apart)).warnings == []
    strong = [{**both[0], "region": "left", "strength": 1.2}, {**both[1], "region": "right", "strength": 1.2}]
    budget = generate(cache, req(prompt="hero facing rival", loras=strong)).warnings
    assert not any("total LoRA strength" in w for w in budget)  # 1.2 per region, not 2.4 in one place


def test_describe_lora_and_the_missing_description_warning(cache, trained, tmp_path):
    path = shutil.copy(trained["tiny-sd15"], tmp_path / "plain.safetensors")
    loras = [{"lora": str(path), "strength": 0.8, "region": "left"}]
    warnings = generate(cache, req(prompt="johnhero, a person", loras=loras)).warnings
    assert any("no description" in w and "lora describe" in w for w in warnings)
    describe_lora(path, "a red fighter")
    assert inspect_lora(path)["description"] == "a red fighter"
    before, after = read_lora(trained["tiny-sd15"]).tensors, read_lora(path).tensors
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    warnings = generate(cache, req(prompt="johnhero, a person", loras=loras)).warnings
    assert not any("no description" in w for w in warnings)
    with pytest.raises(Invalid, match="300"):
        describe_lora(path, "x" * 301)


def test_out_of_memory_while_generating_says_what_to_lower_and_leaves_the_cache_usable(cache, described):
    from lorastudio.errors import OutOfMemory

    loras = [{"lora": str(described["tiny-sd15", "hero"]), "region": "left"}]
    before = pixels(generate(cache, req(prompt="hero", loras=loras)))

    def allocator_fails(*_):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes")

    hook = cache.base.pipe.unet.conv_in.register_forward_pre_hook(allocator_fails)
    try:
        says = "64x64 with 2 regions; lower the number of images or the size, or use fewer regions"
        with pytest.raises(OutOfMemory, match=says):
            generate(cache, req(prompt="hero", loras=loras))
    finally:
        hook.remove()
    assert "forward" not in cache.base.pipe.unet.__dict__  # the regional patch was undone
    assert np.array_equal(pixels(generate(cache, req(prompt="hero", loras=loras))), before)
