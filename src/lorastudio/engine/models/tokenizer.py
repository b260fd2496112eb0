"""Build a CLIP-style BPE tokenizer locally, with whole-word tokens for a chosen vocabulary."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_clip_tokenizer(words: Iterable[str], max_length: int = 77) -> CLIPTokenizer:
    """A CLIP tokenizer whose byte alphabet covers any text and whose merges make each given word one token.

    The merges are learned by the `tokenizers` BPE trainer on the word list, so their priorities are
    consistent: hand-made prefix chains break when one word's merge pre-empts another's ("an" in "orange").
    """
    alphabet = list(bytes_to_unicode().values())
    corpus = sorted({w.lower() for w in words if w.isascii() and w.isalnum() and len(w) > 1})
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=2 * len(alphabet) + sum(len(w) for w in corpus) + 10,  # room for every merge
        min_frequency=1,
        end_of_word_suffix="</w>",
        initial_alphabet=alphabet,
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = {}
    for token in alphabet + [c + "</w>" for c in alphabet] + sorted(model["vocab"], key=model["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab.setdefault(BOS, len(vocab))
    vocab.setdefault(EOS, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
