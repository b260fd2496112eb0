"""Captions written for you: a caption job per dataset (validated at submit, run on a worker), which writes
captions marked "auto" and never replaces one the user wrote unless asked. Other areas use only what is
named here."""

from lorastudio.studio.captioning.schemas import AutoCaptionIn, CaptionerOut
from lorastudio.studio.captioning.service import (
    active_captioning,
    captioner_choices,
    run_captioning,
    submit_captioning,
)

__all__ = [
    "AutoCaptionIn",
    "CaptionerOut",
    "active_captioning",
    "captioner_choices",
    "run_captioning",
    "submit_captioning",
]
