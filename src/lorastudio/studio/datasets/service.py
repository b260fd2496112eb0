"""Datasets: many images uploaded at once (files and zips), each checked by the engine and given a
verdict; bad files are kept and flagged, never sink the rest; captions are editable."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.engine import CHARACTER, FIGHTING_STYLE, base_family, check_kind, get_preset, make_caption, scan_dataset
from lorastudio.errors import NotFound, TooLarge
from lorastudio.studio.base_models import check_base
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.datasets.schemas import DatasetImageOut, DatasetIn, DatasetOut
from lorastudio.studio.datasets.uploads import CAPTION_SUFFIX, Upload, check_size, unpack_zip
from lorastudio.studio.db import Character, Dataset, DatasetImage, FightingStyle, get_owned, writes
from lorastudio.studio.library import check_new_trigger
from lorastudio.studio.styles import taken_triggers


def get_row(session: Session, *, owner_id: int, dataset_id: int) -> Dataset:
    """The row, or NotFound (another user's dataset is not found either)."""
    return get_owned(session, Dataset, dataset_id, owner_id, "dataset")


def images_of(session: Session, dataset_id: int) -> list[DatasetImage]:
    """A dataset's images in upload order."""
    return list(
        session.scalars(select(DatasetImage).where(DatasetImage.dataset_id == dataset_id).order_by(DatasetImage.id))
    )


def to_out(session: Session, dataset: Dataset, notes: list[dict] | None = None) -> DatasetOut:
    """The API form with every image's verdict."""
    images = images_of(session, dataset.id)
    return DatasetOut.model_validate(dataset).model_copy(
        update={
            "images": [DatasetImageOut.model_validate(i) for i in images],
            "usable": sum(1 for i in images if i.status != "skipped"),
            "notes": notes or [],
        }
    )


@writes
def create_dataset(session: Session, *, owner_id: int, data: DatasetIn) -> DatasetOut:
    """A new, empty dataset for a character or a style."""
    check_kind(data.kind)
    character = (
        session.scalar(select(Character).where(Character.id == data.character_id, Character.owner_id == owner_id))
        if data.character_id is not None
        else None
    )
    if data.character_id is not None and character is None:
        raise NotFound(f"character {data.character_id} not found")
    style = (
        session.scalar(
            select(FightingStyle).where(
                FightingStyle.id == data.style_id,
                (FightingStyle.owner_id == owner_id) | FightingStyle.owner_id.is_(None),
            )
        )
        if data.style_id is not None
        else None
    )
    if data.style_id is not None and style is None:
        raise NotFound(f"fighting style {data.style_id} not found")
    # One rule for every trigger word (characters', styles', datasets'): a made-up word no other of the
    # user's characters or styles uses; a dataset for a character or style takes that subject's own word.
    own = {subject.trigger.lower() for subject in (character, style) if subject is not None}
    trigger = check_new_trigger(data.trigger, taken_triggers(session, owner_id) - own)
    dataset = Dataset(
        owner_id=owner_id,
        name=data.name.strip(),
        kind=data.kind,
        trigger=trigger,
        character_id=data.character_id,
        style_id=data.style_id,
    )
    session.add(dataset)
    session.flush()
    return to_out(session, dataset)


@writes
def subject_dataset(
    session: Session,
    *,
    owner_id: int,
    character: Character | None = None,
    style: FightingStyle | None = None,
    reuse: bool = True,
) -> DatasetOut:
    """'Train LoRA' on a character's or a style's card: (reuse) the user's newest dataset for it, to add
    images and train a new version, or a new one with its name, kind and trigger word."""
    subject = character or style
    column = Dataset.character_id if character else Dataset.style_id
    if reuse:
        query = select(Dataset).where(Dataset.owner_id == owner_id, column == subject.id).order_by(Dataset.id.desc())
        if (found := session.scalar(query.limit(1))) is not None:
            return to_out(session, found)
    data = DatasetIn(
        name=f"{subject.name} references"[:120],
        kind=(CHARACTER if character else FIGHTING_STYLE).name,
        trigger=subject.trigger,
        character_id=character.id if character else None,
        style_id=style.id if style else None,
    )
    return create_dataset(session, owner_id=owner_id, data=data)


def list_datasets(session: Session, *, owner_id: int) -> list[DatasetOut]:
    """The user's datasets."""
    rows = session.scalars(select(Dataset).where(Dataset.owner_id == owner_id).order_by(Dataset.id))
    return [to_out(session, d) for d in rows]


def get_dataset(
    session: Session, settings: Settings, store: BlobStore, *, owner_id: int, dataset_id: int, base: str | None = None
) -> DatasetOut:
    """One dataset with its stored verdicts; with `base`, checked again for that base model (the verdicts
    depend on the resolution it trains at)."""
    dataset = get_row(session, owner_id=owner_id, dataset_id=dataset_id)
    if base is None:
        return to_out(session, dataset)
    return check_dataset(session, settings, store, dataset=dataset, base=base)


@writes
def add_files(
    session: Session, settings: Settings, store: BlobStore, *, owner_id: int, dataset_id: int, files: list[Upload]
) -> DatasetOut:
    """Add uploaded images (a .zip is unpacked; `name.txt` beside `name.png` is its caption), then check
    every image. A file that is not a usable image is kept with its verdict; nothing else is lost."""
    dataset = get_row(session, owner_id=owner_id, dataset_id=dataset_id)
    limit = settings.max_upload_mb * 2**20
    expanded: list[Upload] = []
    for upload in files:
        check_size(upload, limit)
        if upload.name.lower().endswith(".zip"):
            expanded += unpack_zip(
                upload.data, max_files=settings.max_upload_files, max_total=settings.max_zip_mb * 2**20, max_file=limit
            )
        else:
            expanded.append(upload)
    if len(expanded) > settings.max_upload_files:
        raise TooLarge(f"{len(expanded)} files in one upload; the limit is {settings.max_upload_files}")
    captions = {Path(u.name).stem: u.data for u in expanded if u.name.lower().endswith(CAPTION_SUFFIX)}
    for upload in expanded:
        if upload.name.lower().endswith(CAPTION_SUFFIX):
            continue
        text = captions.get(Path(upload.name).stem)
        caption = text.decode("utf-8", errors="replace")[:1000] if text else None
        blob = store.put_bytes(upload.data) if upload.data else None
        session.add(
            DatasetImage(dataset_id=dataset.id, filename=upload.name, blob=blob, caption=caption, caption_source="user")
        )
    session.flush()
    return check_dataset(session, settings, store, dataset=dataset)


def materialize(session: Session, store: BlobStore, dataset: Dataset, folder: Path) -> dict[str, DatasetImage]:
    """Write the dataset's images (by id, never by the uploaded name) and captions into `folder`."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    by_file = {}
    for image in images_of(session, dataset.id):
        name = f"img-{image.id:06d}"
        target = folder / name
        if image.blob and store.exists(image.blob):
            shutil.copyfile(store.path(image.blob), target)
        else:
            target.write_bytes(b"")  # an empty upload: the engine reports it as such
        if image.caption:
            (folder / f"{name}.txt").write_text(image.caption, encoding="utf-8")
        by_file[name] = image
    return by_file


@writes
def check_dataset(
    session: Session, settings: Settings, store: BlobStore, *, dataset: Dataset, base: str | None = None
) -> DatasetOut:
    """Run the engine's checks over the whole dataset (duplicates need all of it) and store the verdicts."""
    preset = get_preset(None, dataset.kind, base_family(check_base(settings, base), settings))
    (settings.home / "tmp").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"check-{dataset.id}-", dir=settings.home / "tmp")) / "images"
    by_file = materialize(session, store, dataset, folder)
    try:
        report, _ = scan_dataset(
            folder,
            kind=dataset.kind,
            trigger=dataset.trigger,
            preset=preset,
            resolution=preset.resolution,
            max_pixels=settings.max_image_pixels,
            bucket_step=preset.bucket_step,
        )
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    for entry in report.images:
        image = by_file[Path(entry.path).name]
        image.status, image.width, image.height = entry.status, entry.width, entry.height
        image.problems = [
            {"code": p.code, "severity": p.severity, "message": _named(p.message, by_file)} for p in entry.problems
        ]
        if entry.caption and image.caption is None:
            image.caption = entry.caption
            # No .txt came with it: "trigger, class words" was made for the user, so Auto-caption may replace it
            image.caption_source = "auto" if entry.caption_source == "generated" else "user"
    notes = [{"code": p.code, "severity": p.severity, "message": p.message} for p in report.notes]
    return to_out(session, dataset, notes)


