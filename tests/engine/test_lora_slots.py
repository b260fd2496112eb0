"""A warm switch copies the incoming LoRA into an evicted adapter's layers (slots.py) when it fits them,
and the images are those of a fresh load; files that do not fit are loaded afresh."""

import numpy as np
import pytest
import torch

from lorastudio.engine.generation.generate import GenerateRequest, generate
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.lora.file import LoraFile, read_lora, save_lora


@pytest.fixture(scope="module")
def variants(trained, tmp_path_factory) -> dict[str, str]:
    """The character LoRA (UNet + text encoder, rank 4) and files derived from it."""
    folder = tmp_path_factory.mktemp("variants")
    source = read_lora(trained["tiny-sd15"])
    gen = torch.Generator().manual_seed(0)

    def write(name: str, tensors: dict[str, torch.Tensor]) -> str:
        path = folder / f"{name}.safetensors"
        save_lora(path, LoraFile(tensors, dict(source.metadata)))
        return str(path)

    def jitter(t: torch.Tensor) -> torch.Tensor:
        return (t.float() * (1 + 0.5 * torch.randn(t.shape, generator=gen))).to(t.dtype)

    same = {k: (jitter(v) if k.endswith("weight") else v) for k, v in source.tensors.items()}
    lower = {}  # rank 2, with alpha 1 so the scale per rank stays that of the original
    for stem in source.stems:
        lower[f"{stem}.lora_down.weight"] = same[f"{stem}.lora_down.weight"][:2].clone()
        lower[f"{stem}.lora_up.weight"] = same[f"{stem}.lora_up.weight"][:, :2].clone()
        lower[f"{stem}.alpha"] = torch.tensor(1.0)
    unet_only = {k: v for k, v in same.items() if k.startswith("lora_unet_")}
    higher = {}
    for stem in source.stems:
        down, up = same[f"{stem}.lora_down.weight"], same[f"{stem}.lora_up.weight"]
        higher[f"{stem}.lora_down.weight"] = torch.cat([down, down])
        higher[f"{stem}.lora_up.weight"] = torch.cat([up, up], dim=1) / 2
        higher[f"{stem}.alpha"] = torch.tensor(4.0)
    return {
        "original": str(trained["tiny-sd15"]),
        "same layout": write("same", same),
        "lower rank": write("lower", lower),
        "unet only": write("unet-only", unet_only),
        "higher rank": write("higher", higher),
    }


def image(cache: PipelineCache, lora: str) -> np.ndarray:
    req = GenerateRequest.build(
        prompt="johnhero, a person", base="tiny-sd15", steps=3, seed=11, loras=[{"lora": lora, "strength": 1.0}]
    )
    return np.asarray(generate(cache, req).images[0], dtype=np.int16)


def fresh(settings, lora: str) -> np.ndarray:
    return image(PipelineCache(settings), lora)


@pytest.mark.parametrize("variant", ["same layout", "lower rank", "unet only"])
def test_a_file_that_fits_is_swapped_in_and_draws_what_a_fresh_load_draws(settings, variants, variant):
    cache = PipelineCache(settings, max_loras=1)
    first = image(cache, variants["original"])
    swapped = image(cache, variants[variant])
    assert cache.swaps == 1 and len(cache.loras) == 1
    assert len(cache.base.pipe.get_list_adapters()["unet"]) == 1  # no second set of peft layers
    expected = fresh(settings, variants[variant])
    assert np.abs(swapped - expected).max() <= 1  # zero padding may change float summation order only
    assert np.abs(swapped - first).mean() > 0.5  # the new weights are in use
    back = image(cache, variants["original"])  # swapped back into the same layers
    assert np.abs(back - first).max() <= 1 and cache.swaps == 2


def test_a_file_with_a_higher_rank_is_loaded_afresh(settings, variants):
    cache = PipelineCache(settings, max_loras=1)
    image(cache, variants["lower rank"])
    got = image(cache, variants["higher rank"])
    assert cache.swaps == 0 and len(cache.base.pipe.get_list_adapters()["unet"]) == 1
    assert np.abs(got - fresh(settings, variants["higher rank"])).max() <= 1


def test_adapters_in_use_by_the_request_are_never_swapped_out(settings, variants):
    cache = PipelineCache(settings, max_loras=1)
    image(cache, variants["original"])
    both = GenerateRequest.build(
        prompt="johnhero",
        base="tiny-sd15",
        steps=2,
        seed=1,
        loras=[{"lora": variants["same layout"], "strength": 0.5}, {"lora": variants["lower rank"], "strength": 0.5}],
    )
    generate(cache, both)
    # the first of the two took the original's layers; the second could not take the first's
    assert cache.swaps == 1 and {x.name for x in cache.loras.values()} == {"same", "lower"}


def test_with_room_left_a_new_file_gets_its_own_adapter(settings, variants):
    cache = PipelineCache(settings, max_loras=4)
    image(cache, variants["original"])
    image(cache, variants["same layout"])
    assert cache.swaps == 0 and len(cache.loras) == 2
