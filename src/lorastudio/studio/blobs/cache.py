"""A bounded local cache of blobs fetched from a remote store: least recently used go first, by bytes.

A worker on its own machine keeps the base models and LoRA files it uses here, so the next job that
needs them reads the local disk instead of the network. Use is recorded as the file's mtime (set on every
hit), which survives a restart of the worker without an index file to keep consistent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lorastudio.fileio import write_atomic


class BlobCache:
    """Files named by their blob id under one folder, kept under `max_bytes` in all."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    def _where(self, blob: str) -> Path:
        return self.root / blob[:2] / blob

    def get(self, blob: str) -> Path | None:
        """The cached file (its use recorded), or None."""
        path = self._where(blob)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def add(self, blob: str, write: Callable[[str], None]) -> Path:
        """Cache a blob written by `write(temp_path)`, then make room: the new file is the last to go."""
        path = self._where(blob)
        write_atomic(path, write)
        self.evict(keep=path)
        return path

    def discard(self, blob: str) -> None:
        """Forget a blob (it was deleted from the store)."""
        self._where(blob).unlink(missing_ok=True)

    def files(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every cached file, oldest use first."""
        found = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    if path.name.startswith("."):
                        continue  # a write in progress
                    try:
                        st = path.stat()
                    except FileNotFoundError:
                        continue
                    found.append((st.st_mtime, st.st_size, path))
        return sorted(found)

    def size(self) -> int:
        """Bytes cached now."""
        return sum(size for _, size, _ in self.files())

    def evict(self, keep: Path | None = None) -> int:
        """Delete least recently used files until the cache fits; bytes freed. `keep` is never deleted
        (a file bigger than the whole cache is still served, then goes first next time)."""
        entries = self.files()
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)  # an open reader keeps its file until it closes it (POSIX)
            total -= size
            freed += size
        return freed