def _named(message: str, by_file: dict[str, DatasetImage]) -> str:
    """The engine names the copies it checked (img-000004); the user knows the file they uploaded."""
    return re.sub(r"img-\d{6}", lambda m: by_file[m[0]].filename if m[0] in by_file else m[0], message)


@writes
def set_caption(session: Session, *, owner_id: int, dataset_id: int, image_id: int, caption: str) -> DatasetOut:
    """Edit one image's caption (the trigger word is put in front if it is missing); it is the user's now."""
    dataset = get_row(session, owner_id=owner_id, dataset_id=dataset_id)
    image = session.scalar(
        select(DatasetImage).where(DatasetImage.id == image_id, DatasetImage.dataset_id == dataset.id)
    )
    if image is None:
        raise NotFound(f"image {image_id} not found in dataset {dataset_id}")
    image.caption, _ = make_caption(caption, dataset.trigger, check_kind(dataset.kind).class_words)
    image.caption_source = "user"  # edited by hand: Auto-caption keeps it unless told to replace it
    return to_out(session, dataset)


def image_blob(session: Session, store: BlobStore, *, owner_id: int, dataset_id: int, image_id: int) -> tuple[str, str]:
    """An uploaded image's blob and media type; NotFound for files that are not a PNG or JPEG (the upload
    is hostile until checked: it is never served as anything else)."""
    dataset = get_row(session, owner_id=owner_id, dataset_id=dataset_id)
    image = session.scalar(
        select(DatasetImage).where(DatasetImage.id == image_id, DatasetImage.dataset_id == dataset.id)
    )
    if image is None or not image.blob:
        raise NotFound(f"image {image_id} not found in dataset {dataset_id}")
    with open(store.path(image.blob), "rb") as f:
        head = f.read(8)
    media = "image/png" if head.startswith(b"\x89PNG") else "image/jpeg" if head.startswith(b"\xff\xd8") else None
    if media is None:
        raise NotFound(f"{image.filename} is not a PNG or JPEG image, so there is nothing to show")
    return image.blob, media


@writes
def delete_image(session: Session, *, owner_id: int, dataset_id: int, image_id: int) -> DatasetOut:
    """Remove one image from a dataset."""
    dataset = get_row(session, owner_id=owner_id, dataset_id=dataset_id)
    image = session.scalar(
        select(DatasetImage).where(DatasetImage.id == image_id, DatasetImage.dataset_id == dataset.id)
    )
    if image is None:
        raise NotFound(f"image {image_id} not found in dataset {dataset_id}")
    session.delete(image)
    return to_out(session, dataset)
