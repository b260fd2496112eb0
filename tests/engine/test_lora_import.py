"""LoRA files in each peer's own layout - diffusers' training scripts, peft, diffusers' old attention processors,
diffusers' kohya export - are read, fit the base they were made for (and only it) and render the same pixels
as diffusers' own loader gives; kohya files without our metadata fit by their shapes alone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
from peft import LoraConfig, get_peft_model, inject_adapter_in_model, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lorastudio.engine.generation.generate import GenerateRequest, generate, initial_latents
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.generation.samplers import make_scheduler
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.lora.fit import check_fits, module_table
from lorastudio.engine.lora.keys import te_kohya_name, te_kohya_prefix, unet_name_table, unet_stem_namer
from lorastudio.engine.models.base import load_base_model
from lorastudio.engine.models.denoisers import denoiser_for
from lorastudio.engine.models.families import get_family
from lorastudio.errors import FamilyMismatch, Invalid, Unsupported

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # what diffusers' train_text_to_image_lora.py adapts
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]  # and train_dreambooth_lora.py in the text encoder
PIPELINES = {"tiny-sd15": StableDiffusionPipeline, "tiny-sdxl": StableDiffusionXLPipeline}
TE_ARGS = ("text_encoder_lora_layers", "text_encoder_2_lora_layers")


@dataclass
class Peer:
    """A LoRA as peft holds it after training: per part, get_peft_model_state_dict and the raw parameters."""

    base: str
    unet: dict[str, torch.Tensor]
    encoders: list[dict[str, torch.Tensor]]
    raw_unet: dict[str, torch.Tensor]  # named_parameters(): `<path>.lora_A.default.weight`


def make_peer(settings, name: str, seed: int) -> Peer:
    base = load_base_model(name, settings)
    base.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
    for encoder in base.text_encoders:  # peft directly: transformers' add_adapter wants a newer peft
        inject_adapter_in_model(
            LoraConfig(r=4, lora_alpha=4, target_modules=TE_TARGETS, init_lora_weights="gaussian"), encoder
        )
    gen = torch.Generator().manual_seed(seed)
    for module in (base.unet, *base.text_encoders):
        for pname, param in module.named_parameters():
            if "lora_B" in pname:  # gaussian init leaves lora_B zero, and a LoRA that changes nothing proves nothing
                param.data = torch.randn(param.shape, generator=gen) * 0.1
    encoders = [get_peft_model_state_dict(e) for e in base.text_encoders]
    raw = {n: p.detach().clone() for n, p in base.unet.named_parameters() if ".lora_" in n}
    return Peer(name, get_peft_model_state_dict(base.unet), encoders, raw)


def save_like_diffusers(peer: Peer, folder: Path, convert=True, with_text=True, **extra) -> Path:
    """What diffusers' LoRA training scripts do: convert_state_dict_to_diffusers(get_peft_model_state_dict(m))
    per part, then <Pipeline>.save_lora_weights."""
    fix = convert_state_dict_to_diffusers if convert else dict
    layers = {"unet_lora_layers": fix(peer.unet)}
    if with_text:
        layers |= {arg: fix(state) for arg, state in zip(TE_ARGS, peer.encoders, strict=False)}
    PIPELINES[peer.base].save_lora_weights(save_directory=folder, **layers, **extra)
    return folder / "pytorch_lora_weights.safetensors"


def old_processor_name(key: str) -> str:
    """A current diffusers key as diffusers' old attention processors (LoRAAttnProcessor, transformers 4) named it."""
    key = re.sub(r"\.(to_q|to_k|to_v)\.lora\.(down|up)\.", r".processor.\1_lora.\2.", key)
    key = re.sub(r"\.to_out\.0\.lora\.(down|up)\.", r".processor.to_out_lora.\1.", key)
    key = re.sub(r"\.self_attn\.(q|k|v)_proj\.lora_linear_layer\.", r".self_attn.to_\1_lora.", key)
    key = re.sub(r"\.self_attn\.out_proj\.lora_linear_layer\.", r".self_attn.to_out_lora.", key)
    return key.replace("text_encoder.encoder.", "text_encoder.text_model.encoder.")


