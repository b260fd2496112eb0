"""LoRA Library routes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, UploadFile
from fastapi.responses import FileResponse

from lorastudio.engine import KindName
from lorastudio.studio import library
from lorastudio.studio.library import LoraOut, LoraPage, LoraUpdate, PublicIn, RatingIn
from lorastudio.web.api.files import file_response, read_upload
from lorastudio.web.state import Digits, Id, ReadSessionDep, SessionDep, StudioDep, UserDep

router = APIRouter(prefix="/loras", tags=["LoRA Library"])
Sort = Literal["created", "name", "usage", "success", "rating", "training_time"]


@router.get("", summary="Search, filter, sort and page through the library")
async def list_loras(
    session: ReadSessionDep,
    user: UserDep,
    q: Annotated[str | None, Query(max_length=100, description="Search name, trigger words, description")] = None,
    kind: Annotated[KindName | None, Query(description="Only this kind")] = None,
    family: Annotated[str | None, Query(max_length=32, description="Only this base-model family")] = None,
    sort: Annotated[Sort, Query(description="Sort by")] = "created",
    order: Annotated[Literal["asc", "desc"], Query(description="Direction")] = "desc",
    page: Annotated[int, Query(ge=1, le=100_000, description="Page, from 1"), Digits] = 1,
    per_page: Annotated[int, Query(ge=1, le=100, description="Page size"), Digits] = 20,
) -> LoraPage:
    return library.list_loras(
        session, owner_id=user, q=q, kind=kind, family=family, sort=sort, order=order, page=page, per_page=per_page
    )


@router.post("", status_code=201, summary="Import a .safetensors LoRA (kohya, diffusers or peft layout)")
async def import_lora(file: UploadFile, session: SessionDep, studio: StudioDep, user: UserDep) -> LoraOut:
    upload = await read_upload(file, studio.settings)
    return library.import_lora(session, studio.store, owner_id=user, data=upload.data, filename=upload.name)


@router.get("/{lora_id}", summary="One LoRA with its metrics and versions")
def get_lora(lora_id: Id, session: SessionDep, user: UserDep) -> LoraOut:
    return library.get_lora(session, owner_id=user, lora_id=lora_id)


@router.get("/{lora_id}/file", summary="Download the newest (or a given) version", response_class=FileResponse)
def download(
    lora_id: Id,
    session: SessionDep,
    studio: StudioDep,
    user: UserDep,
    version: Annotated[int | None, Query(ge=1, le=2**62, description="Version (default: newest)"), Digits] = None,
):
    row = library.version_row(session, owner_id=user, lora_id=lora_id, version=version)
    lora = library.get_lora_row(session, owner_id=user, lora_id=lora_id)
    # Named as prompt tags and image records name it, so `<lora:johnhero:0.8>` finds the file in A1111 too.
    name = library.tag_name(lora) + ("" if version is None else f"-v{row.version}")
    return file_response(studio.store, row.blob, "application/octet-stream", f"{name}.safetensors")


@router.patch("/{lora_id}", summary="Rename or describe a LoRA of your own")
def update(lora_id: Id, data: LoraUpdate, session: SessionDep, user: UserDep) -> LoraOut:
    return library.update_lora(session, owner_id=user, lora_id=lora_id, data=data)


@router.put("/{lora_id}/rating", summary="Rate a LoRA 1-5 (one rating per user)")
def rate(lora_id: Id, data: RatingIn, session: SessionDep, user: UserDep) -> LoraOut:
    return library.rate(session, owner_id=user, lora_id=lora_id, stars=data.stars)


@router.delete("/{lora_id}", summary="Delete a LoRA (files kept while a job in flight or a storyboard uses it)")
def delete(lora_id: Id, session: SessionDep, studio: StudioDep, user: UserDep) -> dict:
    return library.delete_lora(session, studio.store, owner_id=user, lora_id=lora_id)


@router.put("/{lora_id}/public", summary="Share a LoRA with every user (read-only for them) or take it back")
def set_public(lora_id: Id, data: PublicIn, session: SessionDep, user: UserDep) -> LoraOut:
    return library.set_public(session, owner_id=user, lora_id=lora_id, public=data.public)


@router.post(
    "/{lora_id}/alternatives/{alternative_id}/switch",
    summary="Make a new version from another checkpoint of the newest version's training (your own LoRA)",
)
def switch(lora_id: Id, alternative_id: Id, session: SessionDep, studio: StudioDep, user: UserDep) -> LoraOut:
    return library.switch_version(session, studio.store, owner_id=user, lora_id=lora_id, alternative_id=alternative_id)
