"""What a runner gets for the job it runs: the claimed row, its typed request, and the worker's callbacks
(progress, stop check, checkpoint, finish). The worker builds one per job; each job type's runner uses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from lorastudio.config import Settings
from lorastudio.studio.blobs import BlobStore
from lorastudio.studio.db import Job
from lorastudio.studio.jobs.payloads import (
    Checkpoint,
    ExportJob,
    ExportResult,
    GenerationJob,
    GenerationResult,
    JobProgress,
    TrainingJob,
    TrainingResult,
)

Result = TrainingResult | GenerationResult | ExportResult


@dataclass
class JobRun:
    """One claimed job as its runner sees it."""

    job: Job  # detached: read it, never write it (the row changes only through the callbacks)
    request: TrainingJob | GenerationJob | ExportJob
    settings: Settings
    factory: sessionmaker[Session]
    store: BlobStore
    worker: str
    progress: Callable[[JobProgress, bool], None]  # (progress, force): written at most every 0.5 s unless forced
    should_stop: Callable[[], bool]  # cancel asked, lease lost, or the worker stopping
    keep_checkpoint: Callable[[Checkpoint], None]  # the newest stored checkpoint, for a worker taking over
    finish: Callable[[Session, str, Result | None], None]  # inside the transaction that registers what it made
    cache: object | None = None  # the worker's warm pipeline (generation), the one of this job's device
    # The indices of the devices this job holds (as many as its row's `devices`). On CUDA the job's thread has
    # the first as its current device, so "cuda" means it; a training passes them all on (TrainConfig.device_ids).
    device_ids: tuple[int, ...] = (0,)
