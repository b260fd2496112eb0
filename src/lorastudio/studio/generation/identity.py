"""Identity scores of a generation's images, computed by the worker right after it draws them: for each character
the scene shows (a selected library LoRA that belongs to one of the user's characters, or a character whose trigger
word the prompt names), how much each image looks like that character's references (its datasets' images, else
its reference picture). The engine measures (`identity_similarity`: DINO, else CLIP-I, else the toy world's
detectors); the storyboard compares the panels of a character with these numbers and flags drift.

Scoring never fails a generation: whatever goes wrong is logged and the image gets a score of None saying so."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lorastudio.config import Settings
from lorastudio.engine import CHARACTER, has_word
from lorastudio.errors import LoraStudioError
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.db import Character, Dataset, DatasetImage, Lora
from lorastudio.studio.jobs import GenerationJob

log = logging.getLogger("lorastudio.worker")

MAX_REFERENCES = 40  # a character's dataset images scored against: enough for a stable mean, bounded embedding time
_KEEP = 16  # characters' embedded references kept per worker process (a storyboard's cast, a few times over)
_REFS: OrderedDict[tuple, object] = OrderedDict()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Subject:
    """A character a scene shows, and the blob keys of the pictures that say what it looks like."""

    character_id: int
    lora_id: int | None
    name: str  # its trigger word
    blobs: tuple[str, ...]


def subjects(session: Session, *, owner_id: int, request: GenerationJob) -> list[Subject]:
    """The characters to score a scene's images against: the owner's characters whose LoRA the scene selected, in
    the order selected, then those its prompt names by trigger word without their LoRA (a hero left out of a panel's
    LoRAs is the drift most worth seeing). Another user's character (a shared LoRA's) is never read."""
    mine = {c.id: c for c in session.scalars(select(Character).where(Character.owner_id == owner_id))}
    chosen: dict[int, int | None] = {}
    lora_ids = [x.lora_id for x in request.loras if x.lora_id]
    if lora_ids:
        rows = session.execute(select(Lora.id, Lora.character_id).where(Lora.id.in_(lora_ids))).all()
        of = dict(rows)
        for lora_id in lora_ids:
            cid = of.get(lora_id)
            if cid in mine and cid not in chosen:
                chosen[cid] = lora_id
    for cid, character in mine.items():
        if cid not in chosen and has_word(request.prompt, character.trigger):
            chosen[cid] = None
    return [
        Subject(cid, lora_id, mine[cid].trigger, _reference_blobs(session, mine[cid]))
        for cid, lora_id in chosen.items()
    ]


def _reference_blobs(session: Session, character: Character) -> tuple[str, ...]:
    """The character's dataset images that were not skipped (oldest first, at most MAX_REFERENCES), else its
    reference picture, else nothing."""
    query = (
        select(DatasetImage.blob)
        .join(Dataset, Dataset.id == DatasetImage.dataset_id)
        .where(
            Dataset.character_id == character.id,
            Dataset.owner_id == character.owner_id,
            DatasetImage.status != "skipped",
            DatasetImage.blob.is_not(None),
        )
        .order_by(DatasetImage.id)
    )
    blobs = tuple(dict.fromkeys(session.scalars(query)))[:MAX_REFERENCES]
    if not blobs and character.reference_blob:
        blobs = (character.reference_blob,)
    return blobs


def _open(store: BlobStore, blob: str, max_pixels: int) -> PILImage.Image | None:
    """A stored picture as RGB, or None (gone or unreadable: one bad reference never stops the scoring)."""
    from lorastudio.engine import ImageRejected, open_image

    try:
        return open_image(store.path(blob), max_pixels=max_pixels).image
    except (OSError, ImageRejected, LoraStudioError):
        return None


def _references(subject: Subject, scorers, store: BlobStore, settings: Settings, family: str | None):
    """The subject's references, embedded once per worker process for the same pictures and scorers (a storyboard
    of twenty panels embeds its hero's references once, not twenty times)."""
    from lorastudio.engine import references

    key = (subject.character_id, subject.name, subject.blobs, tuple(scorers.names), family)
    with _LOCK:
        if key in _REFS:
            _REFS.move_to_end(key)
            return _REFS[key]
    images = [i for i in (_open(store, b, settings.max_image_pixels) for b in subject.blobs) if i is not None]
    if not images:
        return None
    # The family decides whether the toy world's detectors may judge (they read only its pictures).
    refs = references(images, scorers, kind=CHARACTER.name, trigger=subject.name, family=family)
    with _LOCK:
        _REFS[key] = refs
        while len(_REFS) > _KEEP:
            _REFS.popitem(last=False)
    return refs