def write_layouts(peer: Peer, folder: Path, settings) -> dict[str, Path]:
    """Each peer's own layout of the same LoRA."""
    out = {"diffusers": save_like_diffusers(peer, folder / "diffusers")}
    out["peft"] = save_like_diffusers(peer, folder / "peft", convert=False)  # unet.<path>.lora_A.weight
    current = load_file(out["diffusers"])
    assert any(".lora.down." in k for k in current) and any(".lora_linear_layer.down." in k for k in current)
    out["attn-processor"] = folder / "processor.safetensors"
    save_file({old_processor_name(k): v for k, v in current.items()}, out["attn-processor"], {"format": "pt"})
    out["peft-adapter-name"] = folder / "named.safetensors"  # raw parameters, adapter name kept
    encoder = {f"text_encoder.{k}": v for k, v in peer.encoders[0].items()}
    save_file({f"unet.{k}": v for k, v in peer.raw_unet.items()} | encoder, out["peft-adapter-name"])
    # A PeftModel around the UNet, saved as peft's save_pretrained does: base_model.model.<path>.lora_A.weight
    unet = UNet2DConditionModel.from_pretrained(settings.models_dir / peer.base / "unet")
    model = get_peft_model(unet, LoraConfig(r=4, lora_alpha=4, target_modules=UNET_TARGETS))
    set_peft_model_state_dict(model, {f"base_model.model.{k}": v for k, v in peer.unet.items()})
    out["peft-model"] = folder / "adapter_model.safetensors"
    save_file(get_peft_model_state_dict(model), out["peft-model"])
    # diffusers' own export for A1111/ComfyUI: convert_state_dict_to_kohya of the prefixed peft state
    prefixed = {f"unet.{k}": v for k, v in peer.unet.items()}
    for part, state in zip(("text_encoder", "text_encoder_2"), peer.encoders, strict=False):
        prefixed |= {f"{part}.{k}": v for k, v in state.items()}
    out["diffusers-kohya"] = folder / "kohya.safetensors"
    save_file(convert_state_dict_to_kohya(prefixed), out["diffusers-kohya"])
    return out


# layout -> the diffusers-loadable file whose pixels it must match (itself, or one with the same weights)
SD15_LAYOUTS = {
    "diffusers": "diffusers",
    "peft": "peft",
    "attn-processor": "attn-processor",
    "peft-adapter-name": "peft",
    "peft-model": None,  # no diffusers loader reads base_model.model.; its tensors are compared with peft's
    "diffusers-kohya": "diffusers-kohya",
}


@pytest.fixture(scope="module")
def sd15(settings):
    return load_base_model("tiny-sd15", settings)


@pytest.fixture(scope="module")
def sdxl(settings):
    return load_base_model("tiny-sdxl", settings)


@pytest.fixture(scope="module")
def sd15_files(settings, tmp_path_factory):
    peer = make_peer(settings, "tiny-sd15", seed=1)
    return peer, write_layouts(peer, tmp_path_factory.mktemp("sd15-peers"), settings)


@pytest.fixture(scope="module")
def caches(settings):
    """Ours (PipelineCache, as the app loads LoRAs) and diffusers' (load_lora_weights), per base."""
    made: dict[tuple[str, str], object] = {}

    def get(kind: str, base: str):
        if (kind, base) not in made:
            cache = PipelineCache(settings)
            cache.get_base(base)
            made[kind, base] = cache
        return made[kind, base]

    return get


def request(base: str, path: Path | None = None) -> GenerateRequest:
    loras = [{"lora": str(path), "strength": 1.0}] if path else []
    return GenerateRequest.build(prompt="johnhero", base=base, seed=1, steps=2, loras=loras)


def ours(caches, base: str, path: Path | None) -> np.ndarray:
    return np.asarray(generate(caches("ours", base), request(base, path)).images[0])


