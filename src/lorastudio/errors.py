"""Domain errors shared by every layer; each face (CLI, HTTP) translates them once."""

from __future__ import annotations


class LoraStudioError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    code = "error"


class Invalid(LoraStudioError):
    """The input cannot be used as given (bad option, bad file, too few images)."""

    code = "invalid"


class NotFound(LoraStudioError):
    """A named thing (file, model, LoRA) does not exist."""

    code = "not_found"


class Conflict(LoraStudioError):
    """The request clashes with the current state (a trigger word taken, a job already finished)."""

    code = "conflict"


class InsufficientCredits(LoraStudioError):
    """The balance does not cover what a job would hold; the message says how many credits are missing."""

    code = "insufficient_credits"

    def __init__(self, message: str, *, needed: int, balance: int):
        super().__init__(message)
        self.needed, self.balance = needed, balance


class Unauthorized(LoraStudioError):
    """No valid login or token: log in (or send `Authorization: Bearer <token>`)."""

    code = "unauthorized"


class Forbidden(LoraStudioError):
    """Logged in, but the request is refused (a missing CSRF token, a disabled account)."""

    code = "forbidden"


class RateLimited(LoraStudioError):
    """Too many attempts; the message says when to try again."""

    code = "rate_limited"


class TooLarge(Invalid):
    """An upload is over a size or count limit (Settings)."""

    code = "too_large"


class Unsupported(Invalid):
    """The input is well-formed but of a kind we refuse (pickle checkpoints, unknown model families)."""

    code = "unsupported"


class FamilyMismatch(Invalid):
    """A LoRA and a base model belong to different model families."""

    code = "family_mismatch"


class TrainingFailed(LoraStudioError):
    """Training stopped with an error; the last checkpoint is kept."""

    code = "training_failed"


class OutOfMemory(TrainingFailed):
    """The device ran out of memory; the message says which settings to lower."""

    code = "out_of_memory"


class NaNLoss(TrainingFailed):
    """The loss became NaN or infinite; training was stopped."""

    code = "nan_loss"


class Unavailable(LoraStudioError):
    """A service the studio depends on (file store, queue, database) cannot be reached just now."""

    code = "unavailable"


class DiskFull(LoraStudioError):
    """The disk (or quota) under the studio's home is full; the message says where to free space."""

    code = "disk_full"


class Stopped(LoraStudioError):
    """The caller asked the work to stop (should_stop); nothing half-made was kept."""

    code = "stopped"


def format_validation_error(exc: Exception, what: str) -> str:
    """One readable line per bad field of a pydantic ValidationError: 'invalid <what> - field: message; ...'."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    lines = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ())) or what
        msg = str(err.get("msg", "invalid value"))
        lines.append(f"{where}: {msg.removeprefix('Value error, ')}")
    return f"invalid {what} - " + ("; ".join(lines) or str(exc))
