"""Qwen-Image: musubi-tuner's layout (networks/lora_qwen_image.py), which diffusers' Qwen-Image loader and
ComfyUI read: its model keeps diffusers' module names, so a stem is `lora_unet_` + the diffusers path with
'.' -> '_' (lora_unet_transformer_blocks_0_attn_to_q), nothing fused."""

from lorastudio.engine.lora.layouts.rules import Layout, identity_rules

LAYOUT = Layout(
    name="kohya-qwen-image",
    network_module="networks.lora_qwen_image",
    rules=identity_rules(
        r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)",
        r"transformer_blocks\.\d+\.(img_mlp|txt_mlp)\.net\.(0\.proj|2)",
        r"transformer_blocks\.\d+\.(img_mod|txt_mod)\.1",
        # the top-level layers diffusers' Qwen-Image loader maps back from kohya names
        r"img_in|txt_in|proj_out|norm_out\.linear|time_text_embed\.timestep_embedder\.linear_[12]",
    ),
)
