"""Z-Image: Qwen3's second-to-last hidden states into a single-stream transformer over 2x2 patches.

Called as ZImagePipeline calls it: the prompt in Qwen3's chat template (thinking on), each prompt's tokens
without padding, the batch as LISTS (one (C, 1, h, w) latent and one (L, D) caption per image: the
transformer pads and masks them itself). Its time runs the other way, t = 1 - sigma (the pipeline passes
(1000 - timestep) / 1000), and it predicts image - noise, so the velocity in our convention is its output
negated. CFG is the pipeline's `cond + scale * (cond - uncond)`: its scale 0 is no guidance and its 4.0
is 5.0 in the usual convention, so a scale copied from Z-Image's own examples gives their picture."""

from __future__ import annotations

import torch

from lorastudio.engine.models.denoisers.common import Cond, Denoiser


class ZImageDenoiser(Denoiser):
    """ZImageTransformer2DModel, as ZImagePipeline calls it."""

    patch = 2

    def encode(self, prompts: list[str]) -> list[Cond]:
        """Qwen3's second-to-last layer per prompt, at the prompt's own token count."""
        device = next(self.pipe.text_encoder.parameters()).device
        tokens = self.family.text_tokens
        # A copy: the pipeline writes the chat-templated text back into the list it is given.
        embeds, _ = self.pipe.encode_prompt(
            prompt=list(prompts),
            device=device,
            do_classifier_free_guidance=False,
            max_sequence_length=tokens,
        )
        return [{"hidden": e[None]} for e in embeds]

    def uses_cfg(self, scale: float) -> bool:
        """Z-Image's pipeline guides at any scale above 0."""
        return scale > 0

    def combine_cfg(self, uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
        """The pipeline's CFG, extrapolating from the conditional prediction."""
        return cond + scale * (cond - uncond)

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, conds: list[Cond], *, guidance: float | None = None, extra=None
    ) -> torch.Tensor:
        """Velocity (noise - image) at sigma t for latents x (B, 16, h, w)."""
        model = self.module
        dtype = next(model.parameters()).dtype
        latents = list(x.to(dtype).unsqueeze(2).unbind(0))
        captions = [c["hidden"][0].to(x.device, dtype) for c in conds]
        out = model(latents, (1 - t).to(x.device, dtype), captions, return_dict=False)[0]
        return -torch.stack(out).squeeze(2)
