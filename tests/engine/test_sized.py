"""The SD-sized benchmark models have the published architectures: parameter counts as released.

Built on the meta device (no memory, no weights), so the check is fast enough for the default run.
"""

import pytest
from accelerate import init_empty_weights

from lorastudio.engine.models.base import family_from_unet_config
from lorastudio.engine.models.sized import build_sized

# Millions of parameters of runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0;
# the text encoders' token table is CLIP's 49408 rows.
PUBLISHED = {
    "sd15-sized": {"unet": 859.52, "vae": 83.65, "text_encoder": 123.06},
    "sdxl-sized": {"unet": 2567.46, "vae": 83.65, "text_encoder": 123.06, "text_encoder_2": 694.66},
}


def millions(module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


@pytest.mark.parametrize("name", PUBLISHED)
def test_sized_models_have_the_published_shapes(name):
    with init_empty_weights():
        pipe = build_sized(name)
    got = {part: millions(getattr(pipe, part)) for part in PUBLISHED[name]}
    assert got == PUBLISHED[name]
    assert family_from_unet_config(dict(pipe.unet.config)) == name.removesuffix("-sized")
    ids = pipe.tokenizer("johnhero, kungfustyle").input_ids
    assert ids[0] == pipe.text_encoder.config.bos_token_id and ids[-1] == pipe.text_encoder.config.eos_token_id


def test_an_unknown_sized_model_is_named():
    with pytest.raises(ValueError, match="sd15-sized, sdxl-sized"):
        build_sized("sd3-sized")
