"""A full disk, in words: which failures mean the studio's disk (or quota, or database) is full, and whether
there is room for new work. The message names the setting, never the server's folders."""

from __future__ import annotations

import errno
import shutil
import sqlite3

from sqlalchemy.exc import OperationalError

from lorastudio.config import Settings
from lorastudio.errors import DiskFull

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
RUST_WORDS = (f"(os error {errno.ENOSPC})", f"(os error {errno.EDQUOT})")
HOW = (
    "free space under the studio's home folder (LORASTUDIO_HOME): delete files you no longer need on that disk, "
    "or give it a larger one, then try again"
)


def as_disk_full(exc: BaseException) -> DiskFull | None:
    """The DiskFull an OSError (ENOSPC, EDQUOT) or a database error ("database or disk is full") means, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # also look through what wrapped it
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return DiskFull(f"the studio's disk is full ({exc.strerror or 'no space left'}); {HOW}")
        if any(words in str(exc) for words in RUST_WORDS):  # safetensors' writer reports the OS error as text
            return DiskFull(f"the studio's disk is full (no space left on the device); {HOW}")
        if isinstance(exc, OperationalError | sqlite3.OperationalError) and (
            "database or disk is full" in str(exc) or getattr(getattr(exc, "orig", None), "sqlstate", None) == "53100"
        ):
            return DiskFull(f"the studio's disk is full (the database could not grow); {HOW}")
        exc = exc.__cause__ or exc.__context__
    return None


def free_mb(settings: Settings) -> float:
    """Free space on the disk that holds the studio's home, in MB."""
    settings.home.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(settings.home).free / 2**20


def check_room(settings: Settings) -> None:
    """DiskFull when less than LORASTUDIO_MIN_FREE_MB is free under the home (a training would fill it)."""
    free = free_mb(settings)
    if free < settings.min_free_mb:
        raise DiskFull(
            f"only {free:.0f} MB of disk is free for the studio (LORASTUDIO_MIN_FREE_MB is "
            f"{settings.min_free_mb}); {HOW}"
        )
