"""What a user hands the new families' paths is hostile: damaged LoRA files, malformed model folders and sizes the
transformers cannot draw are refused in words, never with a traceback."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from lorastudio.config import Settings
from lorastudio.engine.generation.generate import GenerateRequest, generate
from lorastudio.engine.generation.pipecache import PipelineCache
from lorastudio.engine.lora.file import read_lora
from lorastudio.engine.models.base import list_base_models
from lorastudio.engine.models.tiny import ensure_tiny_model
from lorastudio.errors import Invalid

DAMAGED = {
    "a 0-d weight": {
        "lora_unet_layers_0_attention_to_q.lora_down.weight": torch.tensor(1.0),
        "lora_unet_layers_0_attention_to_q.lora_up.weight": torch.ones(4, 2),
    },
    "an alpha of three numbers": {
        "lora_unet_a.lora_down.weight": torch.ones(2, 4),
        "lora_unet_a.lora_up.weight": torch.ones(4, 2),
        "lora_unet_a.alpha": torch.ones(3),
    },
    "rank 0": {
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.ones(0, 4),
        "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.ones(4, 0),
    },
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_lora_file_is_refused_as_damaged(case, tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file(DAMAGED[case], str(path))
    with pytest.raises(Invalid, match="damaged"):
        read_lora(path)


@pytest.mark.parametrize(
    "index, config",
    [
        ({"_class_name": ["FluxPipeline"]}, {}),
        ({"_class_name": "FluxPipeline"}, []),
        ({"_class_name": "FluxPipeline"}, {"num_attention_heads": "x", "attention_head_dim": "y"}),
    ],
)
def test_a_malformed_model_folder_is_left_out_of_the_list(index, config, tmp_path):
    settings = Settings(home=tmp_path)
    folder = settings.models_dir / "odd" / "transformer"
    folder.mkdir(parents=True)
    (folder.parent / "model_index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(config))
    assert "odd" not in [row["name"] for row in list_base_models(settings)]


def test_a_size_the_transformer_cannot_draw_is_refused_with_the_sizes_it_can(settings):
    ensure_tiny_model("tiny-flux1", settings.models_dir)
    with pytest.raises(Invalid, match="multiples of 16; use 64x64 or 80x80"):
        generate(PipelineCache(settings), GenerateRequest(prompt="a", base="tiny-flux1", width=72, height=72))
