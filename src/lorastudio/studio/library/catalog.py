"""The LoRA Library: every LoRA (trained here, imported, or shipped), its versions and the guide's
metrics: usage count, success rate (kept / judged, with its counts), user rating, training time.

Metrics are counters on the row, changed in the same transaction as what they count, so the library
lists 10,000 LoRAs sorted by any metric without aggregating on every request.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from sqlalchemy import Integer, column, func, or_, select, text
from sqlalchemy.orm import Session

from lorastudio.engine import DEFAULT_KIND, LoraInfo, check_description, read_lora
from lorastudio.errors import Conflict, Forbidden, Invalid, LoraStudioError, NotFound
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.db import (
    Job,
    JobLora,
    Lora,
    LoraAlternative,
    LoraVersion,
    StoryboardScene,
    now,
    writes,
)
from lorastudio.studio.library.alternatives import alternatives_of, purge_alternatives
from lorastudio.studio.library.schemas import (
    LoraOut,
    LoraPage,
    LoraUpdate,
    LoraVersionOut,
    VersionScores,
)

SORTS = {
    "created": Lora.created_at,
    "name": Lora.name,
    "usage": Lora.usage_count,
    "success": Lora.success_rate,
    "rating": Lora.rating_avg,
    "training_time": Lora.training_seconds,
}
IN_FLIGHT = ("pending", "running")


def _visible(owner_id: int):
    """Mine, shipped with us, or made public by its owner."""
    return (Lora.owner_id == owner_id) | Lora.owner_id.is_(None) | Lora.public


def _same(column, value):
    return column.is_(None) if value is None else column == value


def versions_of(session: Session, lora_id: int) -> list[LoraVersionOut]:
    """A LoRA's versions, oldest first."""
    rows = session.scalars(select(LoraVersion).where(LoraVersion.lora_id == lora_id).order_by(LoraVersion.version))
    return [LoraVersionOut.model_validate(v) for v in rows]


def to_out(session: Session, lora: Lora) -> LoraOut:
    """The API form of a library row, with its versions and the newest version's alternatives."""
    return LoraOut.model_validate(lora).model_copy(
        update={"versions": versions_of(session, lora.id), "alternatives": alternatives_of(session, lora.id)}
    )


def get_lora_row(session: Session, *, owner_id: int, lora_id: int) -> Lora:
    """The row, or NotFound (another user's LoRA is not found either)."""
    lora = session.scalar(select(Lora).where(Lora.id == lora_id, _visible(owner_id), ~Lora.deleted))
    if lora is None:
        raise NotFound(f"LoRA {lora_id} not found in your library")
    return lora


def own_lora_row(session: Session, *, owner_id: int, lora_id: int) -> Lora:
    """A LoRA the user may change: their own. Another user's public one is read-only (Forbidden)."""
    lora = get_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    if lora.owner_id is None:
        raise Conflict("LoRAs shipped with LoRA Studio cannot be changed or deleted")
    if lora.owner_id != owner_id:
        raise Forbidden(f"LoRA {lora_id} is another user's public LoRA: you can use it, only its owner can change it")
    return lora


def tag_name(lora: Lora) -> str:
    """The name a prompt tag and an image's record use for a LoRA: its first trigger word, else its name
    made file-safe (the name its download carries too, so `<lora:johnhero:0.8>` works in A1111 as here)."""
    if lora.trigger_words:
        return lora.trigger_words[0]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in lora.name)[:60] or f"lora{lora.id}"


def find_lora(session: Session, *, owner_id: int, name: str, family: str | None = None) -> Lora:
    """A LoRA the user may use, by library id, name, trigger word or tag name (case-insensitive): their own
    before shipped and shared ones, the base model's family first, then the newest. Never a file path."""
    text = name.strip()
    visible = select(Lora).where(_visible(owner_id), ~Lora.deleted)
    if text.isascii() and text.isdigit() and len(text) <= 18:
        found = session.scalar(visible.where(Lora.id == int(text)))
        if found is not None:
            return found
    lowered = text.lower()
    like = "%" + lowered.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    matches = [func.lower(Lora.name) == lowered, func.lower(Lora.triggers_text).like(like, escape="\\")]
    if lowered and all(c.isalnum() or c in "-_" for c in lowered):  # a tag name: '_' stood for any character
        matches.append(func.lower(Lora.name).like(lowered, escape="\\"))
    rows = session.scalars(visible.where(or_(*matches))).all()
    rows = [r for r in rows if lowered in {r.name.lower(), tag_name(r).lower(), *(t.lower() for t in r.trigger_words)}]
    if not rows:
        raise Invalid(
            f"no LoRA called {text[:80]!r} in your library (a prompt tag names a LoRA by its name, trigger word or "
            "id); pick one in LoRA Selection, or import the file into the LoRA Library first"
        )
    mine = {owner_id: 0, None: 1}
    return min(rows, key=lambda r: (mine.get(r.owner_id, 2), r.family != family, -r.id))


