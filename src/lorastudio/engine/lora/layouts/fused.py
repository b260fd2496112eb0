"""One LoRA on a fused layer (rows of several diffusers layers stacked) and back, as sd-scripts does it.

Fusing parts of rank r: lora_down stacks the parts' downs (rank k*r), lora_up is block-diagonal, and the
alpha grows k-fold so that alpha/rank stays each part's scale (sd-scripts' convert_flux_lora.py sets it to
the new rank for parts at scale 1). Splitting takes such a block-diagonal up apart again, as diffusers'
kohya FLUX loader does; a dense fused LoRA (one down shared by all rows) gives each part the whole down."""

from __future__ import annotations

import torch

Part = tuple[torch.Tensor, torch.Tensor, float]  # (lora_A / down, lora_B / up, scale alpha/rank)


def fuse(parts: list[Part | None], rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(down, up, alpha) of the fused layer; a None part (a layer without LoRA) gets zero weights."""
    present = [p for p in parts if p is not None]
    ranks = {int(a.shape[0]) for a, _, _ in present}
    scales = {s for _, _, s in present}
    a0 = present[0][0]
    if len(ranks) == 1 and len(scales) == 1:
        # sd-scripts' form: every part keeps its rank r (a missing one is zero), so readers can split it again
        r, scale = ranks.pop(), scales.pop()
        filled = [
            p or (a0.new_zeros(r, *a0.shape[1:]), a0.new_zeros(n, r), scale) for p, n in zip(parts, rows, strict=True)
        ]
        down = torch.cat([a for a, _, _ in filled])
        up = torch.block_diag(*[b.reshape(b.shape[0], -1) for _, b, _ in filled])
        return down, up, scale * down.shape[0]
    # Parts at different ranks or scales: each part's scale goes into its up block, at alpha = rank (scale 1).
    down = torch.cat([a for a, _, _ in present])
    up = a0.new_zeros(sum(rows), down.shape[0])
    row, col = 0, 0
    for part, n in zip(parts, rows, strict=True):
        if part is not None:
            a, b, scale = part
            up[row : row + n, col : col + a.shape[0]] = b.reshape(n, -1) * scale
            col += a.shape[0]
        row += n
    return down, up, float(down.shape[0])


def split_fused(
    down: torch.Tensor, up: torch.Tensor, alpha: float, rows: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Each part's (down, up, alpha) of a fused layer's LoRA, as the layers diffusers keeps apart."""
    rank, k = int(down.shape[0]), len(rows)
    starts = [sum(rows[:j]) for j in range(k)]
    r = rank // k
    spans = list(enumerate(zip(starts, rows, strict=True)))
    # sd-scripts' block-diagonal form: part j's rows read only its own r columns of the rank
    blocks = rank % k == 0 and not any(
        up[s : s + n, c * r : (c + 1) * r].any() for j, (s, n) in spans for c in range(k) if c != j
    )
    if blocks:
        scale = alpha / rank
        return [
            (down[j * r : (j + 1) * r].clone(), up[s : s + n, j * r : (j + 1) * r].clone(), scale * r)
            for j, (s, n) in spans
        ]
    return [(down.clone(), up[s : s + n].clone(), alpha) for s, n in zip(starts, rows, strict=True)]
