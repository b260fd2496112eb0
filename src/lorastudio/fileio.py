"""Files on disk, whatever they hold (not ML: shared by every layer, like config.py and errors.py).

Atomic writes: a temp file in the target's folder, then a rename, so readers never see half a file. The
finished file gets the mode any new file would get (0666 less the umask, 0644 by default), not the temp
file's private 0600, so a web server and a worker running as other users can read it. And the checks that a
file or folder can be written, made before any long work starts.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lorastudio.errors import Invalid


@functools.cache
def _file_mode() -> int:
    # The umask can only be read by setting it; do that once, and put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_writable_file(path: Path, what: str = "output file", *, setting: str | None = None) -> Path:
    """Refuse, before any long work, a file path that cannot be written: a folder, a parent that is a
    file, a name too long for the file system, or a place this user may not write. `setting`: the field
    that gave the path, for the error (lorastudio.errors)."""
    path = Path(path)
    if path.is_dir():
        raise Invalid(f"{what} {path} is a folder; give a file name, e.g. {path / 'out'}", setting=setting)
    if len(path.name.encode()) > 255:
        raise Invalid(
            f"{what} name is {len(path.name.encode())} bytes long; file names are at most 255", setting=setting
        )
    # A setting ("$output") comes with its own words from the face: "--out", "the output file".
    folder = f"the folder of {what}" if what.startswith("$") else f"the folder of the {what}"
    check_writable_dir(path.parent, folder, setting=setting)
    return path


def check_writable_dir(folder: Path, what: str = "output folder", *, setting: str | None = None) -> Path:
    """Refuse a folder path that is a file or cannot be created/written by this user."""
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise Invalid(f"{what} {folder} cannot be used: {existing} is a file, not a folder", setting=setting)
    if not os.access(existing, os.W_OK | os.X_OK) or str(existing.resolve()).startswith(("/proc", "/sys")):
        raise Invalid(f"{what} {folder} is not writable by this user; choose another place", setting=setting)
    return folder


def write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) and rename the result over `path`; the temp file is removed on failure."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise Invalid(f"cannot write {path}: {exc.strerror or exc}; choose another place") from exc
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except IsADirectoryError as exc:
        raise Invalid(f"cannot write {path}: it is a folder; give a file name") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))
