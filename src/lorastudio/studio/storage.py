"""The blob store: files by the sha256 of their content, written temp-then-rename, so a row only ever
points at a complete file. One interface; the local folder is the default (S3 arrives with scale-out)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Protocol

from lorastudio.engine.fileio.atomic import write_atomic
from lorastudio.errors import NotFound

_SHA = re.compile(r"[0-9a-f]{64}")


class BlobStore(Protocol):
    """Where the studio keeps files."""

    def put_bytes(self, data: bytes) -> str: ...
    def put_file(self, path: Path) -> str: ...
    def path(self, blob: str) -> Path: ...
    def exists(self, blob: str) -> bool: ...
    def delete(self, blob: str) -> None: ...


class LocalBlobStore:
    """Blobs as files under one folder: <root>/ab/cd/<sha256>."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _where(self, blob: str) -> Path:
        if not _SHA.fullmatch(blob or ""):
            raise NotFound("no such file")  # ids are hashes; anything else names nothing
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