def diffusers_render(caches, base: str, path: Path, adapter: str, model_level=False) -> np.ndarray:
    """The same call generate() makes, with the LoRA loaded by diffusers itself from the file (by the pipeline,
    or by the UNet for a model-level file)."""
    loaded = caches("diffusers", base).base
    pipe = loaded.pipe
    if adapter not in pipe.get_list_adapters().get("unet", []):
        if model_level:
            # use_safetensors, or this loader reads the file through its .bin path and drops the LoraConfig
            pipe.unet.load_lora_adapter(str(path), prefix=None, adapter_name=adapter, use_safetensors=True)
        else:
            pipe.load_lora_weights(str(path), adapter_name=adapter)
    pipe.set_adapters([adapter])
    req = request(base, path)
    pipe.scheduler = make_scheduler(req.sampler, pipe.scheduler.config)
    latents = initial_latents(denoiser_for(loaded), [req.seed], 64, 64, req)
    with torch.inference_mode():
        image = pipe(
            prompt=req.prompt,
            num_inference_steps=req.steps,
            guidance_scale=get_family(base).default_cfg if req.cfg_scale is None else req.cfg_scale,
            width=64,
            height=64,
            generator=[torch.Generator().manual_seed(req.seed)],
            latents=latents,
        ).images[0]
    return np.asarray(image)


def assert_same_pixels(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def expected_stems(peer: Peer, base) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """kohya stem -> (lora_A, lora_B) from the peft state, named from the base UNet itself (not by convert.py)."""
    sdxl = get_family(base.family).key_layout == "kohya-sgm"
    namer = unet_stem_namer(base.unet, sdxl)
    out = {}
    for i, state in [("unet", peer.unet), *enumerate(peer.encoders)]:
        for key in state:
            if key.endswith(".lora_A.weight"):
                path = key.removesuffix(".lora_A.weight")
                stem = namer(path) if i == "unet" else te_kohya_name(te_kohya_prefix(i, sdxl), path)
                out[stem] = (state[key], state[f"{path}.lora_B.weight"])
    return out


def assert_same_weights(lora, peer: Peer, base, alpha=4.0, unet_only=False) -> None:
    wanted = expected_stems(peer, base)
    if unet_only:
        wanted = {s: w for s, w in wanted.items() if s.startswith("lora_unet_")}
    assert set(lora.stems) == set(wanted)
    for stem, (a, b) in wanted.items():
        assert torch.equal(lora.tensors[f"{stem}.lora_down.weight"], a), stem
        assert torch.equal(lora.tensors[f"{stem}.lora_up.weight"], b), stem
        assert float(lora.tensors[f"{stem}.alpha"]) == alpha, stem


@pytest.mark.parametrize("layout", list(SD15_LAYOUTS))
def test_sd15_peer_layouts_read_fit_and_render_as_diffusers_does(layout, sd15_files, sd15, sdxl, caches):
    peer, files = sd15_files
    lora = read_lora(files[layout])
    assert lora.source_format == ("kohya" if layout == "diffusers-kohya" else "diffusers")
    check_fits(lora, sd15)
    with pytest.raises(FamilyMismatch, match="tiny SDXL-shaped"):
        check_fits(lora, sdxl)
    if layout == "diffusers-kohya":  # diffusers' own spelling (lora_te1_, no text_model_), kept as written
        assert any(s.startswith("lora_te1_encoder_") for s in lora.stems)
    else:
        table, unet_names = module_table(sd15), unet_name_table(sd15.unet, False)
        assert all(s in table for s in lora.stems)
        assert {s for s in lora.stems if s.startswith("lora_unet_")} <= set(unet_names)
        assert_same_weights(lora, peer, sd15, unet_only=layout == "peft-model")
    reference = SD15_LAYOUTS[layout]
    if reference is None:
        return
    mine = ours(caches, "tiny-sd15", files[layout])
    assert_same_pixels(mine, diffusers_render(caches, "tiny-sd15", files[reference], reference))
    assert np.abs(mine.astype(int) - ours(caches, "tiny-sd15", None)).mean() > 1  # the LoRA shows


def test_sdxl_diffusers_layout_uses_sgm_names_and_renders_as_diffusers_does(settings, sd15, sdxl, caches, tmp_path):
    peer = make_peer(settings, "tiny-sdxl", seed=2)
    path = save_like_diffusers(peer, tmp_path / "full")  # train_dreambooth_lora_sdxl.py with --train_text_encoder
    lora = read_lora(path)
    unet_names = unet_name_table(sdxl.unet, True)
    assert {s for s in lora.stems if s.startswith("lora_unet_")} <= set(unet_names)
    assert any("_input_blocks_" in s for s in lora.stems) and any(s.startswith("lora_te2_") for s in lora.stems)
    assert_same_weights(lora, peer, sdxl)
    check_fits(lora, sdxl)
    with pytest.raises(FamilyMismatch, match="tiny SD1.5-shaped"):
        check_fits(lora, sd15)
    assert_same_pixels(ours(caches, "tiny-sdxl", path), diffusers_render(caches, "tiny-sdxl", path, "full"))
    # UNet only (train_text_to_image_lora_sdxl.py): nothing names SDXL but the UNet's own structure
    unet_only = read_lora(save_like_diffusers(peer, tmp_path / "unet", with_text=False))
    assert_same_weights(unet_only, peer, sdxl, unet_only=True)
    check_fits(unet_only, sdxl)


def test_model_level_save_lora_adapter_file(settings, sd15_files, sd15, sdxl, caches, tmp_path):
    """ModelMixin.save_lora_adapter writes unprefixed keys and the model's own LoraConfig, unprefixed."""
    peer, _ = sd15_files
    unet = UNet2DConditionModel.from_pretrained(settings.models_dir / "tiny-sd15" / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=UNET_TARGETS))
    set_peft_model_state_dict(unet, peer.unet)
    unet.save_lora_adapter(tmp_path)
    path = tmp_path / "pytorch_lora_weights.safetensors"
    assert all(k.startswith("down_blocks.") or k.startswith(("mid_block.", "up_blocks.")) for k in load_file(path))
    lora = read_lora(path)
    assert_same_weights(lora, peer, sd15, alpha=8.0, unet_only=True)
    check_fits(lora, sd15)
    with pytest.raises(FamilyMismatch):
        check_fits(lora, sdxl)
    mine = ours(caches, "tiny-sd15", path)
    assert_same_pixels(mine, diffusers_render(caches, "tiny-sd15", path, "model-level", model_level=True))


