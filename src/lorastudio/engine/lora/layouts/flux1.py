"""FLUX.1: sd-scripts' layout (networks/lora_flux.py), which ComfyUI, Forge and diffusers' kohya loader read.

Stems name BFL's modules: `lora_unet_double_blocks_{i}_img_attn_qkv` holds diffusers' to_q/to_k/to_v as one
layer (rows q, k, v), `lora_unet_single_blocks_{i}_linear1` holds to_q/to_k/to_v/proj_mlp. A fused LoRA is
sd-scripts' split-qkv form: lora_down stacks each part's down, lora_up is block-diagonal (convert_flux_lora.py)."""

from lorastudio.engine.lora.layouts.rules import Layout, Rule

_D = r"transformer_blocks\.(?P<i>\d+)\."
_S = r"single_transformer_blocks\.(?P<i>\d+)\."

LAYOUT = Layout(
    name="kohya-flux1",
    network_module="networks.lora_flux",
    rules=(
        Rule(_D + r"attn\.to_(?P<slot>[qkv])", "double_blocks.{i}.img_attn.qkv", ("q", "k", "v")),
        Rule(_D + r"attn\.add_(?P<slot>[qkv])_proj", "double_blocks.{i}.txt_attn.qkv", ("q", "k", "v")),
        Rule(_D + r"attn\.to_out\.0", "double_blocks.{i}.img_attn.proj"),
        Rule(_D + r"attn\.to_add_out", "double_blocks.{i}.txt_attn.proj"),
        Rule(_D + r"ff\.net\.0\.proj", "double_blocks.{i}.img_mlp.0"),
        Rule(_D + r"ff\.net\.2", "double_blocks.{i}.img_mlp.2"),
        Rule(_D + r"ff_context\.net\.0\.proj", "double_blocks.{i}.txt_mlp.0"),
        Rule(_D + r"ff_context\.net\.2", "double_blocks.{i}.txt_mlp.2"),
        Rule(_D + r"norm1\.linear", "double_blocks.{i}.img_mod.lin"),
        Rule(_D + r"norm1_context\.linear", "double_blocks.{i}.txt_mod.lin"),
        Rule(_S + r"(?:attn\.to_|proj_)(?P<slot>q|k|v|mlp)", "single_blocks.{i}.linear1", ("q", "k", "v", "mlp")),
        Rule(_S + r"proj_out", "single_blocks.{i}.linear2"),
        Rule(_S + r"norm\.linear", "single_blocks.{i}.modulation.lin"),
        Rule(r"x_embedder", "img_in"),
        Rule(r"context_embedder", "txt_in"),
        Rule(r"time_text_embed\.timestep_embedder\.linear_1", "time_in.in_layer"),
        Rule(r"time_text_embed\.timestep_embedder\.linear_2", "time_in.out_layer"),
        Rule(r"time_text_embed\.text_embedder\.linear_1", "vector_in.in_layer"),
        Rule(r"time_text_embed\.text_embedder\.linear_2", "vector_in.out_layer"),
        Rule(r"time_text_embed\.guidance_embedder\.linear_1", "guidance_in.in_layer"),
        Rule(r"time_text_embed\.guidance_embedder\.linear_2", "guidance_in.out_layer"),
        Rule(r"proj_out", "final_layer.linear"),
        # norm_out.linear is left unnamed: BFL's final adaLN stacks (shift, scale), diffusers' (scale, shift).
    ),
    widths={"mlp": 4},
)
