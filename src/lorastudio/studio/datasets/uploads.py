"""Uploaded files are hostile: names are cleaned and only ever shown, sizes and counts are capped, and
a zip is read entry by entry with limits (no paths outside, no links, no bombs)."""

from __future__ import annotations

import io
import re
import stat
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lorastudio.engine import IMAGE_SUFFIXES, ImageRejected, open_image
from lorastudio.errors import Invalid, TooLarge

MAX_NAME = 120
CAPTION_SUFFIX = ".txt"


@dataclass
class Upload:
    """One uploaded file: its cleaned name and bytes."""

    name: str
    data: bytes


def clean_name(name: str | None) -> str:
    """A file name safe to show and store: no folders, no control characters, at most 120 characters."""
    text = unicodedata.normalize("NFC", str(name or ""))
    text = text.replace("\\", "/").split("/")[-1]
    text = "".join(c for c in text if c.isprintable() and c not in '<>:"|?*').strip(" .")
    if len(text) > MAX_NAME:
        stem, dot, suffix = text.rpartition(".")
        text = (stem[: MAX_NAME - len(suffix) - 1] + dot + suffix) if dot and len(suffix) <= 10 else text[:MAX_NAME]
    return text or "unnamed"


def check_image_upload(data: bytes, *, max_pixels: int) -> None:
    """Refuse bytes that are not a usable PNG/JPEG image (with the engine's own checks)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            open_image(path, max_pixels=max_pixels)
        except ImageRejected as exc:
            raise Invalid(f"the image cannot be used: {exc}") from exc


def check_size(upload: Upload, max_bytes: int) -> None:
    """413 for a file over the per-file limit."""
    if len(upload.data) > max_bytes:
        raise TooLarge(
            f"{upload.name} is {len(upload.data) // 2**20} MB; the limit is {max_bytes // 2**20} MB per file"
        )


def unpack_zip(data: bytes, *, max_files: int, max_total: int, max_file: int) -> list[Upload]:
    """Image and caption entries of a zip, refusing path traversal, links and zip bombs before reading."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise Invalid(f"the zip file cannot be read ({exc}); make it again") from exc
    wanted = []
    for info in entries:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if info.is_dir():
            continue
        if path.is_absolute() or ".." in path.parts or re.match(r"^[a-zA-Z]:", info.filename):
            raise Invalid(f"the zip entry {info.filename[:80]!r} points outside the archive; it was refused whole")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Invalid(f"the zip entry {info.filename[:80]!r} is a symbolic link; links are refused")
        if "__MACOSX" in path.parts or path.name.startswith("."):
            continue  # Finder's resource forks and hidden files are not pictures
        if path.suffix.lower() in (*IMAGE_SUFFIXES, CAPTION_SUFFIX):
            wanted.append(info)
    if len(wanted) > max_files:
        raise TooLarge(f"the zip holds {len(wanted)} files; the limit is {max_files} per upload")
    total = sum(i.file_size for i in wanted)
    if total > max_total or any(i.file_size > max_file for i in wanted):
        raise TooLarge(
            f"the zip unpacks to {total // 2**20} MB; the limit is {max_total // 2**20} MB "
            f"({max_file // 2**20} MB per file)"
        )
    out, read = [], 0
    for info in wanted:
        try:
            with archive.open(info) as fh:
                chunk = fh.read(max_file + 1)  # the header's size can lie: never read past the limit
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
            raise Invalid(f"the zip entry {info.filename[:80]!r} cannot be unpacked ({exc})") from exc
        read += len(chunk)
        if len(chunk) > max_file or read > max_total:
            raise TooLarge(f"{info.filename[:80]} unpacks past the size limit; refused as a zip bomb")
        out.append(Upload(clean_name(info.filename), chunk))
    return out
