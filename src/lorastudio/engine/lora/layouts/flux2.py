"""FLUX.2: musubi-tuner's layout (networks/lora_flux_2.py on BFL's flux2 model), read by diffusers'
kohya FLUX.2 loader: BFL module names, the double blocks' q/k/v fused as in FLUX.1; the single blocks'
linear1 is one layer in diffusers too (attn.to_qkv_mlp_proj)."""

from lorastudio.engine.lora.layouts.rules import Layout, Rule

_D = r"transformer_blocks\.(?P<i>\d+)\."
_S = r"single_transformer_blocks\.(?P<i>\d+)\."

LAYOUT = Layout(
    name="kohya-flux2",
    network_module="networks.lora_flux_2",
    rules=(
        Rule(_D + r"attn\.to_(?P<slot>[qkv])", "double_blocks.{i}.img_attn.qkv", ("q", "k", "v")),
        Rule(_D + r"attn\.add_(?P<slot>[qkv])_proj", "double_blocks.{i}.txt_attn.qkv", ("q", "k", "v")),
        Rule(_D + r"attn\.to_out\.0", "double_blocks.{i}.img_attn.proj"),
        Rule(_D + r"attn\.to_add_out", "double_blocks.{i}.txt_attn.proj"),
        Rule(_D + r"ff\.linear_in", "double_blocks.{i}.img_mlp.0"),
        Rule(_D + r"ff\.linear_out", "double_blocks.{i}.img_mlp.2"),
        Rule(_D + r"ff_context\.linear_in", "double_blocks.{i}.txt_mlp.0"),
        Rule(_D + r"ff_context\.linear_out", "double_blocks.{i}.txt_mlp.2"),
        Rule(_S + r"attn\.to_qkv_mlp_proj", "single_blocks.{i}.linear1"),
        Rule(_S + r"attn\.to_out", "single_blocks.{i}.linear2"),
        Rule(r"x_embedder", "img_in"),
        Rule(r"context_embedder", "txt_in"),
        Rule(r"time_guidance_embed\.timestep_embedder\.linear_1", "time_in.in_layer"),
        Rule(r"time_guidance_embed\.timestep_embedder\.linear_2", "time_in.out_layer"),
        Rule(r"time_guidance_embed\.guidance_embedder\.linear_1", "guidance_in.in_layer"),
        Rule(r"time_guidance_embed\.guidance_embedder\.linear_2", "guidance_in.out_layer"),
        Rule(r"double_stream_modulation_img\.linear", "double_stream_modulation_img.lin"),
        Rule(r"double_stream_modulation_txt\.linear", "double_stream_modulation_txt.lin"),
        Rule(r"single_stream_modulation\.linear", "single_stream_modulation.lin"),
        Rule(r"proj_out", "final_layer.linear"),
    ),
)
