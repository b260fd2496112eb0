"""What a LoRA file says about itself, as one typed record read and written here only.

Every metadata value is untrusted (a file may come from anywhere): a value that does not parse, or is
out of range, is ignored and a warning says so; nothing here raises for bad metadata.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from lorastudio.engine.kinds import KINDS
from lorastudio.engine.models.families import FAMILIES
from lorastudio.engine.prompts import check_trigger
from lorastudio.errors import Invalid

# Our own metadata keys, beside kohya's ss_* and the model spec's modelspec.*.
KEYS = {
    "kind": "lorastudio_kind",
    "trigger_words": "lorastudio_trigger_words",
    "description": "lorastudio_description",
    "recommended_strength": "lorastudio_recommended_strength",
    "family": "lorastudio_base_family",
    "preset": "lorastudio_preset",
    "target": "lorastudio_target",
    "layers_per_block": "lorastudio_layers_per_block",
    "training_seconds": "lorastudio_training_seconds",
    "steps_per_second": "lorastudio_steps_per_second",
    "final_loss": "lorastudio_final_loss",
    "version": "lorastudio_version",
}
MAX_DESCRIPTION = 300
STRENGTH_RANGE = (-4.0, 4.0)  # what a selection accepts; a recommendation outside it is ignored


@dataclass
class TrainingFacts:
    """How the LoRA was trained, where the file says so."""

    steps: int | None = None
    images: int | None = None
    seconds: float | None = None
    final_loss: float | None = None
    base_model: str | None = None
    preset: str | None = None


@dataclass
class LoraInfo:
    """The typed record of a LoRA file's own claims (plus rank/alpha read from its tensors)."""

    kind: str | None = None
    trigger_words: list[str] = field(default_factory=list)
    description: str = ""
    recommended_strength: float | None = None
    family: str | None = None  # the family the file claims; fit is decided from shapes (lora/fit.py)
    rank: int | None = None
    alpha: float | None = None
    tags: list[tuple[str, int]] = field(default_factory=list)  # most frequent caption tags
    training: TrainingFacts = field(default_factory=TrainingFacts)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    def to_metadata(self) -> dict[str, str]:
        """Our keys (and the model spec's description/trigger) for the fields this record holds."""
        meta = {
            KEYS["trigger_words"]: json.dumps(self.trigger_words),
            KEYS["description"]: self.description,
            "modelspec.description": self.description,
        }
        if self.trigger_words:
            meta["modelspec.trigger_phrase"] = ", ".join(self.trigger_words)
        if self.kind:
            meta[KEYS["kind"]] = self.kind
        if self.recommended_strength is not None:
            meta[KEYS["recommended_strength"]] = f"{self.recommended_strength:g}"
        if self.family:
            meta[KEYS["family"]] = self.family
        return meta


def check_description(text: str) -> str:
    """A description is plain words of at most 300 characters (the look of the subject)."""
    text = " ".join(str(text).split())
    if len(text) > MAX_DESCRIPTION:
        raise Invalid(f"a description is at most {MAX_DESCRIPTION} characters (got {len(text)}); keep it to the look")
    return text


def read_info(metadata: dict[str, str], rank: int | None = None, alpha: float | None = None) -> LoraInfo:
    """Parse a file's metadata leniently: bad values are dropped with a warning each."""
    info = LoraInfo(rank=rank, alpha=alpha)
    warn = info.warnings.append
    kind = metadata.get(KEYS["kind"])
    if kind:
        if kind in KINDS:
            info.kind = kind
        else:
            warn(f"ignored an unknown kind {kind[:40]!r} in the file's metadata")
    info.trigger_words = _triggers(metadata, warn)
    info.description = _description(metadata, warn)
    info.recommended_strength = _strength(metadata.get(KEYS["recommended_strength"]), warn)
    family = metadata.get(KEYS["family"])
    if family:
        if family in FAMILIES:
            info.family = family
        else:
            warn(f"ignored an unknown base family {family[:40]!r} in the file's metadata")
    info.tags = top_tags(metadata.get("ss_tag_frequency"))
    info.training = TrainingFacts(
        steps=_number(metadata.get("ss_max_train_steps") or metadata.get("ss_steps"), int),
        images=_number(metadata.get("ss_num_train_images"), int),
        seconds=_number(metadata.get(KEYS["training_seconds"]), float),
        final_loss=_number(metadata.get(KEYS["final_loss"]), float),
        base_model=(metadata.get("ss_sd_model_name") or None),
        preset=(metadata.get(KEYS["preset"]) or None),
    )
    return info


def _triggers(metadata: dict[str, str], warn) -> list[str]:
    raw = metadata.get(KEYS["trigger_words"])
    candidates: list = []
    if raw:
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, list):
            candidates = parsed
        elif isinstance(parsed, str):
            candidates = [parsed]
        else:
            warn("ignored the trigger words in the file's metadata: not a JSON list of words")
    elif metadata.get("modelspec.trigger_phrase"):
        candidates = [w.strip() for w in metadata["modelspec.trigger_phrase"].split(",")]
    words = []
    for word in candidates:
        try:
            words.append(check_trigger(word))
        except Invalid:
            warn(f"ignored a trigger word that is not one short word: {str(word)[:40]!r}")
    return list(dict.fromkeys(words))


def _description(metadata: dict[str, str], warn) -> str:
    text = metadata.get(KEYS["description"]) or metadata.get("modelspec.description") or ""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > MAX_DESCRIPTION:
        warn(f"the file's description is {len(text)} characters; only the first {MAX_DESCRIPTION} are used")
        text = text[:MAX_DESCRIPTION]
    return text


def _strength(raw: str | None, warn) -> float | None:
    if raw in (None, ""):
        return None
    value = _number(raw, float)
    low, high = STRENGTH_RANGE
    if value is None or not low <= value <= high or value == 0:
        warn(f"ignored the recommended strength {raw[:20]!r} in the file's metadata (not a number from -4 to 4)")
        return None
    return value


def _number(raw: str | None, kind: type) -> Any:
    if raw in (None, ""):
        return None
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def top_tags(raw: str | None, n: int = 10) -> list[tuple[str, int]]:
    """The n most frequent caption tags from kohya's ss_tag_frequency ({folder: {tag: count}})."""
    if not raw:
        return []
    try:
        data = json.loads(raw)
        counts: Counter[str] = Counter()
        for tags in data.values():
            counts.update({str(k): int(v) for k, v in tags.items()})
        return counts.most_common(n)
    except (ValueError, AttributeError, TypeError, RecursionError):
        return []
