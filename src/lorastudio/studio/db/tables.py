"""The studio's tables. Every user object has an owner; jobs carry what a worker needs to run them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lorastudio.engine import FIGHTING_STYLE


def now() -> datetime:
    """The current time in UTC (naive in SQLite, so one convention everywhere: UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of the studio tables."""


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2; None: the local user, no login
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class CreditEntry(Base):
    """One line of the append-only credit ledger; a user's balance is the sum of `delta`.

    grant: +amount. hold: -amount (reserved for a job). capture: 0 (records what the hold cost).
    release: +what the hold gives back. One capture and one release per hold at most (unique), so a
    retried or duplicated finish cannot settle a hold twice."""

    __tablename__ = "credit_entries"
    __table_args__ = (
        UniqueConstraint("hold_id", "kind", name="uq_credit_settle_once"),
        Index("ix_credit_entries_user", "user_id", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # grant | hold | capture | release
    amount: Mapped[int] = mapped_column(Integer)  # always >= 0
    delta: Mapped[int] = mapped_column(Integer)  # the change to the balance
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("credit_entries.id"))  # capture/release: their hold
    job_id: Mapped[int | None] = mapped_column(Integer, index=True)
    note: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class ApiToken(Base):
    """A Bearer token: only its SHA-256 is stored; listed by name and prefix, revocable."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class WebSession(Base):
    """A login (cookie): the cookie holds a random id whose SHA-256 is stored, with its CSRF token."""

    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class LoginAttempt(Base):
    """A failed login, for rate limiting by user name and by client address (in the database, so every
    HTTP process sees the same count)."""

    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)


