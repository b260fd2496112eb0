"""How a transformer family's standard LoRA layout names the denoiser's layers: rules from a diffusers module
path to the module of the model its trainers use (BFL's for FLUX, the diffusers-shaped ones for Qwen-Image and
Z-Image), whose path with '.' -> '_' after `lora_unet_` is the kohya stem. Where that model fuses layers that
diffusers keeps apart (FLUX.1's q/k/v, its single blocks' q/k/v/MLP projection), the rule names the slot the
diffusers layer takes in the fused layer's output rows."""

from __future__ import annotations

import re
from dataclasses import dataclass

UNET_PREFIX = "lora_unet_"


@dataclass(frozen=True)
class Rule:
    """diffusers paths matching `pattern` (fullmatch) are rows of `native` ({i}: the pattern's block index `i`;
    empty: the path itself); with `slots`, the pattern's `slot` group says which part of the fused layer,
    in the order its rows are stacked."""

    pattern: str
    native: str = ""
    slots: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """One transformer family's standard LoRA key layout."""

    name: str  # the Family.key_layout it serves
    network_module: str  # what its trainer writes as ss_network_module
    rules: tuple[Rule, ...]
    # Rows of each fused slot relative to the first one, to give the layers a file leaves out zero rows
    # (FLUX.1's single-block MLP is 4 times as wide as its q, k or v: mlp_ratio 4).
    widths: dict[str, int] | None = None

    def native(self, path: str) -> tuple[str, int, int] | None:
        """(native module path, slot, slots in the fused layer) of a diffusers path, or None if unnamed."""
        for rule, regex in zip(self.rules, _compiled(self), strict=True):
            match = regex.fullmatch(path)
            if match:
                native = rule.native.format(**match.groupdict()) if rule.native else path
                if rule.slots:
                    return native, rule.slots.index(match["slot"]), len(rule.slots)
                return native, 0, 1
        return None

    def stem(self, path: str) -> tuple[str, int, int] | None:
        """(kohya stem, slot, slots) of a diffusers path, or None if the layout names no such layer."""
        named = self.native(path)
        return None if named is None else (native_stem(named[0]), named[1], named[2])

    def slot_rows(self, slots: int, present: dict[int, int]) -> list[int]:
        """Output rows of each slot of a fused layer, from the rows of the slots a file holds."""
        names = next(r.slots for r in self.rules if len(r.slots) == slots)
        widths = self.widths or {}
        unit = next(rows // widths.get(names[i], 1) for i, rows in present.items())
        return [present.get(i, unit * widths.get(name, 1)) for i, name in enumerate(names)]


_CACHE: dict[str, list[re.Pattern]] = {}


def _compiled(layout: Layout) -> list[re.Pattern]:
    if layout.name not in _CACHE:
        _CACHE[layout.name] = [re.compile(r.pattern) for r in layout.rules]
    return _CACHE[layout.name]


def native_stem(native: str) -> str:
    """kohya stem of a module path of the family's own model, e.g. lora_unet_double_blocks_0_img_attn_qkv."""
    return UNET_PREFIX + native.replace(".", "_")


def identity_rules(*patterns: str) -> tuple[Rule, ...]:
    """Rules for a layout whose trainers' model uses diffusers' own module names (no fused layers)."""
    return tuple(Rule(p) for p in patterns)
