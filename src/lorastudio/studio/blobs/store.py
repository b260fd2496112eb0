"""The blob store: files by the sha256 of their content, written temp-then-rename, so a row only ever
points at a complete file. One interface, two places: the local folder (the default, one machine) and
S3 or an S3-compatible server (`s3.py`, for workers on other machines); `make.py`'s `make_store` picks."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Protocol

from lorastudio.errors import NotFound
from lorastudio.fileio import write_atomic

_SHA = re.compile(r"[0-9a-f]{64}")


class BlobStore(Protocol):
    """Where the studio keeps files."""

    def put_bytes(self, data: bytes) -> str: ...
    def put_file(self, path: Path) -> str: ...
    def path(self, blob: str) -> Path: ...
    def exists(self, blob: str) -> bool: ...
    def delete(self, blob: str) -> None: ...
    def check(self) -> None: ...


def check_blob_id(blob: str) -> str:
    """A blob id is a sha256 hex digest; anything else names nothing (NotFound), paths included."""
    if not _SHA.fullmatch(blob or ""):
        raise NotFound("no such file")
    return blob


class LocalBlobStore:
    """Blobs as files under one folder: <root>/ab/cd/<sha256>."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _where(self, blob: str) -> Path:
        check_blob_id(blob)
        return self.root / blob[:2] / blob[2:4] / blob

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their id (sha256 hex). Storing the same bytes twice stores them once."""
        blob = hashlib.sha256(data).hexdigest()
        target = self._where(blob)
        if not target.exists():
            write_atomic(target, lambda tmp: Path(tmp).write_bytes(data))
        return blob

    def put_file(self, path: Path) -> str:
        """Store a file's content (streamed, so big files never sit in memory)."""
        digest = hashlib.sha256()
        with Path(path).open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        blob = digest.hexdigest()
        target = self._where(blob)
        if not target.exists():
            write_atomic(target, lambda tmp: shutil.copyfile(path, tmp))
        return blob

    def path(self, blob: str) -> Path:
        """The local file of a blob; NotFound when it is not stored."""
        target = self._where(blob)
        if not target.is_file():
            raise NotFound("no such file")
        return target

    def exists(self, blob: str) -> bool:
        """Whether the blob is stored."""
        try:
            return self._where(blob).is_file()
        except NotFound:
            return False

    def delete(self, blob: str) -> None:
        """Remove a blob (callers make sure no row points at it)."""
        self._where(blob).unlink(missing_ok=True)

    def check(self) -> None:
        """Raise Unavailable unless the folder can be written."""
        from lorastudio.errors import Unavailable

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(f"the file folder {self.root} cannot be created: {exc.strerror or exc}") from exc