@writes
def set_public(session: Session, *, owner_id: int, lora_id: int, public: bool) -> LoraOut:
    """Share one's LoRA with every user (read-only for them, usage counted) or take it back."""
    lora = own_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    lora.public = public
    return to_out(session, lora)


@writes
def update_lora(session: Session, *, owner_id: int, lora_id: int, data: LoraUpdate) -> LoraOut:
    """Rename or describe a LoRA of one's own; generations use the new words at once (no file changes)."""
    lora = own_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    if data.name is not None:
        if not data.name.strip():
            raise Invalid("a LoRA's name needs a letter or digit")
        lora.name = data.name.strip()
    if data.description is not None:
        lora.description = check_description(data.description)
    return to_out(session, lora)


def get_lora(session: Session, *, owner_id: int, lora_id: int) -> LoraOut:
    """One library entry."""
    return to_out(session, get_lora_row(session, owner_id=owner_id, lora_id=lora_id))


def version_row(session: Session, *, owner_id: int, lora_id: int, version: int | None = None) -> LoraVersion:
    """A version of a LoRA (the newest by default)."""
    get_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    query = select(LoraVersion).where(LoraVersion.lora_id == lora_id)
    if version is not None:
        query = query.where(LoraVersion.version == version)
    found = session.scalar(query.order_by(LoraVersion.version.desc()))
    if found is None:
        raise NotFound(f"LoRA {lora_id} has no version {version}" if version else f"LoRA {lora_id} has no file yet")
    return found


def register_file(
    session: Session,
    store: BlobStore,
    *,
    owner_id: int | None,
    path: Path,
    name: str,
    source: str,
    character_id: int | None = None,
    style_id: int | None = None,
    job_id: int | None = None,
    training_seconds: float | None = None,
    info: LoraInfo | None = None,
    step: int | None = None,
    scores: VersionScores | None = None,
) -> LoraOut:
    """Check a LoRA file with the engine (the refusals of `lora inspect`), store it, and add it as a new
    version of its character's or style's LoRA (same family), or as a new library entry. The file is checked
    before the write lock is taken; inside a caller's write (a training's end) the new version joins it. A
    file the engine has just written comes with its `info`, which is then not read back. A scored training
    names the checkpoint's `step` and its `scores`."""
    info = info or read_lora(path).info
    return _add_version(
        session,
        store,
        info=info,
        path=path,
        owner_id=owner_id,
        name=name,
        source=source,
        character_id=character_id,
        style_id=style_id,
        job_id=job_id,
        training_seconds=training_seconds,
        step=step,
        scores=scores,
    )


@writes
def _add_version(
    session: Session,
    store: BlobStore,
    *,
    info,
    path: Path,
    owner_id: int | None,
    name: str,
    source: str,
    character_id: int | None,
    style_id: int | None,
    job_id: int | None,
    training_seconds: float | None,
    step: int | None = None,
    scores: VersionScores | None = None,
) -> LoraOut:
    # Stored under the write lock: purge_deleted (under it too) removes a blob no live LoRA uses, and this
    # file may be such a blob until its version row is added.
    blob = store.put_file(path)
    lora = None
    if character_id or style_id:  # a new version of the character's (or style's) LoRA for this family
        lora = session.scalar(
            select(Lora).where(
                _same(Lora.owner_id, owner_id),
                _same(Lora.character_id, character_id),
                _same(Lora.style_id, style_id),
                _same(Lora.family, info.family),
                ~Lora.deleted,
            )
        )
    if lora is None:
        lora = Lora(
            owner_id=owner_id,
            name=name[:120],
            kind=info.kind or DEFAULT_KIND,
            family=info.family,
            character_id=character_id,
            style_id=style_id,
            source=source,
        )
        session.add(lora)
    lora.trigger_words = info.trigger_words
    lora.triggers_text = " ".join(info.trigger_words)[:400]
    lora.description = info.description
    lora.recommended_strength = info.recommended_strength
    seconds = training_seconds if training_seconds is not None else info.training.seconds
    lora.training_seconds = seconds
    session.flush()
    latest = session.scalar(select(func.max(LoraVersion.version)).where(LoraVersion.lora_id == lora.id)) or 0
    session.add(
        LoraVersion(
            lora_id=lora.id,
            version=latest + 1,
            blob=blob,
            size=path.stat().st_size,
            rank=info.rank,
            training_seconds=seconds,
            job_id=job_id,
            step=step,
            scores=scores.model_dump(mode="json") if scores else None,
        )
    )
    session.flush()
    return to_out(session, lora)