def save_with_alphas(peer: Peer, folder: Path, pattern: bool) -> Path:
    """diffusers' layout with its lora_adapter_metadata: UNet lora_alpha 8 (one module 2 when `pattern`),
    text encoder rsLoRA (peft scales by alpha/sqrt(r))."""
    unet = {"r": 4, "lora_alpha": 8, "target_modules": UNET_TARGETS}
    if pattern:
        unet["alpha_pattern"] = {first_module(peer): 2}
    te = {"r": 4, "lora_alpha": 4, "target_modules": TE_TARGETS, "use_rslora": True}
    return save_like_diffusers(peer, folder, unet_lora_adapter_metadata=unet, text_encoder_lora_adapter_metadata=te)


def first_module(peer: Peer) -> str:
    return next(k.removesuffix(".lora_A.weight") for k in peer.unet if k.endswith(".lora_A.weight"))


def test_peft_alphas_from_diffusers_metadata_render_as_diffusers_does(sd15_files, caches, tmp_path):
    peer, _ = sd15_files
    path = save_with_alphas(peer, tmp_path, pattern=False)
    lora = read_lora(path)
    alphas = {s[:9]: float(lora.tensors[f"{s}.alpha"]) for s in lora.stems}  # lora_unet / lora_te_t
    assert alphas == {"lora_unet": 8.0, "lora_te_t": 8.0}  # text encoder: 4 * sqrt(4), the same scale 2
    assert_same_pixels(ours(caches, "tiny-sd15", path), diffusers_render(caches, "tiny-sd15", path, "alphas"))


def test_alpha_pattern_gives_each_module_the_scale_peft_gives_it(sd15_files, sd15, caches, tmp_path):
    # diffusers 0.42's kohya loader misnames attention modules' alphas; PipelineCache folds alpha/rank into
    # the up weights before handing them over, so per-module alphas render as diffusers' own peft loader does.
    peer, _ = sd15_files
    path = save_with_alphas(peer, tmp_path, pattern=True)
    lora = read_lora(path)
    pipe = caches("diffusers", "tiny-sd15").base.pipe
    pipe.load_lora_weights(str(path), adapter_name="pattern")  # diffusers' own reading of the same file
    scales = []
    for i, state in [("unet", peer.unet), (0, peer.encoders[0])]:
        model = pipe.unet if i == "unet" else pipe.text_encoder
        for key in (k for k in state if k.endswith(".lora_A.weight")):
            name = key.removesuffix(".lora_A.weight")
            stem = unet_stem_namer(sd15.unet, False)(name) if i == "unet" else te_kohya_name("lora_te_", name)
            down, up = lora.tensors[f"{stem}.lora_down.weight"], lora.tensors[f"{stem}.lora_up.weight"]
            ours_delta = up @ down * float(lora.tensors[f"{stem}.alpha"]) / down.shape[0]  # kohya: alpha / rank
            scale = model.get_submodule(name).scaling["pattern"]  # what peft applies to B @ A
            assert torch.allclose(ours_delta, state[f"{name}.lora_B.weight"] @ state[key] * scale), stem
            scales.append(scale)
    assert sorted(set(scales)) == [0.5, 2.0] and scales.count(0.5) == 1


