"""Fighting styles: the guide's four pre-built styles on every fresh install, and custom ones.

A style's trigger word works in prompts at once: with no LoRA file for the base in use, it expands to
the style's phrases (words the base model already understands); with one, the LoRA does the work.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.engine import FIGHTING_STYLE
from lorastudio.errors import NotFound
from lorastudio.studio.db import Character, FightingStyle, Lora, writes
from lorastudio.studio.library import check_new_trigger, suggest_trigger
from lorastudio.studio.styles.schemas import StyleIn, StyleOut


@dataclass(frozen=True)
class Prebuilt:
    """One of the guide's pre-built styles."""

    name: str
    trigger: str
    description: str
    phrases: tuple[str, ...]
    toy_style: str  # the toy world's style of the same name (engine/toyworld/world.py)


PREBUILT = (
    Prebuilt(
        "Professional Boxing",
        "boxingstyle",
        "boxing: high guard, jabs and hooks, boxing gloves",
        ("boxing", "guard", "jab", "gloves"),
        "boxing",
    ),
    Prebuilt(
        "Kung Fu Martial Arts",
        "kungfustyle",
        "kung fu: deep horse stance, crane kicks, open hands",
        ("kung fu", "horse stance", "crane kick"),
        "kungfu",
    ),
    Prebuilt(
        "Mixed Martial Arts",
        "mmastyle",
        "mixed martial arts: high kicks and grappling",
        ("mma", "high kick", "grapple"),
        "mma",
    ),
    Prebuilt(
        "Sword Combat",
        "swordstyle",
        "sword combat: thrusts and parries with a steel blade",
        ("sword", "thrust", "parry", "blade"),
        "sword",
    ),
)


@writes
def seed_prebuilt(session: Session) -> None:
    """Create the four pre-built styles if a fresh install lacks them (idempotent)."""
    have = set(session.scalars(select(FightingStyle.trigger).where(FightingStyle.builtin)))
    for p in PREBUILT:
        if p.trigger not in have:
            session.add(
                FightingStyle(
                    owner_id=None,
                    name=p.name,
                    description=p.description,
                    trigger=p.trigger,
                    recommended_strength=FIGHTING_STYLE.recommended_strength,
                    phrases=list(p.phrases),
                    builtin=True,
                )
            )


def _visible(owner_id: int):
    return (FightingStyle.owner_id == owner_id) | FightingStyle.owner_id.is_(None)


def _out(session: Session, style: FightingStyle) -> StyleOut:
    lora_id = session.scalar(select(Lora.id).where(Lora.style_id == style.id, ~Lora.deleted).order_by(Lora.id))
    return StyleOut.model_validate(style).model_copy(update={"lora_id": lora_id})


def list_styles(session: Session, *, owner_id: int) -> list[StyleOut]:
    """The pre-built styles, then the user's own."""
    rows = session.scalars(
        select(FightingStyle).where(_visible(owner_id)).order_by(~FightingStyle.builtin, FightingStyle.id)
    )
    return [_out(session, s) for s in rows]


def get_style_row(session: Session, *, owner_id: int, style_id: int) -> FightingStyle:
    """The style row, or NotFound (another user's style is not found either)."""
    style = session.scalar(select(FightingStyle).where(FightingStyle.id == style_id, _visible(owner_id)))
    if style is None:
        raise NotFound(f"fighting style {style_id} not found")
    return style


def get_style(session: Session, *, owner_id: int, style_id: int) -> StyleOut:
    """One style."""
    return _out(session, get_style_row(session, owner_id=owner_id, style_id=style_id))


def taken_triggers(session: Session, owner_id: int) -> set[str]:
    """Trigger words already used by the user's characters and styles (and the pre-built styles)."""
    chars = session.scalars(select(Character.trigger).where(Character.owner_id == owner_id))
    styles = session.scalars(select(FightingStyle.trigger).where(_visible(owner_id)))
    return {t.lower() for t in [*chars, *styles]}


@writes
def create_style(session: Session, *, owner_id: int, data: StyleIn) -> StyleOut:
    """A custom fighting style (train it from 20-40 images with a fighting_style training job)."""
    taken = taken_triggers(session, owner_id)
    trigger = check_new_trigger(data.trigger, taken) if data.trigger else suggest_trigger(data.name, taken, "style")
    style = FightingStyle(
        owner_id=owner_id,
        name=data.name.strip(),
        description=data.description.strip(),
        trigger=trigger,
        recommended_strength=data.recommended_strength,
        phrases=[p.strip() for p in data.phrases if p.strip()],
        builtin=False,
    )
    session.add(style)
    session.flush()
    return _out(session, style)


@writes
def delete_style(session: Session, *, owner_id: int, style_id: int) -> None:
    """Delete a custom style (the pre-built ones stay); its LoRAs stay in the library."""
    style = get_style_row(session, owner_id=owner_id, style_id=style_id)
    if style.builtin:
        from lorastudio.errors import Conflict

        raise Conflict("the pre-built styles cannot be deleted")
    for lora in session.scalars(select(Lora).where(Lora.style_id == style.id)):
        lora.style_id = None
    session.delete(style)
