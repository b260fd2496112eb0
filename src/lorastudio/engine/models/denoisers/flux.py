"""FLUX.1 [dev]/[schnell]: CLIP-L pooled + T5-XXL tokens into a joint transformer over 2x2-packed latents.

Called as FluxPipeline calls it: timestep = sigma (the pipeline passes t/1000), image ids (0, row, col) per
token, text ids zero, and [dev]'s distilled guidance as an input (training uses 1.0, as sd-scripts'
`--guidance_scale 1.0` for [dev] LoRAs; [schnell] has no guidance embedding)."""

from __future__ import annotations

import torch

from lorastudio.engine.models.denoisers.common import Cond, Denoiser, pack, stack, unpack


class FluxDenoiser(Denoiser):
    """FluxTransformer2DModel, as FluxPipeline calls it."""

    patch = 2

    def encode(self, prompts: list[str]) -> list[Cond]:
        """CLIP-L's pooled embedding and T5's token embeddings per prompt."""
        device = next(self.pipe.text_encoder_2.parameters()).device
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=device, max_sequence_length=self.family.text_tokens
        )
        return [{"hidden": embeds[i : i + 1], "pooled": pooled[i : i + 1]} for i in range(len(prompts))]

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, conds: list[Cond], *, guidance: float | None = None, extra=None
    ) -> torch.Tensor:
        """Velocity (noise - image) at sigma t for latents x (B, 16, h, w)."""
        model = self.module
        b, _, h, w = x.shape
        dtype = next(model.parameters()).dtype
        hidden = stack(conds, "hidden").to(x.device, dtype)
        img_ids = _image_ids(h // 2, w // 2, x.device, dtype)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=x.device, dtype=dtype)
        embed = None
        if model.config.guidance_embeds:
            embed = torch.full((b,), 1.0 if guidance is None else guidance, device=x.device, dtype=torch.float32)
        out = model(
            hidden_states=pack(x).to(dtype),
            timestep=t.to(x.device, dtype),
            guidance=embed,
            pooled_projections=stack(conds, "pooled").to(x.device, dtype),
            encoder_hidden_states=hidden,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        return unpack(out, h, w)


def _image_ids(rows: int, cols: int, device, dtype) -> torch.Tensor:
    """FLUX's position ids of the image tokens: (0, row, col), row-major."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] += torch.arange(rows)[:, None]
    ids[..., 2] += torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3).to(device, dtype)
