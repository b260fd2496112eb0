"""Build a CLIP-style BPE tokenizer locally, with whole-word tokens for a chosen vocabulary."""

from __future__ import annotations

from collections.abc import Iterable

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_clip_tokenizer(words: Iterable[str], max_length: int = 77) -> CLIPTokenizer:
    """A CLIP tokenizer whose byte alphabet covers any text and whose merges make each given word one token."""
    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted({w.lower() for w in words if w.isascii() and w.isalnum() and len(w) > 1}):
        # Left-to-right prefix merges: "kick" -> k+i, ki+c, kic+k</w>. Shared prefixes merge once.
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            piece = ch + "</w>" if i == len(word) - 1 else ch
            merged = current + piece
            if merged not in vocab:
                merges.append((current, piece))
                vocab[merged] = len(vocab)
            current = merged
    vocab.setdefault(BOS, len(vocab))
    vocab.setdefault(EOS, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
