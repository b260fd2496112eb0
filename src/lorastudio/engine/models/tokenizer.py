"""Build tokenizers locally (CLIP BPE, Qwen byte-level BPE, T5 unigram) with whole-word tokens for a chosen
vocabulary, so the tiny models need no download."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers, trainers
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


# The chat tokens Qwen2.5-VL's and Qwen3's templates use, plus Qwen2.5-VL's vision markers (its config names
# their ids), in the order the released tokenizers number them after <|endoftext|>.
QWEN_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_THINK = ("<think>", "</think>")  # Qwen3's reasoning markers: added tokens, but not special ones
# What Qwen3's chat template writes for one user message, with the same `enable_thinking` switch: FLUX.2
# [klein] asks for no thinking (an empty <think> block), Z-Image for thinking (no block).
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def build_qwen_tokenizer(texts: Iterable[str], max_length: int = 131072):
    """A byte-level BPE tokenizer with Qwen2's pre-tokenizer, chat tokens and chat template, whose merges make
    every word of `texts` one token, as Qwen's own vocabulary does for common English words.

    That keeps fixed prompt templates the length the pipelines assume: QwenImagePipeline drops the first 34
    tokens of its template, which is what Qwen2.5's tokenizer makes of the template's system prefix.
    """
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    # The chat tokens are whole tokens of their own, so they are no part of what the merges are learned from.
    texts = [part for text in texts for part in re.split("|".join(map(re.escape, QWEN_SPECIAL + QWEN_THINK)), text)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(
        vocab_size=len(pre_tokenizers.ByteLevel.alphabet()) + sum(len(t) for t in texts) + 10,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    for token in QWEN_SPECIAL + QWEN_THINK:
        vocab.setdefault(token, len(vocab))
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        model_max_length=max_length,
        additional_special_tokens=list(QWEN_SPECIAL[1:]),
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_THINK])
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    return tok


def build_t5_tokenizer(words: Iterable[str], max_length: int = 512, extra_ids: int = 100):
    """A T5-style (SentencePiece unigram) tokenizer: each given word is one "▁word" piece, and single
    characters cover any other ASCII text, so nothing is downloaded and no sentencepiece model is needed."""
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(33, 127)]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in sorted({w.lower() for w in words if w.isascii()})]
    pieces += [("▁" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]
    return T5Tokenizer(vocab=pieces, extra_ids=extra_ids, model_max_length=max_length)
