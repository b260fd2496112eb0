"""Regional LoRAs: each LoRA can be confined to one part of the picture.

Two character LoRAs applied to the whole picture bleed: each changes every cross-attention, so both
fighters drift toward one look (the guide's advice, strengths 0.6-0.8 each, only softens it; on the toy
world it left 0 of 20 pair scenes right). A1111's Regional Prompter (latent mode) and ComfyUI's masked
LoRA hooks confine LoRAs to regions; we do it like this:
  - one *pass* per region, with that region's LoRAs plus the whole-picture ones (a style LoRA, say);
  - each pass keeps its own copy of every image in the batch and reads its own prompt (pass_prompt);
  - the copies are painted apart for most of the steps and share one mask-blended latent for the last
    `region_blend` of them, which joins the regions into one picture.
Same seed and noise for every copy, so the passes agree on the layout. It costs one UNet call per pass
per step, and the batch grows by the number of passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lorastudio.engine.selection import region_box
from lorastudio.errors import Invalid

# Share of the last sampler steps in which the passes share one blended latent; before that each pass
# paints its own copy. Measured on the toy world (benchmarks/consistency.py, 20 pair prompts): sharing
# from the start (MultiDiffusion-style) 30% both fighters right, last 50% 30%, last 25% 55%, last 10% 95%,
# only the final step 100%: while the passes share a latent each reads the other's fighter and drifts.
# The shared tail smooths the seam; raise it (--region-blend) if a seam shows, lower it if looks mix.
DEFAULT_REGION_BLEND = 0.1
FEATHER = 1 / 16  # soft edge, as a fraction of the latent's shorter side: hides the seam on big latents


@dataclass(frozen=True)
class RegionPass:
    """One copy of the picture: the adapters (name -> strength) active there, and where it counts."""

    region: str | None  # None: the part of the picture no region claims
    weights: dict[str, float]


@dataclass(frozen=True)
class RegionPlan:
    """A regional generation: its passes, their blend masks (P, 1, h, w) and each pass's text inputs."""

    passes: list[RegionPass]
    masks: torch.Tensor
    text_inputs: list[dict]


def plan_passes(selection: list[tuple[str, float, str | None]]) -> list[RegionPass]:
    """Passes for (adapter, strength, region) triples: one per region, each with the whole-picture LoRAs
    (region None or 'full') added, plus one for what the regions leave uncovered."""
    everywhere = {a: s for a, s, r in selection if r in (None, "full")}
    regions: dict[str, dict[str, float]] = {}
    for adapter, strength, region in selection:
        if region not in (None, "full"):
            regions.setdefault(region, dict(everywhere))[adapter] = strength
    passes = [RegionPass(r, w) for r, w in regions.items()]
    return [*passes, RegionPass(None, everywhere)]


def pass_prompt(prompt: str, region: str | None, confined: list[tuple[tuple[str, ...], str, str]]) -> str:
    """The prompt as one region's pass reads it. `confined` holds (trigger words, description, region)
    of the character LoRAs confined to regions; in this pass the trigger words of the *other* regions'
    characters are replaced by the description of this region's own character, so the pass paints its
    character into every role and the mask keeps only its region's. Why: without its LoRA a trigger word
    is an unknown word (on the toy base "johnhero facing kanehero" then collapses to one fighter), and
    describing the other character truthfully makes the words and this pass's LoRA fight over who wears
    which colours (the toy base, like SD, binds colours to fighters loosely); see docs/architecture.md.
    The rest of the picture (no region) names every character by its own description."""
    own = next((d for _, d, where in confined if where == region and d), None)
    for triggers, description, where in confined:
        stand_in = own or description
        if where == region or not stand_in:
            continue
        for trigger in triggers:
            prompt = re.sub(rf"(?<![\w]){re.escape(trigger)}(?![\w])", stand_in, prompt, flags=re.IGNORECASE)
    return prompt


