"""Training checkpoints kept in the blob store, so a job whose worker died resumes on any other machine.

The engine writes checkpoints into the run's local folder; each new one is also put in the blob store and
named on the job row (its `checkpoint` column: step and blob; internal, so never in the public progress). A
worker taking the job over fetches it into its own run folder when it is newer than what that folder holds
(a worker may have run the job before).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from lorastudio.engine import list_checkpoints
from lorastudio.errors import LoraStudioError
from lorastudio.fileio import write_atomic
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.jobs import Checkpoint

log = logging.getLogger("lorastudio.worker")


def _step(path: Path) -> int:
    return int(path.stem.rsplit("-", 1)[-1])


def restore(store: BlobStore, stored: Checkpoint | None, run_dir: Path) -> int | None:
    """Bring the job's stored checkpoint into `run_dir` when it is newer than the local ones; the step the
    run resumes from (None: from the start). A stored one that cannot be read is skipped (the run starts
    over or resumes from the local one), never a reason to fail the job."""
    local = list_checkpoints(run_dir)
    if stored and (not local or _step(local[-1]) < stored.step):
        try:
            source = store.path(stored.blob)
            target = run_dir / "checkpoints" / f"checkpoint-{stored.step:06d}.safetensors"
            write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))
        except (LoraStudioError, OSError) as exc:
            log.warning("stored checkpoint %s could not be fetched (%s); not resuming from it", stored, exc)
    found = list_checkpoints(run_dir)
    return _step(found[-1]) if found else None


def keep(store: BlobStore, path: Path, step: int) -> Checkpoint:
    """Put a new checkpoint in the blob store; what the job row records of it."""
    return Checkpoint(step=step, blob=store.put_file(path))


def forget(store: BlobStore, stored: Checkpoint | None) -> None:
    """Delete a checkpoint blob that no job needs any more (superseded, or its job has ended)."""
    if stored:
        try:
            store.delete(stored.blob)
        except LoraStudioError as exc:
            log.warning("checkpoint blob %s was not deleted (%s)", stored.blob, exc)
