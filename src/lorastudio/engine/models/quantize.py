"""An 8-bit frozen base: the denoiser's block Linears stored as int8, with the LoRA trained on top.

A 12B FLUX.1 denoiser is 24 GB in bf16 and 12 GB in int8. Weight-only int8 with one scale per output
row (torchao's Int8WeightOnlyConfig) moved a FLUX-width stack's output by 0.03% (relative L2,
benchmarks/flow_memory.py), while the LoRA layers, injected AFTER quantizing, stay in full precision and
are the only parameters that get gradients (peft wraps them with its TorchaoLoraLinear).

What is quantized: every nn.Linear inside the transformer's repeated blocks (the top-level ModuleLists:
FLUX's transformer_blocks and single_transformer_blocks, Qwen-Image's transformer_blocks, Z-Image's
layers and refiners), modulation Linears included, which is 98-99.8% of the weights. What stays exact:
everything outside the blocks, i.e. the input projections (x_embedder/img_in, context_embedder/txt_in),
the timestep/guidance/pooled-text embedders, FLUX.2's shared modulations, the final norm_out and
proj_out, and every norm and embedding (they are not Linears). Those touch every token once on the way
in or out, where a rounding error is not averaged away by later layers, and they are under 2% of the
weights. SimpleTuner's FLUX exclude list names the same outer layers (x_embedder, context_embedder,
norm_out, proj_out and the norms); ai-toolkit quantizes them too, which saves little.
"""

from __future__ import annotations

import torch

from lorastudio.errors import Invalid

# fp8 weights only pay on a GPU with FP8 tensor cores (Ada, Hopper and newer: compute capability 8.9+);
# elsewhere they are the same 8 bits as int8, dequantized in software and less exact.
_FP8_CAPABILITY = (8, 9)


def quantized_modes() -> tuple[str, ...]:
    """The --quantize-base values this machine can run (for the CLI's help)."""
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= _FP8_CAPABILITY:
        return ("int8", "fp8")
    return ("int8",)


def frozen_linears(module: torch.nn.Module) -> list[str]:
    """Qualified names of the Linears that quantize_frozen turns to 8 bits: those inside the model's
    top-level block lists (see the module's doc for what stays exact and why)."""
    names = []
    for list_name, blocks in module.named_children():
        if not isinstance(blocks, torch.nn.ModuleList):
            continue
        for name, child in blocks.named_modules():
            if type(child) is torch.nn.Linear:  # a LoRA-wrapped or already quantized layer is not plain Linear
                names.append(f"{list_name}.{name}")
    return names


def quantize_frozen(module: torch.nn.Module, mode: str) -> None:
    """Store the frozen block Linears of `module` in 8 bits, in place; call before injecting the LoRA."""
    if mode not in ("int8", "fp8"):
        raise Invalid(f"the base can be quantized to int8 or fp8, not {mode!r}", setting="quantize_base")
    device = next(module.parameters()).device
    if mode == "fp8" and mode not in _modes_on(device):
        raise Invalid(
            f"fp8 weights need an NVIDIA GPU with FP8 support (RTX 40xx, L40, H100 or newer); this job runs on "
            f"{_device_words(device)}. Use $quantize_base int8, which saves the same memory",
            setting="quantize_base",
        )
    if any(hasattr(m, "lora_A") for m in module.modules()):
        raise RuntimeError("quantize_frozen must run before the LoRA is injected (it replaces the base Linears)")
    names = set(frozen_linears(module))
    if not names and any(isinstance(m, FrozenQuantLinear) for m in module.modules()):
        return  # quantized already
    if not names:
        raise Invalid(
            f"{type(module).__name__} has no transformer blocks to quantize; $quantize_base is for the "
            "transformer families (FLUX, Qwen-Image, Z-Image)",
            setting="quantize_base",
        )
    module.requires_grad_(False)
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    config = Int8WeightOnlyConfig() if mode == "int8" else Float8WeightOnlyConfig()
    quantize_(module, config, filter_fn=lambda _m, fqn: fqn in names)
    for name in names:
        module.get_submodule(name).__class__ = FrozenQuantLinear


class FrozenQuantLinear(torch.nn.Linear):
    """A Linear whose torchao-quantized weight is not copied into the autograd graph.

    torchao's weight-only linear casts the int8 weight to the activations' dtype and multiplies; autograd
    then keeps that full-precision copy of every weight until the backward, so a training step without
    gradient checkpointing held as much memory as the unquantized base (benchmarks/flow_memory.py).
    Here the backward dequantizes the weight again instead, one layer at a time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _QuantLinear.apply(x, self.weight, self.bias)


class _QuantLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.weight, ctx.dtype = weight, x.dtype  # the quantized parameter itself: no copy
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return grad @ ctx.weight.dequantize().to(grad.dtype), None, None


def _modes_on(device: torch.device) -> tuple[str, ...]:
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= _FP8_CAPABILITY:
        return ("int8", "fp8")
    return ("int8",)


def _device_words(device: torch.device) -> str:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
    return f"the {device.type.upper()}"
