"""Captions written for you: the captioner protocol, the rule that finishes a caption (the trigger word
first, the character's identity left out) and captioning a folder (`name.txt` beside `name.png`).

Why leave the identity out: the trainers' guidance (kohya's, ai-toolkit's) is to caption what varies and
not what the LoRA must learn. Whatever a caption names, training ties to those words; what it leaves out is
what the trigger word comes to mean. So a character's captions say the pose, the place and the other
people, never the hair colour or outfit that make the character who they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from lorastudio.engine.data.images import IMAGE_SUFFIXES, ImageRejected, open_image
from lorastudio.engine.kinds import check_kind
from lorastudio.engine.progress import OnProgress, ProgressEvent, no_progress
from lorastudio.fileio import write_atomic

LEAVE_OUT_REASON = (
    "A caption names what varies (pose, place, other people), not what makes the character who they are: "
    "the trigger word learns whatever the captions leave out."
)
BATCH = 8  # images a captioner is handed at once: a model's batch, and how often progress is said
MAX_PIXELS = 64_000_000  # the decompression-bomb limit of the settings' default (open_image refuses more)
_PLACE = "\x00"  # where the subject was named: the trigger word goes there when it leads the caption
# Words a caption may be left with once the subject's words are gone ("in a red gi with" -> "in a"): trimmed off
# the end of a clause, and (the first four) off its start.
_LEADING = ("and", "with", "facing", "wearing")
_TRAILING = (*_LEADING, "in", "a", "an", "the", "of", "on", "at", "has", "having", "is")
_LEAD_UP = r"(?:(?<![\w-])(?:" + "|".join(_TRAILING) + r")\s+)+" + _PLACE


@runtime_checkable
class Captioner(Protocol):
    """Anything that writes one caption per picture."""

    name: str  # how it is called in messages and results (never a path)

    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image, in order."""
        ...


@dataclass
class CaptionReport:
    """What captioning a folder did."""

    captioner: str
    captioned: int = 0  # images given a new caption
    kept: int = 0  # images whose caption was already there (not overwritten)
    failed: int = 0  # images that could not be read (left without a caption)
    captions: dict[str, str] = field(default_factory=dict)  # image file name -> the caption written
    problems: dict[str, str] = field(default_factory=dict)  # image file name -> why it failed

    def to_dict(self) -> dict:
        """JSON-able form (the CLI's --json)."""
        return {
            "captioner": self.captioner,
            "captioned": self.captioned,
            "kept": self.kept,
            "failed": self.failed,
            "captions": self.captions,
            "problems": self.problems,
        }


def leave_out_words(description: str, found: list[str] | None = None) -> list[str]:
    """The words a character's captions leave out: the captioner's own finding (the subject's look, phrase
    first) and the user's description of the subject, each comma-separated part and its words."""
    words = list(found or [])
    for part in re.split(r"[,;\n]", description or ""):
        part = " ".join(part.split()).strip(" .")
        if not part:
            continue
        words.append(part)
        words += [w for w in part.split() if len(w) > 2 and w.lower() not in _TRAILING]
    return list(dict.fromkeys(words))


def finish_caption(raw: str, *, trigger: str, kind: str, leave_out: list[str]) -> str:
    """The caption as training reads it: the trigger word once, first; the `leave_out` words gone (phrases
    first; single words only when no phrase was found). Where the subject's phrase opened the caption the
    trigger word takes its place ("red fighter with yellow head, ..." -> "johnhero, ..."). A caption left
    empty is the kind's plain words ("johnhero, a person")."""
    text = _drop(" ".join(str(raw).split()), trigger, "")
    phrases = sorted({p.strip() for p in leave_out if p and p.strip()}, key=len, reverse=True)
    found = False
    for phrase in (p for p in phrases if " " in p):
        # "red fighter with yellow head" is not "red fighter with yellow head with a cape": another fighter
        pattern = _word(phrase) + r"(?!\s+with\s+an?\s)"
        if re.search(pattern, text, flags=re.IGNORECASE):
            found = True
            text = re.sub(pattern, _PLACE, text, flags=re.IGNORECASE)
    if not found:
        for word in (p for p in phrases if " " not in p):
            text = _drop(text, word, "")  # an adjective gone, not the subject: nothing takes its place
    # "a man in a red gi" -> "a man": the little words that led up to the subject's go with it
    text = re.sub(_LEAD_UP, " " + _PLACE, text, flags=re.IGNORECASE)
    text = _tidy(text)
    if text.startswith(_PLACE):
        text = trigger + text[1:]
    text = _tidy(text.replace(_PLACE, ""))
    if not re.match(_word(trigger), text, flags=re.IGNORECASE):
        text = f"{trigger}, {text}" if text else f"{trigger}, {check_kind(kind).class_words}"
    return text


