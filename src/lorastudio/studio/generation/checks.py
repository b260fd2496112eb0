"""What the Studio shows while a scene is composed, before anything runs: the engine's own prompt warnings
(missing trigger words, strengths off the guide's ranges, the strength budget, two characters over the same
region) read from the library's rows, so no LoRA file is loaded to show them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.engine import add_missing_triggers, has_word, prompt_warnings
from lorastudio.studio.db import Lora
from lorastudio.studio.generation.schemas import GenerationIn
from lorastudio.studio.generation.service import resolve


@dataclass(frozen=True)
class _Row:
    """A library row as the engine's warnings read a loaded LoRA."""

    name: str
    kind: str | None
    triggers: tuple[str, ...]
    description: str


@dataclass
class GenerationCheck:
    """The warnings for a scene as composed, and the trigger words the engine will add to its prompt."""

    warnings: list[str]
    added_triggers: list[str]
    loras: list[str]  # names of every LoRA the scene will use, the styles its prompt brings included


def check_generation(session: Session, settings: Settings, *, owner_id: int, data: GenerationIn) -> GenerationCheck:
    """The warnings a generation of `data` would give (raises Invalid/NotFound as a submit would)."""
    request = resolve(session, settings, owner_id=owner_id, data=data)
    chosen = []
    for sel in request.loras:
        row = session.get(Lora, sel.lora_id)
        strength = sel.strength if sel.strength is not None else (row.recommended_strength or 1.0)
        chosen.append(
            (
                sel.model_copy(update={"lora": row.name, "strength": strength}),
                _Row(row.name, row.kind, tuple(row.trigger_words), row.description or ""),
            )
        )
    prompt = request.prompt
    added: list[str] = []
    if data.add_triggers:
        wanted = [t for sel, lora in chosen if (sel.strength or 0) > 0 for t in lora.triggers]
        prompt = add_missing_triggers(prompt, wanted)
        added = list(dict.fromkeys(t for t in wanted if not has_word(request.prompt, t)))
    return GenerationCheck(prompt_warnings(prompt, chosen), added, [lora.name for _, lora in chosen])
