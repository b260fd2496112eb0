"""The Character Manager: characters with a trigger word, a reference image and their LoRA versions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.engine import check_description
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.characters.schemas import CharacterIn, CharacterOut, CharacterUpdate
from lorastudio.studio.datasets import check_image_upload
from lorastudio.studio.db import Character, Lora, get_owned, writes
from lorastudio.studio.library import check_new_trigger, suggest_trigger, versions_of
from lorastudio.studio.styles import taken_triggers


def to_out(session: Session, character: Character) -> CharacterOut:
    """The API form, with the character's LoRA and its versions."""
    lora_id = session.scalar(
        select(Lora.id).where(Lora.character_id == character.id, ~Lora.deleted).order_by(Lora.id.desc())
    )
    return CharacterOut.model_validate(character).model_copy(
        update={
            "lora_id": lora_id,
            "versions": versions_of(session, lora_id) if lora_id else [],
            "has_reference": character.reference_blob is not None,
        }
    )


def get_row(session: Session, *, owner_id: int, character_id: int) -> Character:
    """The row, or NotFound (another user's character is not found either)."""
    return get_owned(session, Character, character_id, owner_id, "character")


def create_character(
    session: Session,
    *,
    owner_id: int,
    data: CharacterIn,
    store: BlobStore | None = None,
    reference: bytes | None = None,
    max_pixels: int = 0,
) -> CharacterOut:
    """'Add New Character': the trigger word is suggested from the name unless given. A reference image is
    checked first (before the write lock), so a refused picture leaves no character behind."""
    if reference is not None:
        check_image_upload(reference, max_pixels=max_pixels)
    return _add_character(session, owner_id=owner_id, data=data, store=store, reference=reference)


@writes
def _add_character(
    session: Session, *, owner_id: int, data: CharacterIn, store: BlobStore | None, reference: bytes | None
) -> CharacterOut:
    taken = taken_triggers(session, owner_id)
    trigger = check_new_trigger(data.trigger, taken) if data.trigger else suggest_trigger(data.name, taken)
    character = Character(
        owner_id=owner_id,
        name=data.name.strip(),
        description=check_description(data.description),
        fighting_style=data.fighting_style.strip(),
        trigger=trigger,
        reference_blob=store.put_bytes(reference) if store is not None and reference is not None else None,
    )
    session.add(character)
    session.flush()
    return to_out(session, character)


def list_characters(session: Session, *, owner_id: int) -> list[CharacterOut]:
    """The user's characters, oldest first."""
    rows = session.scalars(select(Character).where(Character.owner_id == owner_id).order_by(Character.id))
    return [to_out(session, c) for c in rows]


def get_character(session: Session, *, owner_id: int, character_id: int) -> CharacterOut:
    """One character."""
    return to_out(session, get_row(session, owner_id=owner_id, character_id=character_id))


@writes
def update_character(session: Session, *, owner_id: int, character_id: int, data: CharacterUpdate) -> CharacterOut:
    """Change name, description or fighting style (the trigger word stays: prompts and files use it)."""
    character = get_row(session, owner_id=owner_id, character_id=character_id)
    if data.name is not None:
        character.name = data.name.strip()
    if data.description is not None:
        old, character.description = character.description, check_description(data.description)
        # Its LoRAs describe it as the character did (regional scenes read it), unless edited in the library.
        for lora in session.scalars(select(Lora).where(Lora.character_id == character.id, ~Lora.deleted)):
            if not lora.description or lora.description == old:
                lora.description = character.description
    if data.fighting_style is not None:
        character.fighting_style = data.fighting_style.strip()
    return to_out(session, character)


@writes
def set_reference(
    session: Session, store: BlobStore, *, owner_id: int, character_id: int, data: bytes, max_pixels: int
) -> CharacterOut:
    """Upload the character's reference image (checked like a training image)."""
    character = get_row(session, owner_id=owner_id, character_id=character_id)
    check_image_upload(data, max_pixels=max_pixels)
    character.reference_blob = store.put_bytes(data)
    return to_out(session, character)


@writes
def delete_character(session: Session, *, owner_id: int, character_id: int) -> None:
    """Delete a character; its LoRAs stay in the library (unlinked)."""
    character = get_row(session, owner_id=owner_id, character_id=character_id)
    for lora in session.scalars(select(Lora).where(Lora.character_id == character.id)):
        lora.character_id = None
    session.delete(character)
