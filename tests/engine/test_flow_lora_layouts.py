"""The transformer families' LoRA layouts against diffusers' own loaders, on tiny transformers built here.

For each family a peft LoRA with random (nonzero) weights is injected into a tiny transformer, exported in
the family's standard kohya layout, and loaded by diffusers' own `load_lora_weights` of the family's
pipeline: every key must be consumed (nothing left over, nothing missing: the wrapped layers are exactly
ours) and the loaded adapter must give the same output as the injected one. Files laid out as ai-toolkit,
sd-scripts/musubi-tuner and diffusers write them (key schemes read from their writers) are read back into
the same kohya tensors and fit; a LoRA of one family is refused on another, naming both.
"""

from __future__ import annotations

import json
import logging
import re
import warnings

import pytest
import torch
from diffusers import (
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    FluxPipeline,
    FluxTransformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from peft import LoraConfig, inject_adapter_in_model
from safetensors.torch import load_file, save_file

from lorastudio.engine.lora.convert import lora_state
from lorastudio.engine.lora.file import LoraFile, infer_family, read_lora
from lorastudio.engine.lora.fit import check_fits, module_table
from lorastudio.engine.lora.layouts import diffusers_tensors, export_tensors, stem_groups, to_diffusers_state
from lorastudio.engine.models.base import LoadedBase
from lorastudio.engine.models.families import get_family, target_patterns
from lorastudio.errors import FamilyMismatch

RANK, ALPHA = 4, 8.0  # scale 2, so a lost or doubled alpha shows


def tiny_flux1(seed: int, heads: int = 2, head_dim: int = 8, double: int = 1) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        num_layers=double,
        num_single_layers=1,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        in_channels=64,
        axes_dims_rope=(2, 2, head_dim - 4),
    )


def tiny_flux2(seed: int) -> Flux2Transformer2DModel:
    torch.manual_seed(seed)
    return Flux2Transformer2DModel(
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        in_channels=16,
        axes_dims_rope=(2, 2, 2, 2),
        timestep_guidance_channels=16,
    )


def tiny_qwen(seed: int) -> QwenImageTransformer2DModel:
    torch.manual_seed(seed)
    return QwenImageTransformer2DModel(
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        in_channels=16,
        out_channels=4,
        axes_dims_rope=(2, 2, 4),
    )


def tiny_zimage(seed: int) -> ZImageTransformer2DModel:
    torch.manual_seed(seed)
    return ZImageTransformer2DModel(
        dim=16,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=32,
        in_channels=4,
        axes_dims=[2, 2, 4],
        axes_lens=[64, 32, 32],
    )


def pipeline_of(family: str, transformer):
    none = dict(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer)
    if family == "tiny-flux1":
        return FluxPipeline(**none, text_encoder_2=None, tokenizer_2=None)
    return {"tiny-flux2-klein": Flux2KleinPipeline, "tiny-qwen-image": QwenImagePipeline}.get(family, ZImagePipeline)(
        **none
    )


BUILDERS = {
    "tiny-flux1": tiny_flux1,
    "tiny-flux2-klein": tiny_flux2,
    "tiny-qwen-image": tiny_qwen,
    "tiny-z-image": tiny_zimage,
}


def make_base(family: str, seed: int = 0, transformer=None) -> LoadedBase:
    transformer = transformer if transformer is not None else BUILDERS[family](seed)
    return LoadedBase(name=family, family=family, source="inline", pipe=pipeline_of(family, transformer))


def targets(base: LoadedBase, target: str = "all") -> list[str]:
    patterns = [re.compile(p) for p in target_patterns(get_family(base.family), target)]
    return [
        name
        for name, mod in base.pipe.transformer.named_modules()
        if isinstance(mod, torch.nn.Linear) and any(p.search(name) for p in patterns)
    ]