def region_masks(passes: list[RegionPass], height: int, width: int) -> tuple[list[RegionPass], torch.Tensor]:
    """Blend weights (P, 1, height, width) that sum to 1 at every latent pixel, with feathered edges;
    passes whose mask is empty (e.g. the uncovered rest when regions cover everything) are dropped."""
    ys = (torch.arange(height) + 0.5) / height
    xs = (torch.arange(width) + 0.5) / width
    hard = []
    for p in passes:
        if p.region is None:
            continue
        x0, y0, x1, y1 = region_box(p.region)
        inside_y = (ys >= y0) & (ys < y1)
        inside_x = (xs >= x0) & (xs < x1)
        hard.append((inside_y[:, None] & inside_x[None, :]).float())
    covered = torch.stack(hard).amax(0) if hard else torch.zeros(height, width)
    for i, p in enumerate(passes):
        if p.region is None:
            hard.insert(i, 1 - covered)
    keep = [i for i, m in enumerate(hard) if m.sum() > 0]
    if not keep:
        raise Invalid("every region is smaller than one latent pixel; use larger regions or a larger image")
    masks = torch.stack([hard[i] for i in keep])[:, None]
    k = 2 * round(FEATHER * min(height, width) / 2) + 1
    if k > 1:
        masks = F.avg_pool2d(F.pad(masks, [k // 2] * 4, mode="replicate"), k, stride=1)
    masks = masks / masks.sum(0, keepdim=True).clamp_min(1e-6)
    return [passes[i] for i in keep], masks


@contextmanager
def regional_unet(
    unet: torch.nn.Module,
    passes: list[RegionPass],
    activate: Callable[[dict[str, float]], None],
    pass_inputs: list[dict],
    n: int,
) -> Iterator[None]:
    """Within the block the pipeline's batch holds every pass's copy of the n images, pass-major (for CFG
    twice: unconditional, then conditional); each call of `unet` runs each pass's rows with its adapters
    activated and its own text embeddings swapped in."""
    original = unet.forward
    had_own = "forward" in unet.__dict__
    count = len(passes)

    def rows(p: int, batch: int, device: torch.device) -> torch.Tensor:
        halves = batch // (count * n)  # 2 with CFG, 1 without
        starts = [h * count * n + p * n for h in range(halves)]
        return torch.cat([torch.arange(s, s + n) for s in starts]).to(device)

    def forward(sample, timestep, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        out = torch.empty_like(sample)
        for p, (region_pass, inputs) in enumerate(zip(passes, pass_inputs, strict=True)):
            idx = rows(p, sample.shape[0], sample.device)
            activate(region_pass.weights)
            t = timestep[idx] if torch.is_tensor(timestep) and timestep.ndim and timestep.shape[0] > 1 else timestep
            call_kwargs = dict(kwargs)
            added = kwargs.get("added_cond_kwargs")
            if added is not None:  # SDXL: pooled text embeddings and size ids, per row
                call_kwargs["added_cond_kwargs"] = {k: v[idx] for k, v in added.items()} | (
                    {"text_embeds": inputs["text_embeds"]} if "text_embeds" in inputs else {}
                )
            hidden = inputs.get("encoder_hidden_states", encoder_hidden_states[idx])
            out[idx] = original(sample[idx], t, hidden, *args, return_dict=False, **call_kwargs)[0]
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=out)
        return (out,)

    unet.forward = forward
    try:
        yield
    finally:
        if had_own:
            unet.forward = original
        else:
            del unet.forward


def blend_latents(latents: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Every pass's copy of each image replaced by the mask-weighted blend of all passes' copies."""
    count = masks.shape[0]
    per_pass = latents.view(count, -1, *latents.shape[1:])
    mixed = (per_pass * masks.to(latents.device, latents.dtype)[:, None]).sum(0)
    return mixed.repeat(count, 1, 1, 1)


def blend_now(step: int, total: int, scheduler, shared: float) -> bool:
    """Blend after this sampler step? Only in the last `shared` fraction of the steps, never in the middle
    of a second-order (Heun) step, always after the last one."""
    if step + 1 >= total:
        return True
    return step + 1 > (1 - shared) * total and getattr(scheduler, "state_in_first_order", True)
