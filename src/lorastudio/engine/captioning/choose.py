"""Which captioner a name means: "toyworld" (the detectors' exact captions) or "model" (the configured
BLIP or Florence-2, LORASTUDIO_CAPTIONER). Names are looked up, never opened as paths."""

from __future__ import annotations

from lorastudio.config import Settings
from lorastudio.engine.captioning.captions import Captioner
from lorastudio.errors import Invalid

TOY_CAPTIONER = "toyworld"  # the toy world's detectors: exact captions of its pictures
MODEL_CAPTIONER = "model"  # the configured BLIP or Florence-2 (LORASTUDIO_CAPTIONER)
CAPTIONERS = (TOY_CAPTIONER, MODEL_CAPTIONER)
CAPTIONER_LABELS = {TOY_CAPTIONER: "Toy world (exact, from the detectors)", MODEL_CAPTIONER: "Captioning model"}


def default_captioner(settings: Settings) -> str:
    """The configured model when there is one, else the toy world's captioner."""
    return MODEL_CAPTIONER if settings.captioner else TOY_CAPTIONER


def captioner_problem(name: str, settings: Settings) -> str | None:
    """Why the named captioner cannot be used here (None: it can), in words a user can act on."""
    try:
        captioner_for(name, settings)
    except Invalid as exc:
        return str(exc)
    return None


def captioner_for(name_or_setting: str | None, settings: Settings) -> Captioner:
    """The captioner a name means: "toyworld", "model" (or the configured LORASTUDIO_CAPTIONER value itself);
    another name is refused with the choices."""
    name = (name_or_setting or "").strip()
    if name.lower() == TOY_CAPTIONER:
        from lorastudio.engine.captioning.toy import ToyCaptioner

        return ToyCaptioner()
    if name.lower() == MODEL_CAPTIONER or (settings.captioner and name == settings.captioner.strip()):
        from lorastudio.engine.captioning.models import HOW_TO, TransformersCaptioner

        if not settings.captioner:
            raise Invalid(f"no captioning model is configured; {HOW_TO}", setting="captioner")
        return TransformersCaptioner(settings.captioner, settings)
    raise Invalid(f"unknown captioner {name[:40]!r}; use one of: {', '.join(CAPTIONERS)}", setting="captioner")
