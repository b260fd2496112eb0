"""SD1.5 and SDXL: CLIP token embeddings (SDXL: two encoders, pooled embedding and size ids) into a UNet."""

from __future__ import annotations

import torch

from lorastudio.engine.models.denoisers.common import Cond, Denoiser, stack
from lorastudio.engine.models.textenc import encode_text


class UNetDenoiser(Denoiser):
    """UNet2DConditionModel, as the SD pipelines call it."""

    def encode(self, prompts: list[str]) -> list[Cond]:
        """Last CLIP layer (SD1.5), or both encoders' penultimate layers and the pooled embedding (SDXL)."""
        cond = encode_text(self.base.tokenizers, self.base.text_encoders, prompts)
        out: list[Cond] = []
        for i in range(len(prompts)):
            one = {"hidden": cond.hidden[i : i + 1]}
            if cond.pooled is not None:
                one["pooled"] = cond.pooled[i : i + 1]
            out.append(one)
        return out

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(channels, h, w) as the UNet takes them."""
        factor = self.pipe.vae_scale_factor
        return self.module.config.in_channels, height // factor, width // factor

    def predict(
        self, x: torch.Tensor, t: torch.Tensor, conds: list[Cond], *, guidance: float | None = None, extra=None
    ) -> torch.Tensor:
        """Noise (or v) at integer timesteps t; `extra` holds SDXL's size ids (B, 6)."""
        unet = self.module
        dtype = next(unet.parameters()).dtype
        kwargs = {}
        if "pooled" in conds[0]:
            kwargs["added_cond_kwargs"] = {"text_embeds": stack(conds, "pooled").to(x.device, dtype), "time_ids": extra}
        hidden = stack(conds, "hidden").to(x.device, dtype)
        return unet(x.to(dtype), t, hidden, return_dict=False, **kwargs)[0]