def _word(text: str) -> str:
    return rf"(?<![\w-]){re.escape(text)}(?![\w-])"


def _drop(text: str, word: str, instead: str) -> str:
    return re.sub(_word(word), instead, text, flags=re.IGNORECASE)


def _tidy(text: str) -> str:
    """Clauses without the words a removal left dangling, empty ones dropped."""
    clauses = []
    for clause in text.split(","):
        words = clause.split()
        words = [w for i, w in enumerate(words) if w != _PLACE or i == 0 or words[i - 1] != _PLACE]
        while words and words[-1].lower() in _TRAILING:
            words.pop()
        while words and words[0].lower() in _LEADING:
            words.pop(0)
        if words:
            clauses.append(" ".join(words))
    return ", ".join(clauses)


def identity_of(captioner: Captioner, images: list[Image.Image], trigger: str) -> list[str]:
    """What the captioner itself reads as the subject's identity (the toy world's: the subject's look)."""
    read = getattr(captioner, "identity_words", None)
    return list(read(images, trigger)) if callable(read) else []


def caption_folder(
    folder: Path,
    captioner: Captioner,
    *,
    trigger: str,
    kind: str,
    leave_out_identity: bool = True,
    description: str = "",
    overwrite: bool = False,
    on_progress: OnProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CaptionReport:
    """Write `name.txt` beside each image of `folder` (atomically). An existing caption is kept unless
    `overwrite`; an image that cannot be read is counted as failed and skipped, never sinks the folder. For a
    character (with `leave_out_identity`) the captions leave out what makes it who it is (LEAVE_OUT_REASON)."""
    on_progress = on_progress or no_progress
    report = CaptionReport(captioner=captioner.name)
    todo: list[tuple[Path, Image.Image]] = []
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        if path.with_suffix(".txt").exists() and not overwrite:
            report.kept += 1
            continue
        try:
            todo.append((path, open_image(path, max_pixels=MAX_PIXELS).image))
        except ImageRejected as exc:
            report.failed += 1
            report.problems[path.name] = str(exc)
    leave_out = []
    if leave_out_identity and check_kind(kind).character:
        leave_out = leave_out_words(description, identity_of(captioner, [img for _, img in todo], trigger))
    on_progress(ProgressEvent(phase="caption", step=0, total=len(todo), message=f"captioning with {captioner.name}"))
    for start in range(0, len(todo), BATCH):
        if should_stop and should_stop():
            break
        batch = todo[start : start + BATCH]
        for (path, _), raw in zip(batch, caption_images(captioner, [img for _, img in batch]), strict=True):
            if raw is None:
                report.failed += 1
                report.problems[path.name] = f"{captioner.name} could not caption it"
                continue
            text = finish_caption(raw, trigger=trigger, kind=kind, leave_out=leave_out)
            write_atomic(path.with_suffix(".txt"), lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
            report.captions[path.name] = text
            report.captioned += 1
        done = min(start + BATCH, len(todo))
        on_progress(ProgressEvent(phase="caption", step=done, total=len(todo), message=f"{done} of {len(todo)}"))
    return report


def caption_images(captioner: Captioner, images: list[Image.Image]) -> list[str | None]:
    """The captioner's captions, None for a picture it failed on: a batch that fails is tried one by one,
    so one bad picture costs only its own caption."""
    try:
        return list(captioner.caption(images))
    except (ValueError, OSError, RuntimeError, IndexError):
        if len(images) == 1:
            return [None]
        return [caption_images(captioner, [image])[0] for image in images]
