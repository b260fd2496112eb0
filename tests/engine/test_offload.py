"""Block swap on a real tiny FLUX.1 denoiser: the mechanics, traced (on a CPU the device is the host too,
so what is checked is where each block's weights are and that nothing in the numbers changes)."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxTransformer2DModel
from peft import LoraConfig, inject_adapter_in_model

from lorastudio.engine.models.offload import BlockSwap, swap_blocks, transformer_blocks
from lorastudio.engine.models.quantize import quantize_frozen
from lorastudio.errors import Invalid

TOKENS, TEXT = 16, 8


def tiny_flux(layers: int = 2, single: int = 3) -> FluxTransformer2DModel:
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        num_layers=layers,
        num_single_layers=single,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        in_channels=64,
        axes_dims_rope=(2, 2, 4),
    )
    model.requires_grad_(False)
    inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], init_lora_weights="gaussian"), model
    )
    return model


def batch() -> dict:
    gen = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(1, TOKENS, 64, generator=gen),
        encoder_hidden_states=torch.randn(1, TEXT, 32, generator=gen),
        pooled_projections=torch.randn(1, 16, generator=gen),
        timestep=torch.tensor([0.5]),
        img_ids=torch.zeros(TOKENS, 3),
        txt_ids=torch.zeros(TEXT, 3),
        return_dict=False,
    )


def step(model) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward once; the output and every LoRA gradient."""
    out = model(**batch())[0]
    out.pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_swap_changes_no_number_and_moves_blocks_in_order(checkpointing):
    plain = tiny_flux()
    swapped = tiny_flux()
    if checkpointing:
        plain.enable_gradient_checkpointing()
        swapped.enable_gradient_checkpointing()
    plain.train(), swapped.train()
    want_out, want_grads = step(plain)

    trace = []
    swap = BlockSwap(swapped, 3, "cpu", trace=trace)
    blocks = transformer_blocks(swapped)
    assert [transformer_blocks(swapped).index(b) for b in swap.swapped] == [2, 3, 4]  # the last three
    assert not any(swap.is_loaded(b) for b in swap.swapped)
    # Between calls the swapped blocks' frozen weights hold no memory on the device; the rest do.
    assert blocks[2].attn.to_q.base_layer.weight.untyped_storage().nbytes() == 0
    assert blocks[1].attn.to_q.base_layer.weight.untyped_storage().nbytes() > 0

    for _ in range(2):  # the second step finds the blocks as the first left them
        trace.clear()
        out, grads = step(swapped)
        assert torch.equal(out, want_out)
        assert grads.keys() == want_grads.keys() and len(grads) > 0
        for name, grad in grads.items():
            assert torch.equal(grad, want_grads[name]), name
        forward = [("load", 2), ("free", 2), ("load", 3), ("free", 3), ("load", 4), ("free", 4)]
        backward = [("load", 4), ("free", 4), ("load", 3), ("free", 3), ("load", 2), ("free", 2)]
        assert trace == forward + backward
        assert not any(swap.is_loaded(b) for b in swap.swapped)
        assert blocks[4].proj_out.weight.untyped_storage().nbytes() == 0


def test_at_most_one_swapped_block_is_loaded_at_a_time():
    model = tiny_flux()
    swap = swap_blocks(model, 4, "cpu")
    swap.trace = []
    loaded = []  # how many swapped blocks are on the device at each moment one is loaded
    load = swap._load

    def counting_load(block):
        load(block)
        loaded.append(sum(swap.is_loaded(b) for b in swap.swapped))

    swap._load = counting_load
    step(model)
    assert len(loaded) >= 8 and max(loaded) == 1
    assert len(swap.trace) == 4 * 4  # each swapped block loaded and freed once forward, once backward


def test_inference_frees_each_block_after_use():
    model = tiny_flux()
    trace = []
    BlockSwap(model, 2, "cpu", trace=trace)
    with torch.no_grad():
        model(**batch())
    assert trace == [("load", 3), ("free", 3), ("load", 4), ("free", 4)]


def test_swap_of_a_quantized_base_keeps_its_output():
    pytest.importorskip("torchao")
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        in_channels=64,
        axes_dims_rope=(2, 2, 4),
    )
    quantize_frozen(model, "int8")
    with torch.no_grad():
        want = model(**batch())[0]
    swap = BlockSwap(model, 2, "cpu")
    assert swap.swapped[0].proj_mlp.weight.qdata.untyped_storage().nbytes() == 0  # the int8 data is parked
    with torch.no_grad():
        assert torch.equal(model(**batch())[0], want)


def test_remove_brings_the_blocks_back_and_stops_swapping():
    model = tiny_flux()
    trace = []
    swap = BlockSwap(model, 2, "cpu", trace=trace)
    swap.remove()
    trace.clear()
    want, _ = step(tiny_flux())
    out, _ = step(model)
    assert trace == [] and torch.equal(out, want)


def test_count_out_of_range_is_refused_naming_the_setting():
    with pytest.raises(Invalid) as err:
        BlockSwap(tiny_flux(), 6, "cpu")
    assert err.value.setting == "blocks_to_swap" and "5 blocks" in str(err.value)
