"""What every tiny test model shares: the words its tokenizers give whole tokens, and the tiny CLIP config."""

from __future__ import annotations

from transformers import CLIPTextConfig

# Words that get whole-word tokens; anything else still tokenizes (byte-level fallback).
TINY_WORDS = """
a an the of in on at with and photo portrait character person man woman hero villain fighter
fighting style martial arts boxing kungfu mma sword pose action stance punch kick jab block
background street dojo arena forest night red blue green yellow black white orange purple
johnhero kanehero boxingstyle kungfustyle mmastyle swordstyle square circle stripe
""".split()


def clip_text_config(vocab_size: int, hidden: int, projection: int | None = None) -> CLIPTextConfig:
    """A tiny CLIP text config: 2 layers, 2 heads, the given width and token table; the special tokens are last."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=projection or hidden,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act="quick_gelu",
    )
