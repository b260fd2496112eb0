"""Jobs: the rows (submit, claim, lease, progress, finish), their typed payloads, the wake-up queue, the
worker registry and what a job needs of a worker. Other areas use only what is named here."""

from lorastudio.studio.jobs.capabilities import Capabilities, detect, generation_memory_mb, training_memory_mb
from lorastudio.studio.jobs.idempotency import check_key, once
from lorastudio.studio.jobs.metrics import Snapshot, snapshot
from lorastudio.studio.jobs.payloads import (
    JOB_TYPES,
    Checkpoint,
    ExportJob,
    ExportResult,
    GenerationJob,
    GenerationResult,
    JobProgress,
    TrainingJob,
    TrainingResult,
    progress_of,
    request_of,
    result_of,
)
from lorastudio.studio.jobs.queue import make_queue, wake
from lorastudio.studio.jobs.registry import OPERATOR, WorkerRow, beat, list_workers, register, stopped, viewer_for
from lorastudio.studio.jobs.rows import (
    FINAL,
    add_job,
    cancel,
    claim,
    finish,
    get_job,
    get_row,
    keep_checkpoint,
    list_jobs,
    reap,
    release,
    renew,
    report,
    to_out,
)
from lorastudio.studio.jobs.run import JobRun
from lorastudio.studio.jobs.schemas import JobOut, WorkerOut

__all__ = [
    "Capabilities",
    "Checkpoint",
    "ExportJob",
    "ExportResult",
    "FINAL",
    "GenerationJob",
    "GenerationResult",
    "JOB_TYPES",
    "JobOut",
    "JobProgress",
    "JobRun",
    "OPERATOR",
    "Snapshot",
    "TrainingJob",
    "TrainingResult",
    "WorkerOut",
    "WorkerRow",
    "add_job",
    "beat",
    "cancel",
    "check_key",
    "claim",
    "detect",
    "finish",
    "generation_memory_mb",
    "get_job",
    "get_row",
    "keep_checkpoint",
    "list_jobs",
    "list_workers",
    "make_queue",
    "once",
    "progress_of",
    "reap",
    "register",
    "release",
    "renew",
    "report",
    "request_of",
    "result_of",
    "snapshot",
    "stopped",
    "to_out",
    "training_memory_mb",
    "viewer_for",
    "wake",
]