def inject(base: LoadedBase, paths: list[str], seed: int = 1) -> None:
    """A trained-looking adapter: peft's gaussian A, and a random B in place of the zeros it starts with."""
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=paths, init_lora_weights="gaussian")
    inject_adapter_in_model(config, base.pipe.transformer)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in base.pipe.transformer.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def inputs(family: str) -> dict:
    gen = torch.Generator().manual_seed(7)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen)

    t = torch.tensor([0.5])
    if family == "tiny-flux1":
        return dict(
            hidden_states=rnd(1, 4, 64),
            encoder_hidden_states=rnd(1, 3, 32),
            pooled_projections=rnd(1, 16),
            timestep=t,
            img_ids=torch.zeros(4, 3),
            txt_ids=torch.zeros(3, 3),
        )
    if family == "tiny-flux2-klein":
        return dict(
            hidden_states=rnd(1, 4, 16),
            encoder_hidden_states=rnd(1, 3, 32),
            timestep=t,
            img_ids=torch.zeros(4, 4),
            txt_ids=torch.zeros(3, 4),
            guidance=torch.tensor([4.0]),
        )
    if family == "tiny-qwen-image":
        return dict(
            hidden_states=rnd(1, 4, 16),
            encoder_hidden_states=rnd(1, 3, 32),
            encoder_hidden_states_mask=torch.ones(1, 3),
            timestep=t,
            img_shapes=[(1, 2, 2)],
        )
    return dict(x=[rnd(4, 1, 4, 4)], t=t, cap_feats=[rnd(3, 32)])


@torch.no_grad()
def output(base: LoadedBase) -> torch.Tensor:
    out = base.pipe.transformer(**inputs(base.family), return_dict=False)[0]
    return torch.stack(out) if isinstance(out, list) else out


def wrapped(module: torch.nn.Module) -> set[str]:
    return {name for name, m in module.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)}