@pytest.mark.filterwarnings("ignore:The following alpha_pattern keys did not match")
def test_per_module_alphas_render_as_diffusers_does(sd15_files, caches, tmp_path):
    # diffusers 0.42's kohya loader misnames attention modules' alphas; PipelineCache folds alpha/rank into
    # the up weights before handing them over, so per-module alphas render as diffusers' own peft loader does.
    peer, _ = sd15_files
    path = save_with_alphas(peer, tmp_path, pattern=True)
    assert_same_pixels(ours(caches, "tiny-sd15", path), diffusers_render(caches, "tiny-sd15", path, "pattern2"))


def test_alpha_tensors_in_a_peft_file_are_kept(sd15_files, sd15, tmp_path):
    peer, files = sd15_files
    tensors = load_file(files["peft"])
    paths = {k.split(".lora_A.")[0] for k in tensors if k.startswith("unet.") and ".lora_A." in k}
    save_file(tensors | {f"{p}.alpha": torch.tensor(2.0) for p in paths}, tmp_path / "alpha.safetensors")
    lora = read_lora(tmp_path / "alpha.safetensors")
    check_fits(lora, sd15)
    for stem, (a, b) in expected_stems(peer, sd15).items():
        down, up = lora.tensors[f"{stem}.lora_down.weight"], lora.tensors[f"{stem}.lora_up.weight"]
        scale = float(lora.tensors[f"{stem}.alpha"]) / down.shape[0]  # kohya: alpha / rank
        assert torch.allclose(up @ down * scale, b @ a * (0.5 if stem.startswith("lora_unet_") else 1.0))


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        '{"unet.lora_alpha": "abc"}',
        "[1, 2]",
        '"text"',
        "null",
        '{"unet.lora_alpha": NaN, "text_encoder.lora_alpha": Infinity}',
        '{"unet.lora_alpha": 1' + "0" * 400 + "}",
        '{"unet.lora_alpha": true, "unet.use_rslora": "yes", "unet.alpha_pattern": [1]}',
        '{"unet.alpha_pattern": {"(.*.*)*x": 3, "to_q": "abc"}}',  # a regex from a file is never run
        '{"unet": 5, "text_encoder_lora_adapter_metadata": {"lora_alpha": [1]}}',
        "[" * 100_000,
    ],
)
def test_hostile_adapter_metadata_is_ignored(sd15_files, tmp_path, raw):
    _, files = sd15_files
    save_file(load_file(files["diffusers"]), tmp_path / "x.safetensors", {"lora_adapter_metadata": raw})
    lora = read_lora(tmp_path / "x.safetensors")
    assert {float(lora.tensors[f"{s}.alpha"]) for s in lora.stems} == {4.0}  # alpha = rank, as diffusers reads it


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("unet.down_blocks.0.attentions.0.proj_in.lora_magnitude_vector", "DoRA"),
        ("unet.down_blocks.0.attentions.0.proj_in.lora_B.bias", "lora_bias"),
        ("unet.down_blocks.0.attentions.0.proj_in.weight", "no LoRA down/up pair"),
        ("transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight", "not for an SD1.5- or SDXL"),
    ],
)
def test_what_kohya_form_cannot_hold_is_refused_with_what_to_do(tmp_path, key, match):
    module = "unet.down_blocks.0.attentions.0.proj_in"
    tensors = {f"{module}.lora_A.weight": torch.zeros(4, 32), f"{module}.lora_B.weight": torch.zeros(32, 4)}
    tensors[key] = torch.zeros(32, 4)
    save_file(tensors, tmp_path / "x.safetensors")
    with pytest.raises(Unsupported, match=match):
        read_lora(tmp_path / "x.safetensors")


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({"unet.conv_in.lora_B.weight": torch.zeros(32, 4)}, "incomplete"),
        ({"unet.conv_in.lora_A.weight": torch.zeros(()), "unet.conv_in.lora_B.weight": torch.zeros(32, 4)}, "matrix"),
        ({"unet.conv_in.lora_A.weight": torch.zeros(4, 4), "unet.conv_in.lora.down.weight": torch.zeros(4, 4)}, "two"),
    ],
)
def test_damaged_files_are_refused(tmp_path, tensors, match):
    save_file(tensors, tmp_path / "x.safetensors")
    with pytest.raises(Invalid, match=match):
        read_lora(tmp_path / "x.safetensors")


