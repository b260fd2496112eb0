"""An int8 frozen base under a trained LoRA, on a real tiny FLUX.1 denoiser."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel
from peft import LoraConfig, inject_adapter_in_model

from lorastudio.engine.models.quantize import (
    FrozenQuantLinear,
    frozen_linears,
    quantize_frozen,
    quantized_modes,
)
from lorastudio.errors import Invalid

pytest.importorskip("torchao")

TOKENS, TEXT = 16, 8


def tiny_flux() -> FluxTransformer2DModel:
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        in_channels=64,
        axes_dims_rope=(2, 2, 4),
    )
    return model.to(torch.bfloat16).requires_grad_(False)


def batch() -> dict:
    gen = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(1, TOKENS, 64, generator=gen).bfloat16(),
        encoder_hidden_states=torch.randn(1, TEXT, 32, generator=gen).bfloat16(),
        pooled_projections=torch.randn(1, 16, generator=gen).bfloat16(),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(TOKENS, 3),
        txt_ids=torch.zeros(TEXT, 3),
        return_dict=False,
    )


def test_block_linears_are_quantized_and_the_outer_layers_stay_exact():
    model = tiny_flux()
    outer = {n: m.weight.clone() for n, m in model.named_modules() if n.startswith(("x_embedder", "proj_out"))}
    names = frozen_linears(model)
    assert "transformer_blocks.0.attn.to_q" in names and "single_transformer_blocks.0.norm.linear" in names
    assert not any(
        n.startswith(("x_embedder", "context_embedder", "time_text_embed", "norm_out", "proj_out")) for n in names
    )
    quantize_frozen(model, "int8")
    for name in names:
        layer = model.get_submodule(name)
        assert isinstance(layer, FrozenQuantLinear) and layer.weight.qdata.dtype == torch.int8, name
    for name, weight in outer.items():
        assert type(model.get_submodule(name).weight) is torch.nn.Parameter
        assert torch.equal(model.get_submodule(name).weight, weight)
    assert frozen_linears(model) == []
    quantize_frozen(model, "int8")  # a second call finds nothing left to do


def test_quantized_forward_is_close_to_bf16():
    model = tiny_flux()
    with torch.no_grad():
        want = model(**batch())[0].float()
    quantize_frozen(model, "int8")
    with torch.no_grad():
        got = model(**batch())[0].float()
    error = ((got - want).norm() / want.norm()).item()
    assert 0 < error < 0.03  # it did change (int8), and by little (per-row scales)


def test_lora_trains_on_the_int8_base_and_only_the_lora_moves():
    model = tiny_flux()
    quantize_frozen(model, "int8")
    base = {n: p.dequantize().clone() for n, p in model.named_parameters() if hasattr(p, "dequantize")}
    exact = {n: p.clone() for n, p in model.named_parameters() if not hasattr(p, "dequantize")}
    inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights="gaussian"), model
    )
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in lora:
        p.data = p.data.float()  # the LoRA trains in fp32 over the 8-bit base
    assert lora and all(p.requires_grad for p in lora)
    start = [p.detach().clone() for p in lora]
    assert [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n] == []
    with torch.no_grad():  # a target the attention LoRA can reach: the base output, scaled down
        target = 0.5 * model(**batch())[0].float()
    opt = torch.optim.AdamW(lora, lr=5e-2)
    model.train()
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.mse_loss(model(**batch())[0].float(), target)
        loss.backward()
        assert [n for n, p in model.named_parameters() if p.grad is not None and "lora_" not in n] == []
        assert all(p.grad is not None for p in lora)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    assert all(not torch.equal(p, p0) for p, p0 in zip(lora, start, strict=True))  # every LoRA weight learned
    for name, p in model.named_parameters():
        key = name.replace(".base_layer", "")
        if key in base:
            assert torch.equal(p.dequantize(), base[key]), name
        elif key in exact:
            assert torch.equal(p, exact[key]), name


def test_backward_keeps_no_full_precision_copy_of_the_weights():
    model = tiny_flux()
    quantize_frozen(model, "int8")
    layer = model.transformer_blocks[0].ff.net[2]
    x = torch.randn(4, layer.in_features, dtype=torch.bfloat16, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = layer(x)
    assert saved == []  # torchao's own linear keeps a bf16 copy of the weight here
    y.float().sum().backward()
    want = torch.ones(4, layer.out_features) @ layer.weight.dequantize().float()
    assert torch.allclose(x.grad.float(), want, rtol=0.02, atol=0.02)


def test_modes_and_refusals_name_the_setting():
    assert "int8" in quantized_modes()
    for mode, words in (("int4", "int8 or fp8"), ("fp8", "int8")):
        if mode in quantized_modes():
            continue
        with pytest.raises(Invalid) as err:
            quantize_frozen(tiny_flux(), mode)
        assert err.value.setting == "quantize_base" and words in str(err.value)


def test_quantizing_after_the_lora_is_refused():
    model = tiny_flux()
    inject_adapter_in_model(LoraConfig(r=4, target_modules=["to_q"]), model)
    with pytest.raises(RuntimeError, match="before the LoRA"):
        quantize_frozen(model, "int8")