class IdempotencyKey(Base):
    """A submit's Idempotency-Key: the same key and body answer the first response again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(80))  # the route it was used on
    body_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class FightingStyle(Base):
    __tablename__ = "fighting_styles"
    __table_args__ = (UniqueConstraint("owner_id", "trigger"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # None: built in, for all
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    trigger: Mapped[str] = mapped_column(String(64))
    recommended_strength: Mapped[float] = mapped_column(Float, default=FIGHTING_STYLE.recommended_strength)
    phrases: Mapped[list] = mapped_column(JSON, default=list)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Character(Base):
    __tablename__ = "characters"
    __table_args__ = (UniqueConstraint("owner_id", "trigger"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    fighting_style: Mapped[str] = mapped_column(String(120), default="")
    trigger: Mapped[str] = mapped_column(String(64))
    reference_blob: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Lora(Base):
    """A library entry: one LoRA (of a character, a style, or imported) with its versions and metrics."""

    __tablename__ = "loras"
    # The library's count and filters read these (measured in benchmarks/api_load.py: the visible-rows
    # count 3.9 -> 1.2 ms, kind + family 4.5 -> 0.3 ms, sort by name 5.9 -> 0.1 ms on 10,000 LoRAs).
    __table_args__ = (
        Index("ix_loras_owner_name", "owner_id", "name"),
        Index("ix_loras_visible", "deleted", "owner_id"),
        Index("ix_loras_kind_family", "kind", "family", "deleted", "owner_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # None: shipped with us
    name: Mapped[str] = mapped_column(String(120), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    family: Mapped[str | None] = mapped_column(String(32), index=True)
    trigger_words: Mapped[list] = mapped_column(JSON, default=list)
    triggers_text: Mapped[str] = mapped_column(String(400), default="")  # for search
    description: Mapped[str] = mapped_column(Text, default="")
    recommended_strength: Mapped[float | None] = mapped_column(Float)
    character_id: Mapped[int | None] = mapped_column(ForeignKey("characters.id"), index=True)
    style_id: Mapped[int | None] = mapped_column(ForeignKey("fighting_styles.id"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="trained")  # trained | imported | prebuilt
    usage_count: Mapped[int] = mapped_column(Integer, default=0, index=True)
    kept_count: Mapped[int] = mapped_column(Integer, default=0)
    judged_count: Mapped[int] = mapped_column(Integer, default=0)
    success_rate: Mapped[float | None] = mapped_column(Float, index=True)  # kept / judged, kept in step
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    rating_avg: Mapped[float | None] = mapped_column(Float, index=True)
    training_seconds: Mapped[float | None] = mapped_column(Float, index=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)  # in everyone's library, read-only for others
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # hidden; file kept while in use
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)


class LoraVersion(Base):
    __tablename__ = "lora_versions"
    __table_args__ = (UniqueConstraint("lora_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lora_id: Mapped[int] = mapped_column(ForeignKey("loras.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    blob: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int | None] = mapped_column(Integer)
    training_seconds: Mapped[float | None] = mapped_column(Float)
    job_id: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)  # the training step of the checkpoint this file is
    scores: Mapped[dict | None] = mapped_column(JSON)  # library/schemas.VersionScores: its checkpoint's evaluation
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class LoraAlternative(Base):
    """Another evaluated checkpoint of the training that made a version, kept for a while so the user can switch
    to it (a new version from its file) when the chosen one is not what they wanted."""

    __tablename__ = "lora_alternatives"
    id: Mapped[int] = mapped_column(primary_key=True)
    lora_id: Mapped[int] = mapped_column(ForeignKey("loras.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("lora_versions.id"), index=True)  # the version it stands by
    step: Mapped[int] = mapped_column(Integer)
    blob: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict] = mapped_column(JSON)  # library/schemas.VersionScores
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Rating(Base):
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("lora_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    lora_id: Mapped[int] = mapped_column(ForeignKey("loras.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    stars: Mapped[int] = mapped_column(Integer)


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    character_id: Mapped[int | None] = mapped_column(ForeignKey("characters.id"))
    style_id: Mapped[int | None] = mapped_column(ForeignKey("fighting_styles.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class DatasetImage(Base):
    __tablename__ = "dataset_images"
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # cleaned; shown only, never opened as a path
    blob: Mapped[str | None] = mapped_column(String(64))  # None: nothing usable was stored (empty upload)
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | warning | skipped
    problems: Mapped[list] = mapped_column(JSON, default=list)
    caption: Mapped[str | None] = mapped_column(Text)
    # Who wrote the caption: "user" (typed, or a .txt uploaded beside the image) or "auto" (the captioner). A
    # captioning job replaces only "auto" captions and empty ones unless asked to overwrite.
    caption_source: Mapped[str] = mapped_column(String(8), default="user")
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Recipe(Base):
    __tablename__ = "recipes"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    settings: Mapped[dict] = mapped_column(JSON)  # loras (with strengths, regions), prompt template, sampler...
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Job(Base):
    """The truth about a piece of work: the queue only wakes workers, this row says what to do."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "status", "lease_expires_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))  # jobs/payloads.JOB_TYPES
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending running succeeded failed canceled
    request: Mapped[dict] = mapped_column(JSON)  # jobs/payloads.JobRequest, by type
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[dict] = mapped_column(JSON, default=dict)  # jobs/payloads.JobProgress
    # A training's newest checkpoint in the blob store ({step, blob}): internal, so not in the public progress.
    checkpoint: Mapped[dict | None] = mapped_column(JSON)
    result: Mapped[dict | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    credit_hold_id: Mapped[int | None] = mapped_column(Integer)  # the credits issue fills it
    # What a worker must have to run it (None: any worker): the base model's family, device memory in MB.
    family: Mapped[str | None] = mapped_column(String(16))
    memory_mb: Mapped[int | None] = mapped_column(Integer)  # on each device it runs on
    # How many devices it runs on at once (a data-parallel training); a worker claims it only with that many free.
    devices: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class WorkerRow(Base):
    """A worker process that announced itself: what it can run, and when it was last heard from."""

    __tablename__ = "workers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(120))  # e.g. "cuda: NVIDIA RTX 6000 Ada Generation"
    memory_mb: Mapped[int] = mapped_column(Integer)  # memory of each device (RAM / devices on a CPU worker)
    # Its devices as [{index, name, memory_mb}] (None: registered before workers reported them, so one device).
    devices: Mapped[list | None] = mapped_column(JSON)
    families: Mapped[list] = mapped_column(JSON)
    queues: Mapped[list] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(String(40))
    current_job_id: Mapped[int | None] = mapped_column(Integer)  # the oldest of the jobs it runs now
    current_job_ids: Mapped[list | None] = mapped_column(JSON)  # every job it runs now (one a device at most)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    seen_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)


class JobLora(Base):
    """A LoRA a generation job used: usage is counted once per job per LoRA."""

    __tablename__ = "job_loras"
    __table_args__ = (UniqueConstraint("job_id", "lora_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    lora_id: Mapped[int] = mapped_column(ForeignKey("loras.id"), index=True)


class Image(Base):
    """A generated image, with the parameters that reproduce it and the user's verdict."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    blob: Mapped[str] = mapped_column(String(64))
    seed: Mapped[str] = mapped_column(String(24))  # seeds reach 2**64: kept as text
    params: Mapped[dict] = mapped_column(JSON)
    verdict: Mapped[str | None] = mapped_column(String(16))  # kept | rejected | None
    # Per character LoRA of the scene: how much the image looks like that character's references
    # (generation/schemas.IdentityScore dumps), scored by the worker that drew it; the storyboard flags drift with it.
    identity: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class DeviceTiming(Base):
    """Measured training speed on a device, so estimates learn from the machines that ran jobs here."""

    __tablename__ = "device_timings"
    id: Mapped[int] = mapped_column(primary_key=True)
    device: Mapped[str] = mapped_column(String(120), index=True)
    family: Mapped[str] = mapped_column(String(32))
    resolution: Mapped[int] = mapped_column(Integer)
    seconds_per_step: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Storyboard(Base):
    """An ordered fight sequence of scenes, exported as PDF, contact sheet or ZIP."""

    __tablename__ = "storyboards"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class StoryboardScene(Base):
    """One panel: a generation job's scene with the image chosen among its images."""

    __tablename__ = "storyboard_scenes"
    id: Mapped[int] = mapped_column(primary_key=True)
    storyboard_id: Mapped[int] = mapped_column(ForeignKey("storyboards.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 0, 1, 2, ... in the storyboard's order
    title: Mapped[str] = mapped_column(String(120), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)  # the generation it comes from
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"))  # None until the job has images
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