def diffusers_load(
    family: str, state: dict[str, torch.Tensor], seed: int = 0, transformer=None, base: LoadedBase | None = None
) -> LoadedBase:
    """A fresh base of the family (or `base`) with diffusers' own loader applied to `state`, failing on any
    warning about unexpected or missing keys (diffusers and peft log and warn them)."""
    base = base or make_base(family, seed, transformer)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    loggers = [logging.getLogger(n) for n in ("diffusers", "peft")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base.pipe.load_lora_weights(dict(state), adapter_name="x")
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    said = [r.getMessage() for r in records if r.levelno >= logging.WARNING] + [str(w.message) for w in caught]
    bad = [s for s in said if re.search(r"unexpected|missing|unsupported|incompatible|not (be )?loaded", s, re.I)]
    assert not bad, bad
    return base


FAMILIES = list(BUILDERS)


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_file_loads_in_the_familys_own_diffusers_pipeline(family):
    base = make_base(family)
    paths = targets(base)
    inject(base, paths)
    mine = output(base)
    tensors = export_tensors(base, torch.float32)
    lora = LoraFile(tensors)
    assert all(s.startswith("lora_unet_") for s in lora.stems)
    check_fits(lora, base)
    # the file as our generation loads it (peft keys), and as the pipeline's own kohya loader reads it
    states = {"ours": to_diffusers_state(lora, base)}
    if family != "tiny-flux1":  # FLUX.1's single blocks: diffusers' loader hardcodes 3072 wide rows (below)
        states["kohya"] = tensors
    for how, state in states.items():
        loaded = diffusers_load(family, state)
        assert wrapped(loaded.pipe.transformer) == set(paths), how
        torch.testing.assert_close(output(loaded), mine, rtol=1e-5, atol=1e-5, msg=how)
        assert (output(loaded) - output(make_base(family))).abs().max() > 1e-3  # the LoRA shows


def test_flux1_kohya_file_loads_in_diffusers_kohya_loader_double_blocks():
    base = make_base("tiny-flux1")
    paths = [p for p in targets(base) if not p.startswith("single_")]
    inject(base, paths)
    tensors = export_tensors(base, torch.float32)
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in tensors
    assert tensors["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].shape[0] == 3 * RANK
    assert float(tensors["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 3 * ALPHA
    loaded = diffusers_load("tiny-flux1", tensors)
    assert wrapped(loaded.pipe.transformer) == set(paths)
    torch.testing.assert_close(output(loaded), output(base), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_flux1_single_block_at_real_width_loads_in_diffusers_kohya_loader():
    """diffusers splits linear1 into FLUX.1's real widths (3072 x 3 + 12288), so this runs one block at them."""
    transformer = tiny_flux1(0, heads=24, head_dim=128, double=0)
    base = make_base("tiny-flux1", transformer=transformer)
    paths = [p for p in targets(base) if p.startswith("single_")]
    inject(base, paths)
    tensors = export_tensors(base, torch.float32)
    assert tensors["lora_unet_single_blocks_0_linear1.lora_up.weight"].shape == (3 * 3072 + 12288, 4 * RANK)
    mine = output(base)
    del base
    fresh = tiny_flux1(0, heads=24, head_dim=128, double=0)
    loaded = diffusers_load("tiny-flux1", tensors, transformer=fresh)
    assert wrapped(loaded.pipe.transformer) == set(paths)
    torch.testing.assert_close(output(loaded), mine, rtol=1e-5, atol=1e-5)


def peft_keys(base: LoadedBase, prefix: str, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The injected adapter as `<prefix><path>.lora_A/B.weight`, the alpha/rank scale folded into B."""
    state = lora_state(base.pipe.transformer)
    return {prefix + k: (v * scale if ".lora_B." in k else v).contiguous() for k, v in state.items()}


# sd-scripts' flattened BFL names -> BFL's module paths
_BFL = {
    "img_attn_qkv": "img_attn.qkv",
    "img_attn_proj": "img_attn.proj",
    "txt_attn_qkv": "txt_attn.qkv",
    "txt_attn_proj": "txt_attn.proj",
    "img_mlp_0": "img_mlp.0",
    "img_mlp_2": "img_mlp.2",
    "txt_mlp_0": "txt_mlp.0",
    "txt_mlp_2": "txt_mlp.2",
    "linear1": "linear1",
    "linear2": "linear2",
}


def ai_toolkit_flux2(base: LoadedBase) -> dict[str, torch.Tensor]:
    """ai-toolkit's FLUX.2 file: peft keys of BFL's model (`diffusion_model.double_blocks.0.img_attn.qkv`, one
    layer for q/k/v) as its convert_lora_weights_before_save writes them; no alphas (the scale is in A)."""
    out = {}
    for key, tensor in export_tensors(base, torch.float32).items():
        stem, _, part = key.partition(".")
        if part == "alpha":
            continue
        kind, block, name = re.fullmatch(r"lora_unet_(double|single)_blocks_(\d+)_(.+)", stem).groups()
        path = f"diffusion_model.{kind}_blocks.{block}.{_BFL[name]}"
        if part == "lora_down.weight":
            out[f"{path}.lora_A.weight"] = tensor * (ALPHA / RANK)
        else:
            out[f"{path}.lora_B.weight"] = tensor
    return out


def comfy_z_image(kohya: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """musubi-tuner's convert_z_image_lora_to_comfy.py: q/k/v fused as attention_qkv (alpha x3), to_out_0 as out."""
    out = {
        k.replace("attention_to_out_0", "attention_out"): v
        for k, v in kohya.items()
        if "_to_q" not in k and "_to_k" not in k and "_to_v" not in k
    }
    pre = "lora_unet_layers_0_attention_"
    downs = [kohya[f"{pre}to_{x}.lora_down.weight"] for x in "qkv"]
    ups = [kohya[f"{pre}to_{x}.lora_up.weight"] for x in "qkv"]
    out[f"{pre}qkv.lora_down.weight"] = torch.cat(downs)
    out[f"{pre}qkv.lora_up.weight"] = torch.block_diag(*ups)
    out[f"{pre}qkv.alpha"] = kohya[f"{pre}to_q.alpha"] * 3
    return out


def writers(family: str, base: LoadedBase) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]]:
    """Files of this family as each trainer lays them out: (tensors, metadata)."""
    scale = ALPHA / RANK
    config = json.dumps({"transformer.r": RANK, "transformer.lora_alpha": ALPHA})  # save_lora_weights' metadata
    files = {
        "kohya": (export_tensors(base, torch.float32), {}),  # sd-scripts (FLUX.1), musubi-tuner (the rest)
        "diffusers": (peft_keys(base, "transformer."), {"lora_adapter_metadata": config}),
    }
    if family == "tiny-flux1":  # ai-toolkit: diffusers' names under transformer., scale in the weights
        files["ai-toolkit"] = (peft_keys(base, "transformer.", scale), {})
    elif family == "tiny-flux2-klein":
        files["ai-toolkit"] = (ai_toolkit_flux2(base), {})
    else:
        files["ai-toolkit"] = (peft_keys(base, "diffusion_model.", scale), {})
    if family == "tiny-z-image":
        files["comfy"] = (comfy_z_image(export_tensors(base, torch.float32)), {})
    return files


@pytest.mark.parametrize("family", FAMILIES)
def test_other_trainers_files_read_fit_and_give_the_same_delta(family, tmp_path):
    base = make_base(family)
    paths = targets(base)
    inject(base, paths)
    mine = output(base)
    for writer, (tensors, metadata) in writers(family, base).items():
        path = tmp_path / f"{writer}.safetensors"
        save_file(tensors, path, metadata)
        lora = read_lora(path)
        assert all(s.startswith("lora_unet_") for s in lora.stems), writer
        assert set(lora.stems) <= set(module_table(base)), writer
        check_fits(lora, base)
        assert lora.info.family == get_family(family).tiny_of, writer
        loaded = diffusers_load(family, to_diffusers_state(lora, base))
        assert wrapped(loaded.pipe.transformer) == set(paths), writer
        torch.testing.assert_close(output(loaded), mine, rtol=1e-5, atol=1e-5, msg=writer)


def test_a_flux1_lora_on_a_qwen_image_base_is_refused_naming_both():
    flux = make_base("tiny-flux1")
    inject(flux, targets(flux))
    lora = LoraFile(export_tensors(flux, torch.float32))
    with pytest.raises(FamilyMismatch, match=r"trained for FLUX\.1, but the base model is tiny Qwen-Image"):
        check_fits(lora, make_base("tiny-qwen-image"))
    with pytest.raises(FamilyMismatch, match="FLUX.1"):  # same family names, other widths: the shapes decide
        check_fits(lora, make_base("tiny-flux1", transformer=tiny_flux1(0, heads=4)))


def test_a_stem_of_a_fused_layer_expects_the_sum_of_its_rows():
    base = make_base("tiny-flux1")
    table = module_table(base)
    assert table["lora_unet_single_blocks_0_linear1"].shape == (16 * 3 + 64, 16)
    assert table["lora_unet_single_blocks_0_linear1"].parts == 4
    groups = stem_groups(base)
    assert [p for _, p in groups["lora_unet_double_blocks_0_txt_attn_qkv"]] == [
        f"transformer_blocks.0.attn.add_{x}_proj" for x in "qkv"
    ]


def test_attention_only_flux1_lora_leaves_the_single_blocks_mlp_at_zero():
    """--target attn trains the single blocks' q/k/v but not proj_mlp, which linear1 also holds: the file gives
    that part zero weights, and loading it wraps exactly the trained layers."""
    base = make_base("tiny-flux1")
    paths = targets(base, "attn")
    inject(base, paths)
    tensors = export_tensors(base, torch.float32)
    up = tensors["lora_unet_single_blocks_0_linear1.lora_up.weight"]
    assert up.shape == (112, 4 * RANK) and not up[48:].any()
    loaded = diffusers_load("tiny-flux1", to_diffusers_state(LoraFile(tensors), base))
    assert wrapped(loaded.pipe.transformer) == set(paths)
    torch.testing.assert_close(output(loaded), output(base), rtol=1e-5, atol=1e-5)


def test_diffusers_layout_option_writes_peft_keys_that_load_as_they_are():
    base = make_base("tiny-qwen-image")
    inject(base, targets(base))
    state = diffusers_tensors(LoraFile(export_tensors(base, torch.float32)), base)
    assert all(k.startswith("transformer.") and ".lora_" in k for k in state)
    loaded = diffusers_load("tiny-qwen-image", state)
    torch.testing.assert_close(output(loaded), output(base), rtol=1e-5, atol=1e-5)


def test_fused_parts_at_different_ranks_and_scales_keep_each_parts_delta():
    from lorastudio.engine.lora.layouts.fused import fuse, split_fused

    gen = torch.Generator().manual_seed(3)
    parts = [
        (torch.randn(r, 8, generator=gen), torch.randn(n, r, generator=gen), s)
        for r, n, s in [(2, 8, 0.5), (4, 8, 2.0), (2, 32, 1.0)]
    ]
    down, up, alpha = fuse([*parts[:2], None, parts[2]], [8, 8, 8, 32])
    delta = up @ down * (alpha / down.shape[0])
    want = torch.cat([b @ a * s for a, b, s in parts[:2]] + [torch.zeros(8, 8), parts[2][1] @ parts[2][0]])
    torch.testing.assert_close(delta, want)
    split = split_fused(down, up, alpha, [8, 8, 8, 32])
    torch.testing.assert_close(torch.cat([b @ a * (al / a.shape[0]) for a, b, al in split]), want)


@pytest.mark.parametrize(
    ("stem", "rows", "family"),
    [
        ("lora_unet_single_blocks_0_linear1", 7 * 16, "flux1"),
        ("lora_unet_single_blocks_0_linear1", 9 * 16, "flux2-klein"),
        ("lora_unet_transformer_blocks_0_attn_to_q", 16, "qwen-image"),
        ("lora_unet_layers_0_attention_to_q", 16, "z-image"),
    ],
)
def test_family_is_named_from_the_layouts_keys(stem, rows, family):
    tensors = {f"{stem}.lora_down.weight": torch.zeros(4, 16), f"{stem}.lora_up.weight": torch.zeros(rows, 4)}
    assert infer_family(tensors) == family
    assert infer_family({}, {"modelspec.architecture": "Qwen-Image/lora"}) == "qwen-image"


def deltas(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each wrapped layer's LoRA delta (B @ A x scale, peft's own sum over its adapters), by path."""
    out = {}
    for i, module in enumerate(modules):
        for name, m in module.named_modules():
            if hasattr(m, "lora_A") and len(m.lora_A):
                out[f"{i}.{name}"] = sum(m.get_delta_weight(a) for a in m.lora_A)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_the_tiny_family_models_round_trip_through_diffusers_loaders(family):
    """The families' own tiny pipelines (engine/models/tiny_flow.py), FLUX.1's CLIP-L with a LoRA too
    (sd-scripts' lora_te1_): every layer diffusers wraps carries the delta we trained, none more."""
    from lorastudio.engine.lora.keys import text_encoder_targets
    from lorastudio.engine.models.tiny_flow import FLOW_BUILDERS

    def fresh():
        return LoadedBase(name=family, family=family, source="inline", pipe=FLOW_BUILDERS[family](0))

    base = fresh()
    inject(base, targets(base))
    parts = [base.denoiser]
    if family == "tiny-flux1":
        clip = base.text_encoders[0]
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=text_encoder_targets(clip, "attn"))
        inject_adapter_in_model(config, clip)
        with torch.no_grad():
            for name, p in clip.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.3)
        parts.append(clip)
    lora = LoraFile(export_tensors(base, torch.float32))
    assert (family == "tiny-flux1") == any(s.startswith("lora_te1_") for s in lora.stems)
    check_fits(lora, base)
    want = deltas(*parts)
    states = {"ours": to_diffusers_state(lora, base)}
    if family != "tiny-flux1":
        states["kohya"] = dict(lora.tensors)
    for how, state in states.items():
        loaded = diffusers_load(family, state, base=fresh())
        got = deltas(loaded.denoiser, *([loaded.text_encoders[0]] if len(parts) > 1 else []))
        assert set(got) == set(want), how
        for name, delta in want.items():
            torch.testing.assert_close(got[name], delta, rtol=1e-5, atol=1e-6, msg=f"{how} {name}")


@pytest.mark.parametrize(
    ("family", "module"),
    [
        ("tiny-flux1", "networks.lora_flux"),
        ("tiny-flux2-klein", "networks.lora_flux_2"),
        ("tiny-qwen-image", "networks.lora_qwen_image"),
        ("tiny-z-image", "networks.lora_zimage"),
    ],
)
def test_export_lora_writes_the_familys_layout_and_names_it(family, module, tmp_path):
    import time
    from types import SimpleNamespace

    from lorastudio.engine.lora.file import save_lora
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.metadata import export_lora

    base = make_base(family)
    inject(base, targets(base))
    row = get_family(family)
    files = {}
    for fmt in ("kohya", "diffusers"):
        cfg = TrainConfig(
            kind="character",
            preset="custom",
            images=tmp_path,
            trigger="johnhero",
            base=family,
            output=tmp_path / f"{fmt}.safetensors",
            run_dir=tmp_path / "run",
            steps=10,
            learning_rate=1e-4,
            network_dim=RANK,
            network_alpha=ALPHA,
            resolution=64,
            batch_size=1,
            lora_format=fmt,
            save_precision="fp32",
            target="all",
        )
        report = SimpleNamespace(valid=[])
        lora = export_lora(base, cfg, base.denoiser, [], report, [], time.time(), 1.0, loss_history=[], per_epoch=1)
        meta = lora.metadata
        assert meta["modelspec.architecture"] == f"{row.architecture}/lora"
        assert meta["modelspec.implementation"] == row.implementation
        assert meta["ss_base_model_version"] == row.ss_base_model_version
        assert meta["ss_network_module"] == module
        assert "modelspec.prediction_type" not in meta and "ss_network_args" not in meta  # flow: none, as theirs
        files[fmt] = read_lora(save_lora(cfg.output, lora))
    assert all(k.startswith("transformer.") for k in load_file(tmp_path / "diffusers.safetensors"))
    kohya, diffusers = files["kohya"], files["diffusers"]
    assert kohya.source_format == "kohya" and set(kohya.stems) == set(diffusers.stems)
    for stem in kohya.stems:  # the same LoRA both ways (the diffusers file holds the scale in its up weights)
        want = kohya.tensors[f"{stem}.lora_up.weight"] @ kohya.tensors[f"{stem}.lora_down.weight"]
        got = diffusers.tensors[f"{stem}.lora_up.weight"] @ diffusers.tensors[f"{stem}.lora_down.weight"]
        k_scale = float(kohya.tensors[f"{stem}.alpha"]) / kohya.tensors[f"{stem}.lora_down.weight"].shape[0]
        d_scale = float(diffusers.tensors[f"{stem}.alpha"]) / diffusers.tensors[f"{stem}.lora_down.weight"].shape[0]
        torch.testing.assert_close(got * d_scale, want * k_scale, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["tiny-sd15", "tiny-sdxl"])
def test_sd_families_keep_their_kohya_names_and_diffusers_option(family):
    """SD: one layer a stem (SGM names on SDXL), our generation loads the kohya keys; the diffusers option's
    `unet.` / `text_encoder.` keys load in diffusers' own loader with the same deltas."""
    from lorastudio.engine.lora.keys import text_encoder_targets, unet_targets
    from lorastudio.engine.models.tiny import build_tiny_sd15, build_tiny_sdxl

    build = build_tiny_sd15 if family == "tiny-sd15" else build_tiny_sdxl

    def fresh():
        return LoadedBase(name=family, family=family, source="inline", pipe=build(0))

    base = fresh()
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=unet_targets(base.denoiser, "all"))
    inject_adapter_in_model(config, base.denoiser)
    clip = base.text_encoders[0]
    inject_adapter_in_model(
        LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=text_encoder_targets(clip, "attn")), clip
    )
    with torch.no_grad():
        for part in (base.denoiser, clip):
            for name, p in part.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.3)
    lora = LoraFile(export_tensors(base, torch.float32))
    assert all(len(g) == 1 for g in stem_groups(base).values())
    assert any("_input_blocks_" in s for s in lora.stems) == (family == "tiny-sdxl")
    assert {float(lora.tensors[f"{s}.alpha"]) for s in lora.stems} == {ALPHA}
    check_fits(lora, base)
    assert set(to_diffusers_state(lora, base)) == {k for k in lora.tensors if not k.endswith(".alpha")}
    state = diffusers_tensors(lora, base)
    assert {k.split(".")[0] for k in state} == {"unet", "text_encoder"}
    loaded = fresh()
    loaded.pipe.load_lora_weights(state, adapter_name="x")
    want, got = deltas(base.denoiser, clip), deltas(loaded.denoiser, loaded.text_encoders[0])
    assert set(got) == set(want)
    for name, delta in want.items():
        torch.testing.assert_close(got[name], delta, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        ("transformer.transformer_blocks.0.attn.to_q.lora_magnitude_vector", "Unsupported", "DoRA"),
        ("transformer.transformer_blocks.0.attn.to_q.weight", "Unsupported", "no LoRA down/up pair"),
        ("transformer.transformer_blocks.0.attn.frobnicate.lora_A.weight", "Unsupported", "no layer of a FLUX.1"),
        ("diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight", "Invalid", "fused and apart"),
    ],
)
def test_what_a_transformer_import_cannot_take_is_refused_with_what_to_do(tmp_path, extra, error, match):
    from lorastudio import errors

    tensors = {}
    for x in "qkv":
        tensors[f"transformer.transformer_blocks.0.attn.to_{x}.lora_A.weight"] = torch.ones(4, 16)
        tensors[f"transformer.transformer_blocks.0.attn.to_{x}.lora_B.weight"] = torch.ones(16, 4)
    tensors["transformer.single_transformer_blocks.0.proj_out.lora_A.weight"] = torch.ones(4, 80)
    tensors["transformer.single_transformer_blocks.0.proj_out.lora_B.weight"] = torch.ones(16, 4)
    tensors[extra] = torch.ones(4, 16)
    if extra.endswith("qkv.lora_A.weight"):
        tensors[extra.replace("lora_A", "lora_B")] = torch.ones(48, 4)
    save_file(tensors, tmp_path / "x.safetensors")
    with pytest.raises(getattr(errors, error), match=match):
        read_lora(tmp_path / "x.safetensors")