def _family(request: GenerationJob, settings: Settings) -> str | None:
    """The scene's base-model family (None when it cannot be read: then the references decide)."""
    from lorastudio.engine import base_family

    try:
        return base_family(request.base, settings)
    except Exception:  # noqa: BLE001 - scoring is an extra: an unreadable base leaves the family unknown
        return None


def score_images(
    settings: Settings,
    factory: sessionmaker[Session],
    store: BlobStore,
    *,
    owner_id: int,
    request: GenerationJob,
    images: list[PILImage.Image],
) -> list[list[dict]]:
    """Per image, an IdentityScore dump per character the scene shows (empty lists: no character in it). Never
    raises: a failure is logged and leaves scores of None with a note."""
    from lorastudio.studio.generation.schemas import IdentityScore

    try:
        with factory() as session:
            found = subjects(session, owner_id=owner_id, request=request)
    except Exception:  # noqa: BLE001 - scoring is an extra: the generation stands without it
        log.exception("identity scoring: the scene's characters could not be read")
        return [[] for _ in images]
    if not found:
        return [[] for _ in images]
    scorers = _scorers(settings)
    family = _family(request, settings)
    out: list[list[dict]] = [[] for _ in images]
    for subject in found:
        base = dict(lora_id=subject.lora_id, character_id=subject.character_id, name=subject.name)
        try:
            refs = _references(subject, scorers, store, settings, family)
            if refs is None:
                note = (
                    f"{subject.name} has no reference pictures: add a dataset of the character (or a reference "
                    "image) to score its panels"
                )
                scores = [IdentityScore(**base, score=None, by="none", note=note) for _ in images]
            else:
                scores = [_score(base, image, refs, scorers, IdentityScore) for image in images]
        except Exception:  # noqa: BLE001 - one character's failure leaves the others' scores and the images
            log.exception("identity scoring of %s failed", subject.name)
            note = "scoring failed on the worker; its log says why"
            scores = [IdentityScore(**base, score=None, by="none", note=note) for _ in images]
        for row, score in zip(out, scores, strict=True):
            row.append(score.model_dump())
    return out


def _score(base: dict, image: PILImage.Image, refs, scorers, model):
    from lorastudio.engine import identity_similarity

    score, by = identity_similarity([image], refs, scorers)
    if score is None:
        note = scorers.note or "nothing here can measure this character's identity"
        return model(**base, score=None, by="none", note=note)
    return model(**base, score=round(float(score), 4), by=by)


def _scorers(settings: Settings):
    """The configured scorers; when they cannot be loaded (a misconfigured setting), none, with a note saying so:
    the toy world's detectors still measure, and elsewhere the panel says why there is no score."""
    from lorastudio.engine import Scorers, load_scorers

    try:
        return load_scorers(settings)
    except LoraStudioError as exc:
        log.warning("identity scoring: %s", exc)
        return Scorers(note=f"the scorer could not be loaded: {exc}")
    except Exception:  # noqa: BLE001 - a model folder can fail in any library's way; the images stand
        log.exception("identity scoring: the scorers could not be loaded")
        return Scorers(note="the scorer could not be loaded; the worker's log says why")
