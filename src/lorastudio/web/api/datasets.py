"""Dataset routes: create, upload many files (and zips) at once, see verdicts, edit captions, have them
written for you (Auto-caption, a job)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, UploadFile
from fastapi.responses import FileResponse

from lorastudio.errors import TooLarge
from lorastudio.studio import captioning, datasets
from lorastudio.studio.captioning import AutoCaptionIn
from lorastudio.studio.datasets import CaptionIn, DatasetIn, DatasetOut
from lorastudio.studio.jobs import JobOut
from lorastudio.web.api.files import file_response, read_upload
from lorastudio.web.api.jobs import IdempotencyKey
from lorastudio.web.state import Id, SessionDep, StudioDep, UserDep

router = APIRouter(prefix="/datasets", tags=["Datasets"])


@router.get("", summary="Your datasets")
def list_datasets(session: SessionDep, user: UserDep) -> list[DatasetOut]:
    return datasets.list_datasets(session, owner_id=user)


@router.post("", status_code=201, summary="A new, empty dataset")
def create_dataset(data: DatasetIn, session: SessionDep, user: UserDep) -> DatasetOut:
    return datasets.create_dataset(session, owner_id=user, data=data)


@router.get("/{dataset_id}", summary="A dataset with every image's verdict (checked for the given base)")
def get_dataset(
    dataset_id: Id,
    session: SessionDep,
    studio: StudioDep,
    user: UserDep,
    base: Annotated[
        str | None, Query(max_length=200, description="Base model, by name (default: the studio's)")
    ] = None,
) -> DatasetOut:
    return datasets.get_dataset(session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id, base=base)


@router.post("/{dataset_id}/images", summary="Upload images (PNG/JPEG, .txt captions, or a .zip of them)")
async def upload(
    dataset_id: Id, files: list[UploadFile], session: SessionDep, studio: StudioDep, user: UserDep
) -> DatasetOut:
    if len(files) > studio.settings.max_upload_files:
        raise TooLarge(f"{len(files)} files in one upload; the limit is {studio.settings.max_upload_files}")
    uploads = [await read_upload(f, studio.settings) for f in files]
    return datasets.add_files(
        session, studio.settings, studio.store, owner_id=user, dataset_id=dataset_id, files=uploads
    )


@router.put("/{dataset_id}/images/{image_id}/caption", summary="Edit one image's caption")
def set_caption(dataset_id: Id, image_id: Id, data: CaptionIn, session: SessionDep, user: UserDep) -> DatasetOut:
    return datasets.set_caption(session, owner_id=user, dataset_id=dataset_id, image_id=image_id, caption=data.caption)


@router.post(
    "/{dataset_id}/captions",
    status_code=201,
    summary="Caption the images for you (a job on a worker; no credits held)",
    description="Writes a caption, marked `auto`, for every image whose caption is empty or was written for you "
    "before; a caption you wrote is replaced only with `overwrite`. For a character, `leave_out_identity` leaves "
    "out what makes it who it is: the trigger word learns what the captions leave out. 422: unknown captioner, "
    "no captioning model configured (LORASTUDIO_CAPTIONER), or no images; 409: one is running already.",
)
def auto_caption(
    dataset_id: Id,
    data: AutoCaptionIn,
    session: SessionDep,
    studio: StudioDep,
    user: UserDep,
    idempotency_key: IdempotencyKey = None,
) -> JobOut:
    return captioning.submit_captioning(
        session,
        studio.settings,
        owner_id=user,
        dataset_id=dataset_id,
        captioner=data.captioner,
        overwrite=data.overwrite,
        leave_out_identity=data.leave_out_identity,
        idempotency_key=idempotency_key,
    )


@router.delete("/{dataset_id}/images/{image_id}", summary="Remove one image")
def delete_image(dataset_id: Id, image_id: Id, session: SessionDep, user: UserDep) -> DatasetOut:
    return datasets.delete_image(session, owner_id=user, dataset_id=dataset_id, image_id=image_id)


@router.get(
    "/{dataset_id}/images/{image_id}/file", summary="One uploaded image (PNG or JPEG)", response_class=FileResponse
)
def image_file(dataset_id: Id, image_id: Id, session: SessionDep, studio: StudioDep, user: UserDep):
    blob, media_type = datasets.image_blob(
        session, studio.store, owner_id=user, dataset_id=dataset_id, image_id=image_id
    )
    return file_response(studio.store, blob, media_type, f"dataset-{dataset_id}-image-{image_id}")
