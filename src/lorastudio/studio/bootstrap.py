"""A fresh install made ready: schema migrated, the guide's four pre-built styles created, and on the
toyworld base each style's shipped LoRA file registered in the library."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from lorastudio.config import Settings
from lorastudio.errors import NotFound
from lorastudio.studio import db
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.db import FightingStyle, Lora, writes


def prepare(settings: Settings, engine: Engine | None = None) -> None:
    """Create or upgrade the database schema (what `lorastudio db upgrade` does)."""
    db.upgrade(settings, engine)


@writes
def seed(session: Session, store: BlobStore) -> None:
    """The pre-built styles and their shipped toy-world LoRAs (idempotent; one write)."""
    from lorastudio.engine import prebuilt_lora_path
    from lorastudio.studio import library, styles  # torch comes with them: not for `db upgrade`

    styles.seed_prebuilt(session)
    for p in styles.PREBUILT:
        style = session.scalar(select(FightingStyle).where(FightingStyle.builtin, FightingStyle.trigger == p.trigger))
        has_lora = session.scalar(select(Lora.id).where(Lora.style_id == style.id, Lora.source == "prebuilt"))
        try:
            path = prebuilt_lora_path(p.toy_style)
        except NotFound:  # not a toyworld style: it works by its phrases
            continue
        if has_lora is None and path.is_file():
            library.register_file(
                session, store, owner_id=None, path=path, name=p.name, source="prebuilt", style_id=style.id
            )
