"""Alternatives: a training's other evaluated checkpoints, kept beside the version it made for a while (the user
may switch to one: `catalog.switch_version`), then purged with their files unless something else names them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.db import Lora, LoraAlternative, LoraVersion, now, writes
from lorastudio.studio.library.schemas import LoraAlternativeOut, VersionScores


def alternatives_of(session: Session, lora_id: int) -> list[LoraAlternativeOut]:
    """The newest version's alternatives (its training's other evaluated checkpoints) not yet expired, by step."""
    newest = select(func.max(LoraVersion.id)).where(LoraVersion.lora_id == lora_id).scalar_subquery()
    rows = session.scalars(
        select(LoraAlternative)
        .where(
            LoraAlternative.lora_id == lora_id,
            LoraAlternative.version_id == newest,
            LoraAlternative.expires_at > now(),
        )
        .order_by(LoraAlternative.step)
    )
    return [LoraAlternativeOut.model_validate(a) for a in rows]


@writes
def add_alternatives(
    session: Session, store: BlobStore, *, lora_id: int, alternatives: list[tuple[Path, VersionScores]], days: int
) -> int:
    """Keep a training's other evaluated checkpoints beside its newest version for `days` (0 keeps none), so the
    user can switch to one; how many were kept. In the caller's write (a training's end), under its lock."""
    version = session.scalar(
        select(LoraVersion).where(LoraVersion.lora_id == lora_id).order_by(LoraVersion.version.desc())
    )
    if days <= 0 or version is None:
        return 0
    expires = now() + timedelta(days=days)
    for path, scores in alternatives:
        session.add(
            LoraAlternative(
                lora_id=lora_id,
                version_id=version.id,
                step=scores.score.step,
                blob=store.put_file(path),  # under the write lock: purge cannot take it before the row exists
                size=path.stat().st_size,
                scores=scores.model_dump(mode="json"),
                expires_at=expires,
            )
        )
    session.flush()
    return len(alternatives)


def _drop_alternatives(session: Session, store: BlobStore, rows: list[LoraAlternative]) -> int:
    """Delete these alternatives, and each file no version and no other alternative uses."""
    ids = [a.id for a in rows]
    for alt in rows:
        session.delete(alt)
    session.flush()
    for blob in {a.blob for a in rows}:
        shared = session.scalar(select(LoraVersion.id).where(LoraVersion.blob == blob).limit(1)) or session.scalar(
            select(LoraAlternative.id).where(LoraAlternative.blob == blob, LoraAlternative.id.not_in(ids)).limit(1)
        )
        if not shared:
            store.delete(blob)
    return len(rows)


@writes
def purge_alternatives(session: Session, store: BlobStore) -> int:
    """Remove expired alternatives and those of deleted LoRAs, with their files unless a version or another
    alternative shares them; how many."""
    rows = session.scalars(
        select(LoraAlternative).where(
            (LoraAlternative.expires_at <= now()) | LoraAlternative.lora_id.in_(select(Lora.id).where(Lora.deleted))
        )
    ).all()
    return _drop_alternatives(session, store, list(rows))
