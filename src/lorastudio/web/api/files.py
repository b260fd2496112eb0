"""Uploads in, files out: uploads read with the size limit, files served by id only (never by a path
from the request) with their content type and nosniff."""

from __future__ import annotations

from fastapi import UploadFile
from fastapi.responses import FileResponse

from lorastudio.config import Settings
from lorastudio.errors import NotFound, TooLarge
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.datasets import Upload, clean_name


async def read_upload(file: UploadFile, settings: Settings) -> Upload:
    """The uploaded file's bytes (413 past the per-file limit) and its cleaned name."""
    limit = settings.max_upload_mb * 2**20
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{clean_name(file.filename)} is over the {settings.max_upload_mb} MB upload limit")
    return Upload(clean_name(file.filename), data)


def file_response(store: BlobStore, blob: str | None, media_type: str, filename: str) -> FileResponse:
    """A stored file as a download."""
    if not blob:
        raise NotFound("no file here")
    path = store.path(blob)
    return FileResponse(path, media_type=media_type, filename=filename, headers={"X-Content-Type-Options": "nosniff"})
