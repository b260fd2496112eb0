"""Character Manager routes."""

from __future__ import annotations

from fastapi import APIRouter, UploadFile
from fastapi.responses import FileResponse

from lorastudio.studio import characters, datasets
from lorastudio.studio.characters import CharacterIn, CharacterOut, CharacterUpdate
from lorastudio.studio.datasets import DatasetOut
from lorastudio.web import urls
from lorastudio.web.api.files import file_response, read_upload
from lorastudio.web.state import Id, SessionDep, StudioDep, UserDep

router = APIRouter(prefix="/characters", tags=["Character Manager"])


@router.get("", summary="List your characters")
def list_characters(session: SessionDep, user: UserDep) -> list[CharacterOut]:
    return urls.fill(characters.list_characters(session, owner_id=user))


@router.post("", status_code=201, summary="Add New Character (the trigger word is suggested from the name)")
def create_character(data: CharacterIn, session: SessionDep, user: UserDep) -> CharacterOut:
    return urls.fill(characters.create_character(session, owner_id=user, data=data))


@router.get("/{character_id}", summary="One character with its LoRA versions")
def get_character(character_id: Id, session: SessionDep, user: UserDep) -> CharacterOut:
    return urls.fill(characters.get_character(session, owner_id=user, character_id=character_id))


@router.patch("/{character_id}", summary="Change a character's name, description or fighting style")
def update_character(character_id: Id, data: CharacterUpdate, session: SessionDep, user: UserDep) -> CharacterOut:
    return urls.fill(characters.update_character(session, owner_id=user, character_id=character_id, data=data))


@router.delete("/{character_id}", status_code=204, summary="Delete a character (its LoRAs stay in the library)")
def delete_character(character_id: Id, session: SessionDep, user: UserDep) -> None:
    characters.delete_character(session, owner_id=user, character_id=character_id)


@router.put("/{character_id}/reference", summary="Upload the reference image (PNG or JPEG)")
async def set_reference(
    character_id: Id, file: UploadFile, session: SessionDep, studio: StudioDep, user: UserDep
) -> CharacterOut:
    upload = await read_upload(file, studio.settings)
    character = characters.set_reference(
        session,
        studio.store,
        owner_id=user,
        character_id=character_id,
        data=upload.data,
        max_pixels=studio.settings.max_image_pixels,
    )
    return urls.fill(character)


@router.get("/{character_id}/reference", summary="The reference image", response_class=FileResponse)
def get_reference(character_id: Id, session: SessionDep, studio: StudioDep, user: UserDep):
    character = characters.get_row(session, owner_id=user, character_id=character_id)
    return file_response(studio.store, character.reference_blob, "image/png", f"character-{character_id}.png")


@router.post("/{character_id}/dataset", status_code=201, summary="Train LoRA: a dataset prefilled for this character")
def train_dataset(character_id: Id, session: SessionDep, user: UserDep) -> DatasetOut:
    character = characters.get_row(session, owner_id=user, character_id=character_id)
    return datasets.subject_dataset(session, owner_id=user, character=character, reuse=False)