def without_our_metadata(path: Path, out: Path) -> Path:
    """The file as another tool would have written it: same tensors, ss_* metadata only."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    save_file(load_file(path), out, {k: v for k, v in meta.items() if not k.startswith("lorastudio_")})
    return out


def test_kohya_file_without_our_metadata_fits_by_shape(trained, caches, sdxl, tmp_path):
    path = without_our_metadata(trained["tiny-sd15"], tmp_path / "plain.safetensors")
    lora = read_lora(path)
    assert not any(k.startswith("lorastudio_") for k in lora.metadata) and lora.metadata["ss_network_dim"] == "4"
    loaded = caches("ours", "tiny-sd15").load_lora(path)  # the app's way in: fit check, then load
    assert loaded.adapter in caches("ours", "tiny-sd15").loras
    with pytest.raises(FamilyMismatch, match="tiny SDXL-shaped"):
        check_fits(lora, sdxl)


def test_sdxl_text_encoders_are_checked_for_fit(trained, sdxl, tmp_path):
    lora = read_lora(without_our_metadata(trained["tiny-sdxl"], tmp_path / "plain.safetensors"))
    check_fits(lora, sdxl)
    for prefix in ("lora_te1_", "lora_te2_"):
        stem = next(s for s in lora.stems if s.startswith(prefix))
        wide = dict(lora.tensors)
        wide[f"{stem}.lora_down.weight"] = torch.zeros(4, 99)  # as if made for a wider encoder
        with pytest.raises(FamilyMismatch, match=stem):
            check_fits(type(lora)(wide, lora.metadata), sdxl)
        missing = {k.replace(stem, stem.replace("layers_0", "layers_7")): v for k, v in lora.tensors.items()}
        with pytest.raises(FamilyMismatch, match="do not fit"):
            check_fits(type(lora)(missing, lora.metadata), sdxl)


def test_kohya_sd_scripts_file_for_toyworld_fits_toyworld(settings, sd15, tmp_path):
    """sd-scripts names modules `lora_unet_` / `lora_te_text_model_` + path with '_' and writes ss_* only."""
    toyworld = PipelineCache(settings)
    base = toyworld.get_base("toyworld")
    gen = torch.Generator().manual_seed(3)
    tensors = {}
    parts = [
        ("lora_unet_", base.unet, r"attn[12]\.(to_q|to_k|to_v|to_out\.0)$"),
        ("lora_te_text_model_", base.text_encoders[0], r"self_attn\.(q|k|v|out)_proj$"),
    ]
    for prefix, model, pattern in parts:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and re.search(pattern, name):
                stem = prefix + name.replace(".", "_")
                tensors[f"{stem}.lora_down.weight"] = torch.randn(8, module.in_features, generator=gen) * 0.01
                tensors[f"{stem}.lora_up.weight"] = torch.randn(module.out_features, 8, generator=gen) * 0.01
                tensors[f"{stem}.alpha"] = torch.tensor(8.0)
    assert len(tensors) > 30
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "8",
        "ss_base_model_version": "sd_v1",
        "ss_output_name": "toy",
    }
    save_file(tensors, tmp_path / "toy.safetensors", meta)
    lora = read_lora(tmp_path / "toy.safetensors")
    assert lora.info.family is None  # no label anywhere: only the shapes decide
    toyworld.load_lora(tmp_path / "toy.safetensors")
    with pytest.raises(FamilyMismatch, match="tiny SD1.5-shaped"):
        check_fits(lora, sd15)
