"""Captions written for you: the toy world's exact captioner, BLIP and Florence-2 in transformers' classes,
the rule that finishes a caption (trigger word first, the character's identity left out), and captioning a
folder of images."""

from lorastudio.engine.captioning.captions import (
    LEAVE_OUT_REASON,
    Captioner,
    CaptionReport,
    caption_folder,
    caption_images,
    finish_caption,
    identity_of,
    leave_out_words,
)
from lorastudio.engine.captioning.choose import (
    CAPTIONER_LABELS,
    CAPTIONERS,
    MODEL_CAPTIONER,
    TOY_CAPTIONER,
    captioner_for,
    captioner_problem,
    default_captioner,
)

__all__ = [
    "CAPTIONERS",
    "CAPTIONER_LABELS",
    "LEAVE_OUT_REASON",
    "MODEL_CAPTIONER",
    "TOY_CAPTIONER",
    "CaptionReport",
    "Captioner",
    "caption_folder",
    "caption_images",
    "captioner_for",
    "captioner_problem",
    "default_captioner",
    "finish_caption",
    "identity_of",
    "leave_out_words",
]
