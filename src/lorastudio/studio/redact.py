"""Server paths out of what users read: a message from the engine or a library may name a file under the
studio's folders (a run folder, the blob store, the models folder, the installed package). Each such path is
cut to its last name, so a job's progress and error say which file without saying where the server keeps it."""

from __future__ import annotations

import contextlib
import re
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from lorastudio.config import Settings

_TAIL = r"""[^\s'"`,;()<>\[\]{}]*"""  # a path runs until a space, a quote or a bracket


@lru_cache(maxsize=8)
def _pattern(roots: tuple[str, ...]) -> re.Pattern:
    # Longest first, so /home/u/.lorastudio/jobs wins over /home/u.
    alternatives = "|".join(re.escape(r.rstrip("/")) for r in sorted(roots, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives})(?:/{_TAIL})?")


def server_roots(settings: Settings) -> tuple[str, ...]:
    """The folders whose paths a user must not see: the studio's home and cache, temp, the install."""
    import lorastudio

    found = {
        settings.home,
        settings.cache_dir,
        settings.models_dir,
        Path(tempfile.gettempdir()),
        Path(sys.prefix),
        Path(lorastudio.__file__).parent.parent,
        Path.home(),
    }
    roots = set()
    for path in found:
        roots.add(str(path))
        with contextlib.suppress(OSError):
            roots.add(str(path.resolve()))
    return tuple(sorted(r for r in roots if len(r) > 1))


def redact(text: str | None, settings: Settings) -> str | None:
    """`text` with every path under a server folder cut to its last name ('saving …/lora.safetensors')."""
    if not text:
        return text

    def short(match: re.Match) -> str:
        path = match.group(0)
        end = path[len(path.rstrip(".:")) :]  # a sentence's full stop or colon is not part of the path
        name = path[: len(path) - len(end)].rstrip("/").rsplit("/", 1)[-1]
        return (f"…/{name}" if name else "…") + end

    return _pattern(server_roots(settings)).sub(short, text)
