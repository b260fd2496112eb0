"""The jobs area's data in and out (pydantic), every field described: the HTTP API's schema too."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from lorastudio.studio.db import Out
from lorastudio.studio.jobs.payloads import JobProgress, JobRequest, JobResult


class JobOut(Out):
    """A job: its status, progress and result."""

    id: int = Field(description="Job id")
    type: str = Field(description="training, generation, export or caption")
    status: str = Field(description="pending, running, succeeded, failed or canceled")
    attempts: int = Field(description="How many times a worker started it")
    progress: JobProgress = Field(description="How far it is")
    result: JobResult | None = Field(description="What it made (LoRA id and version, image ids, or a file)")
    error_code: str | None = Field(description="Stable error code when it failed")
    error_message: str | None = Field(description="What went wrong and what to do")
    request: JobRequest = Field(description="What was asked for, as validated at submit (by `type`)")
    cancel_requested: bool = Field(description="A cancel was asked for")
    created_at: datetime = Field(description="Submitted (UTC)")
    started_at: datetime | None = Field(description="First started (UTC)")
    finished_at: datetime | None = Field(description="Finished (UTC)")
    credits: dict | None = Field(
        default=None, description="This job's credits: held at submit, then charged and released when it ends"
    )
    balance: int | None = Field(default=None, description="Your credit balance as this was read")
    family: str | None = Field(default=None, description="Model family a worker must be able to load")
    memory_mb: int | None = Field(default=None, description="Device memory (MB) a worker must have; null: any")
    waiting: str | None = Field(default=None, description="Why a pending job has not started, when known")
    checkpoint_step: int | None = Field(
        default=None, description="A training's newest stored checkpoint: where it resumes if its worker stops"
    )


class WorkerOut(Out):
    """A worker process of the studio."""

    name: str = Field(description="Its name (lorastudio worker --name)")
    host: str = Field(description="The machine it runs on")
    device: str = Field(description="cuda: <card>, mps or cpu")
    memory_mb: int = Field(description="Device memory it offers (MB), on each of its devices")
    devices: list[dict] | None = Field(
        default=None, description="Its devices: index, name and memory_mb of each (null: one, before devices were told)"
    )
    families: list[str] = Field(description="Model families it loads")
    queues: list[str] = Field(description="Job types it runs")
    version: str = Field(description="LoRA Studio version it runs")
    current_job_id: int | None = Field(description="The job it runs now (the first, when it runs several)")
    current_job_ids: list[int] | None = Field(default=None, description="Every job of yours it runs now")
    jobs_done: int = Field(description="Jobs it has ended since it first registered")
    started_at: datetime = Field(description="Last start (UTC)")
    seen_at: datetime = Field(description="Last heartbeat (UTC)")
    state: str = Field(default="alive", description="alive, lost (no heartbeat for a lease) or stopped")
