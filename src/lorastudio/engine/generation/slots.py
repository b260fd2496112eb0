"""Reuse a loaded adapter's layers for another LoRA file by copying its weights in (a hot swap).

Loading a LoRA through diffusers wraps every target layer in peft modules: on SD1.5 that is about 0.35 s
a file on a CPU, most of a warm switch (benchmarks/generate_speed.py). When the cache must evict an
adapter anyway and the incoming file targets a subset of its layers at no higher rank per layer, its
weights are copied into the evicted adapter's layers instead: lower ranks are zero-padded and layers the
new file leaves out are zeroed, which leaves the output what a fresh load gives. This is peft's own
hot-swap idea (peft.utils.hotswap), done on our kohya stems so that the text encoders swap too, which
diffusers' `hotswap=True` does not support. A stem that fuses several layers (FLUX's q/k/v) is loaded as
one peft adapter per layer, so a file with one is never swapped: it is loaded fresh.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lorastudio.engine.lora.file import LoraFile

_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")

Layout = dict[str, int]  # canonical kohya stem -> rank of the LoRA on that layer


def layout(lora: LoraFile, known: Mapping, aliases: dict[str, str]) -> tuple[Layout, dict[str, str]] | None:
    """Each layer the file targets (in the base's own spelling) with its rank, and canonical stem -> the
    file's stem; None for anything but a plain down/up/alpha LoRA on single layers (DoRA, extra tensors,
    fused layers), which only a fresh load applies. known: the base's module_table (lora/fit.py)."""
    if any(not key.endswith(_SUFFIXES) for key in lora.tensors):
        return None
    out: Layout = {}
    names: dict[str, str] = {}
    for stem in lora.stems:
        canonical = stem if stem in known else aliases.get(stem)
        if canonical is None or canonical in out or getattr(known.get(canonical), "parts", 1) != 1:
            return None
        out[canonical] = int(lora.tensors[f"{stem}.lora_down.weight"].shape[0])
        names[canonical] = stem
    return out, names


def fits_slot(incoming: Layout, slot: Layout) -> bool:
    """Whether a file with layout `incoming` can be swapped into a slot loaded with layout `slot`."""
    return all(stem in slot and rank <= slot[stem] for stem, rank in incoming.items())


def slot_layers(adapter: str, slot: Layout, wrappers: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Module] | None:
    """stem -> peft layer holding `adapter` for every stem of the slot, or None if one is not a plain,
    unmerged LoRA layer scaled 1 (as our alpha-folded files load)."""
    out = {}
    for stem in slot:
        layer = wrappers.get(stem)
        lora_a = getattr(layer, "lora_A", None)
        if lora_a is None or adapter not in lora_a or getattr(layer, "merged", False):
            return None
        if layer.use_dora.get(adapter) or layer.lora_alpha[adapter] != layer.r[adapter]:
            return None
        out[stem] = layer
    return out


@torch.no_grad()
def swap_in(
    adapter: str, tensors: dict[str, torch.Tensor], names: dict[str, str], layers: dict[str, torch.nn.Module]
) -> None:
    """Copy alpha-folded kohya tensors into the slot's layers. names: canonical stem -> the file's stem.

    Raises ValueError before any copy if a weight cannot take the slot's shape, so a failed swap leaves
    the slot as it was."""
    plan = []
    for stem, layer in layers.items():
        a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
        if stem not in names:
            plan.append((a, None, b, None))
            continue
        down = tensors.get(f"{names[stem]}.lora_down.weight")
        up = tensors.get(f"{names[stem]}.lora_up.weight")
        if down is None or up is None:  # not kohya tensors (a transformer family's peft state): load it fresh
            raise ValueError(f"{stem} has no kohya weights to swap in")
        rank = down.shape[0]
        try:  # a 1x1 conv may be stored as a Linear's 2-D weight
            down = down.reshape(rank, *a.shape[1:])
            up = up.reshape(up.shape[0], rank, *b.shape[2:])
        except RuntimeError as exc:
            raise ValueError(f"{stem} does not fit the slot's layer") from exc
        if rank > a.shape[0] or up.shape[0] != b.shape[0]:
            raise ValueError(f"{stem} does not fit the slot's layer")
        plan.append((a, down, b, up))
    for a, down, b, up in plan:
        a.zero_()
        b.zero_()
        if down is not None:
            a[: down.shape[0]].copy_(down)
            b[:, : up.shape[1]].copy_(up)