@writes
def switch_version(session: Session, store: BlobStore, *, owner_id: int, lora_id: int, alternative_id: int) -> LoraOut:
    """Make a new version of one's LoRA from one of its alternatives' files (with its scores). The alternatives
    then stand by the new version, the one switched from among them, so the user can switch back."""
    lora = own_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    alt = session.get(LoraAlternative, alternative_id)
    if alt is None or alt.lora_id != lora.id or alt.expires_at <= now():
        raise NotFound(
            f"LoRA {lora_id} has no alternative {alternative_id} (alternatives are kept for a while after "
            "training, then deleted)"
        )
    current = session.scalar(
        select(LoraVersion).where(LoraVersion.lora_id == lora.id).order_by(LoraVersion.version.desc())
    )
    if current is None or alt.version_id != current.id:
        raise Conflict(
            f"alternative {alternative_id} belongs to an older version of LoRA {lora_id}; a newer version replaced "
            "it - switch among the newest version's alternatives"
        )
    if not store.exists(alt.blob):
        raise NotFound(f"the file of alternative {alternative_id} is gone; it cannot be switched to")
    chosen = VersionScores.model_validate(current.scores).score.step if current.scores else current.step
    scores = VersionScores.model_validate(alt.scores).model_copy(
        update={
            "chosen": False,
            "message": f"switched by you to step {alt.step}"
            + (f" (the evaluation chose step {chosen})" if chosen is not None else ""),
        }
    )
    new = LoraVersion(
        lora_id=lora.id,
        version=current.version + 1,
        blob=alt.blob,
        size=alt.size,
        rank=current.rank,
        training_seconds=current.training_seconds,
        job_id=current.job_id,
        step=alt.step,
        scores=scores.model_dump(mode="json"),
    )
    session.add(new)
    session.flush()
    # The version switched from becomes an alternative (its file stays the version's too), the others follow.
    if current.step is not None and current.scores is not None:
        session.add(
            LoraAlternative(
                lora_id=lora.id,
                version_id=new.id,
                step=current.step,
                blob=current.blob,
                size=current.size,
                scores=current.scores,
                expires_at=alt.expires_at,
            )
        )
    for other in session.scalars(select(LoraAlternative).where(LoraAlternative.version_id == current.id)):
        if other.id == alt.id:
            session.delete(other)  # its file is the new version's now
        else:
            other.version_id = new.id
    session.flush()
    return to_out(session, lora)


