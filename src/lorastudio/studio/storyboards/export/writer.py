"""Storyboard exports: PDF (pdf.py), contact-sheet PNG (export/contact_sheet.py) and ZIP (the
panel PNGs as stored, the LoRA files they used, and manifest.json: storyboard_manifest.py).

An export is a job of type "export" (progress per panel; the file goes to the blob store and the job's
result names it) or, from the CLI, a direct call on a file. Every file is written temp-then-rename and
every name inside a ZIP is made here, never from user text."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from lorastudio import __version__
from lorastudio.engine import has_word
from lorastudio.errors import Conflict, Invalid, NotFound
from lorastudio.fileio import write_atomic
from lorastudio.studio import jobs
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.db import Character, Image, Job, Lora, write_transaction, writes, writing
from lorastudio.studio.jobs import ExportJob, ExportResult, JobOut, JobProgress, JobRun
from lorastudio.studio.storyboards import service
from lorastudio.studio.storyboards.export.manifest import FORMAT, Manifest, pixel_digest
from lorastudio.studio.storyboards.export.pdf import write_pdf
from lorastudio.studio.storyboards.export.snapshot import Panel, Snapshot
from lorastudio.studio.storyboards.identity import judge

CONTENT = {"pdf": ("application/pdf", "pdf"), "png": ("image/png", "png"), "zip": ("application/zip", "zip")}
Progress = Callable[[int, int], None]  # (panels done, panels in all)
IDENTITY_FIELDS = {"name", "score", "by", "text", "drifted", "reason"}  # what an export says of a panel's identity
# What of an image's PNG record the manifest keeps: all that decides its pixels, and the base's identity.
RECORD = (
    "base",
    "model",
    "model_hash",
    "prompt",
    "negative_prompt",
    "seed",
    "first_seed",
    "batch_index",
    "batch_size",
    "steps",
    "cfg_scale",
    "sampler",
    "width",
    "height",
    "variation_seed",
    "variation_strength",
    "region_blend",
)


def _characters(session: Session, owner_id: int, jobs_used: list[Job], prompts: list[str]) -> list[dict]:
    """The user's characters whose LoRA a scene used or whose trigger word a prompt has, in order of
    first appearance."""
    lora_ids = [x.lora_id for job in jobs_used for x in jobs.request_of(job).loras if x.lora_id]
    by_lora = {
        lora.id: lora.character_id
        for lora in session.scalars(select(Lora).where(Lora.id.in_(lora_ids), Lora.character_id.is_not(None)))
    }
    mine = list(session.scalars(select(Character).where(Character.owner_id == owner_id).order_by(Character.id)))
    wanted = {by_lora[i] for i in lora_ids if i in by_lora} | {
        c.id for c in mine for prompt in prompts if has_word(prompt, c.trigger)
    }
    return [{"name": c.name, "trigger": c.trigger, "description": c.description} for c in mine if c.id in wanted]


def snapshot(session: Session, store: BlobStore, *, owner_id: int, storyboard_id: int) -> Snapshot:
    """Read the storyboard for export; Invalid when it has no scenes or a scene has no image yet."""
    with writing(session):  # scenes whose job has made images get their default image: a short write of its own
        board = service.get_row(session, owner_id=owner_id, storyboard_id=storyboard_id)
        scenes = service.scene_rows(session, board.id)
        service.fill_images(session, scenes)
    if not scenes:
        raise Invalid(f"storyboard {board.id} has no scenes yet; add scenes from generation jobs first")
    waiting = [s for s in scenes if s.image_id is None]
    if waiting:
        s = waiting[0]
        status = session.get(Job, s.job_id).status
        raise Invalid(
            f"scene {s.position + 1} ({s.title or 'untitled'}) has no image yet: its job {s.job_id} is "
            f"{status}; export when it has finished, or remove the scene"
        )
    images = [session.scalar(select(Image).where(Image.id == s.image_id, Image.owner_id == owner_id)) for s in scenes]
    names = service.lora_names(session, owner_id, {x["hash"] for i in images if i for x in i.params.get("loras", [])})
    snap = Snapshot(board.id, board.title, board.description)
    for number, (scene, image) in enumerate(zip(scenes, images, strict=True), start=1):
        if image is None:
            raise NotFound(f"the image of scene {number} is gone")
        params = dict(image.params)
        params["loras"] = [x | {"name": names.get(x["hash"], x["name"])} for x in params.get("loras", [])]
        with PILImage.open(store.path(image.blob)) as png:
            picture = png.convert("RGB")
        snap.panels.append(Panel(number, scene.title, scene.notes, image.blob, params, picture))
    judged, lines = judge([(p.number, i.identity) for p, i in zip(snap.panels, images, strict=True)])
    for panel, identity in zip(snap.panels, judged, strict=True):
        panel.identity = [x.model_dump(include=IDENTITY_FIELDS) for x in identity or []]
    snap.consistency = [line.text for line in lines]
    used = [session.get(Job, s.job_id) for s in scenes]
    snap.characters = _characters(session, owner_id, used, [p.params.get("prompt", "") for p in snap.panels])
    return snap


def write_export(snap: Snapshot, fmt: str, dest: Path, store: BlobStore, progress: Progress | None = None) -> Path:
    """Write the export in `fmt` (pdf, png, zip) to dest, atomically."""
    total = len(snap.panels)
    report = (lambda i: progress(i, total)) if progress else (lambda i: None)
    if fmt == "pdf":
        return write_pdf(snap, dest, report)
    if fmt == "png":
        return _write_contact_sheet(snap, dest, report)
    if fmt == "zip":
        return _write_zip(snap, dest, store, report)
    raise Invalid(f"unknown export format {fmt[:20]!r}; use pdf, png or zip")


def _write_contact_sheet(snap: Snapshot, dest: Path, report: Callable[[int], None]) -> Path:
    from lorastudio.export.contact_sheet import contact_sheet

    captions = []
    for panel in snap.panels:
        captions.append(f"{panel.title or 'untitled'} (seed {panel.params.get('seed')})")
        report(panel.number)
    sheet = contact_sheet([p.image for p in snap.panels], captions, snap.title)
    return write_atomic(dest, lambda tmp: sheet.save(tmp, format="PNG"))


def lora_entry(sha256: str) -> str:
    """The ZIP entry of a LoRA file: named by its content, never by user text."""
    return f"loras/{sha256[:16]}.safetensors"


def _write_zip(snap: Snapshot, dest: Path, store: BlobStore, report: Callable[[int], None]) -> Path:
    panels, files = [], {}
    for panel in snap.panels:
        p = panel.params
        loras = []
        for x in p.get("loras", []):
            if not store.exists(x["hash"]):
                raise Invalid(
                    f"panel {panel.number} used a LoRA file ({x['name']}) that is gone from the store; "
                    "re-roll the scene with the LoRAs you have"
                )
            files[lora_entry(x["hash"])] = x["hash"]
            loras.append(
                {
                    "name": x["name"],
                    "file": lora_entry(x["hash"]),
                    "sha256": x["hash"],
                    "strength": x["strength"],
                    "region": x.get("region"),
                }
            )
        png = store.path(panel.png_blob).read_bytes()  # as stored: its PNG text parameters included
        files[f"panels/{panel.number:02d}.png"] = panel.png_blob
        record = {k: p[k] for k in RECORD if k in p}
        panels.append(
            record
            | {
                "number": panel.number,
                "title": panel.title,
                "notes": panel.notes,
                "loras": loras,
                "identity": panel.identity,
                "file": f"panels/{panel.number:02d}.png",
                "png_sha256": hashlib.sha256(png).hexdigest(),
                "pixels_sha256": pixel_digest(panel.image),
            }
        )
        report(panel.number)
    manifest = Manifest.model_validate(
        {
            "format": FORMAT,
            "version": 1,
            "generator": f"lorastudio {__version__}",
            "title": snap.title,
            "description": snap.description,
            "characters": snap.characters,
            "panels": panels,
        }
    )  # validated here too, so an export is never one that regenerate would refuse

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest.model_dump(mode="json"), indent=2))
            for entry, blob in files.items():
                # PNGs are compressed already and LoRA files barely shrink: stored, not deflated.
                archive.write(store.path(blob), entry, compress_type=zipfile.ZIP_STORED)

    return write_atomic(dest, write)


@writes
def submit_export(session: Session, store: BlobStore, *, owner_id: int, storyboard_id: int, fmt: str) -> JobOut:
    """Queue an export job; refused now if it could not succeed."""
    snapshot(session, store, owner_id=owner_id, storyboard_id=storyboard_id)
    job = jobs.add_job(session, owner_id=owner_id, request=ExportJob(storyboard_id=storyboard_id, format=fmt))
    session.flush()
    return jobs.to_out(session, job)


def run_export(run: JobRun) -> None:
    """Write a claimed export job's file into the store; registering it and ending the job are one commit."""
    job, store, request = run.job, run.store, run.request
    with run.factory() as session:
        snap = snapshot(session, store, owner_id=job.owner_id, storyboard_id=request.storyboard_id)
    run.progress(JobProgress(phase="export", total=len(snap.panels)), True)

    def each(done: int, total: int) -> None:
        run.progress(JobProgress(phase="export", step=done, total=total, message=f"panel {done} of {total}"), True)
        if run.should_stop():
            raise _Stop

    fmt = request.format
    dest = run.settings.home / "jobs" / f"job-{job.id}" / f"storyboard-{snap.storyboard_id}.{CONTENT[fmt][1]}"
    try:
        write_export(snap, fmt, dest, store, each)
        blob = store.put_file(dest)  # before the transaction: a file copy never holds the write lock
    except _Stop:
        blob = None
    try:
        with write_transaction(run.factory) as session:
            if blob is None:
                run.finish(session, "canceled", None)
                return
            result = ExportResult(
                blob=blob,
                content_type=CONTENT[fmt][0],
                filename=dest.name,
                format=fmt,
                panels=len(snap.panels),
                size=store.path(blob).stat().st_size,
            )
            run.finish(session, "succeeded", result)
    finally:
        shutil.rmtree(dest.parent, ignore_errors=True)  # the store has the file; the job folder was scratch


class _Stop(Exception):
    """Raised from the progress callback to leave an export between two panels."""


def export_file(session: Session, *, owner_id: int, storyboard_id: int, job_id: int) -> tuple[str, str, str]:
    """(blob, content type, file name) of a finished export of this storyboard."""
    service.get_row(session, owner_id=owner_id, storyboard_id=storyboard_id)
    job = jobs.get_row(session, owner_id=owner_id, job_id=job_id)
    if job.type != "export" or jobs.request_of(job).storyboard_id != storyboard_id:
        raise NotFound(f"export {job_id} of storyboard {storyboard_id} not found")
    if job.status != "succeeded":
        detail = f": {job.error_message}" if job.error_message else ""
        raise Conflict(f"export {job_id} is {job.status}{detail}; download it once it has succeeded")
    result = jobs.result_of(job)
    return result.blob, result.content_type, result.filename