def import_lora(session: Session, store: BlobStore, *, owner_id: int, data: bytes, filename: str) -> LoraOut:
    """Import an uploaded .safetensors LoRA (kohya, diffusers or peft layout) into the library: the file is
    checked first, then stored and added under the write lock."""
    stem = Path(filename or "imported").stem[:120] or "imported"
    if not (filename or "").lower().endswith(".safetensors"):
        raise Invalid(f"{filename[:80]!r}: LoRAs are imported as .safetensors files only (pickles can run code)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.safetensors"
        path.write_bytes(data)
        try:
            info = read_lora(path).info
        except LoraStudioError as exc:  # its checks name the file they read: the user knows their own name
            exc.args = (
                str(exc).replace(path.name, Path(filename).name[:120]).replace(str(path), Path(filename).name[:120]),
            )
            raise
        return _import(
            session, store, info=info, path=path, digest=hashlib.sha256(data).hexdigest(), owner_id=owner_id, name=stem
        )


@writes
def _import(session: Session, store: BlobStore, *, info, path: Path, digest: str, owner_id: int, name: str) -> LoraOut:
    same = session.scalar(
        select(Lora).join(LoraVersion).where(LoraVersion.blob == digest, Lora.owner_id == owner_id, ~Lora.deleted)
    )
    # One of your own files brought back: one entry, not a second with the same trigger. (A shipped or shared
    # file may be imported: the copy is yours to rename and describe.)
    if same is not None:
        raise Conflict(f"this file is already in your library as {same.name!r} (LoRA {same.id}); use that one")
    return _add_version(
        session,
        store,
        info=info,
        path=path,
        owner_id=owner_id,
        name=name,
        source="imported",
        character_id=None,
        style_id=None,
        job_id=None,
        training_seconds=None,
    )


def _matches(session: Session, q: str):
    """Name, trigger or description contains q (case-insensitive): through the trigram index on SQLite
    when q has the three characters a trigram needs, else a LIKE scan."""
    if len(q) >= 3 and session.get_bind().dialect.name == "sqlite":
        phrase = '"' + q.replace('"', '""') + '"'  # one quoted FTS5 string: no query syntax reaches MATCH
        hits = text("SELECT rowid FROM loras_fts WHERE loras_fts MATCH :phrase").bindparams(phrase=phrase)
        return Lora.id.in_(hits.columns(column("rowid", Integer)))
    like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(*(func.lower(c).like(like, escape="\\") for c in (Lora.name, Lora.triggers_text, Lora.description)))


def list_loras(
    session: Session,
    *,
    owner_id: int,
    q: str | None = None,
    kind: str | None = None,
    family: str | None = None,
    sort: str = "created",
    order: str = "desc",
    page: int = 1,
    per_page: int = 20,
) -> LoraPage:
    """Search (name, trigger, description), filter by kind and family, sort by any metric, paginate."""
    if sort not in SORTS:
        raise Invalid(f"unknown sort {sort[:30]!r}; choose one of: {', '.join(SORTS)}")
    if order not in ("asc", "desc"):
        raise Invalid("order is asc or desc")
    query = select(Lora).where(_visible(owner_id), ~Lora.deleted)
    q = "".join(ch for ch in (q or "") if ch.isprintable()).strip()[:100]  # a NUL would end the pattern early
    if q:
        query = query.where(_matches(session, q))
    if kind:
        query = query.where(Lora.kind == kind)
    if family:
        query = query.where(Lora.family == family)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = SORTS[sort]
    ordered = column.asc().nulls_last() if order == "asc" else column.desc().nulls_last()
    rows = session.scalars(query.order_by(ordered, Lora.id.desc()).offset((page - 1) * per_page).limit(per_page))
    return LoraPage(items=[LoraOut.model_validate(r) for r in rows], total=total, page=page, per_page=per_page)


@writes
def delete_lora(session: Session, store: BlobStore, *, owner_id: int, lora_id: int) -> dict:
    """Delete a LoRA of one's own. One that a job in flight uses is hidden from the library at once and
    its files are kept until nothing references it (the answer says so)."""
    lora = own_lora_row(session, owner_id=owner_id, lora_id=lora_id)
    in_use = session.scalar(
        select(func.count())
        .select_from(JobLora)
        .join(Job, Job.id == JobLora.job_id)
        .where(JobLora.lora_id == lora_id, Job.status.in_(IN_FLIGHT))
    )
    in_storyboards = session.scalar(
        select(func.count(func.distinct(StoryboardScene.storyboard_id)))
        .join(JobLora, JobLora.job_id == StoryboardScene.job_id)
        .where(JobLora.lora_id == lora_id)
    )
    lora.deleted = True
    if in_use or in_storyboards:
        users = [f"the {in_use} job(s) using it finish"] if in_use else []
        users += [f"its {in_storyboards} storyboard(s) no longer use it"] if in_storyboards else []
        return {
            "deleted": True,
            "files_kept": True,
            "message": "removed from the library; its files are kept until " + " and ".join(users),
        }
    purge_deleted(session, store)
    return {"deleted": True, "files_kept": False, "message": "deleted"}


@writes
def purge_deleted(session: Session, store: BlobStore) -> int:
    """Remove the files of deleted LoRAs that no job in flight uses and no live LoRA shares, and expired
    alternatives; how many rows went."""
    dropped = purge_alternatives(session, store)  # first: an alternative points at its version
    # A storyboard's panels are re-rolled and exported from their jobs' LoRA files: those stay too.
    storyboarded = select(StoryboardScene.job_id)
    busy = (
        select(JobLora.lora_id)
        .join(Job, Job.id == JobLora.job_id)
        .where(Job.status.in_(IN_FLIGHT) | Job.id.in_(storyboarded))
    )
    live = select(LoraVersion.blob).join(Lora).where(~Lora.deleted)
    kept = select(LoraAlternative.blob)  # a live LoRA's alternative may be the same file
    rows = session.execute(
        select(LoraVersion.id, LoraVersion.blob)
        .join(Lora)
        .where(Lora.deleted, Lora.id.not_in(busy), LoraVersion.blob.not_in(live), LoraVersion.blob.not_in(kept))
    ).all()
    for version_id, blob in rows:
        store.delete(blob)
        session.delete(session.get(LoraVersion, version_id))
    return dropped + len(rows)
