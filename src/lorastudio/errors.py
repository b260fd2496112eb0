"""Domain errors shared by every layer; each face (CLI, HTTP) translates them once.

A message names the settings to change by their field names, marked with a dollar sign: `$batch_size`
(a field of TrainConfig or GenerateRequest, listed in SETTINGS). Each face words them once, through `words`
and its own vocabulary: the CLI as its flags (`--batch-size`), the HTTP face as the API's field names
(`batch_size`); `str(error)`, a log line and a job's stored error use the neutral words of SETTINGS
("the batch size"). An `aside` is said only by a face that offers every setting it names: "$resume continues
from the last checkpoint" means something to the CLI and nothing to a web user, whose run cannot be resumed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Every setting a message may name, in face-neutral words (what str(error) and a stored job error say).
# A message reads them where a face's own word for the setting would stand: "Lower $batch_size (now 4)".
SETTINGS: dict[str, str] = {
    "add_triggers": "adding missing trigger words",
    "base": "the base model",
    "batch_size": "the batch size",
    "blocks_to_swap": "block swap",
    "device": "the device",
    "devices": "the number of devices",
    "fuse": "fusing",
    "gradient_checkpointing": "gradient checkpointing",
    "learning_rate": "the learning rate",
    "loras": "the LoRA selection",
    "n": "the number of images",
    "optimizer": "the optimizer",
    "output": "the output file",
    "precision": "mixed precision",
    "quantize_base": "8-bit base (quantize the base)",
    "resolution": "the resolution",
    "resume": "resuming",
    "run_dir": "the run folder",
    "sampler": "the sampler",
    "seeds": "the seeds",
    "strengths": "the strengths",
    "train_text_encoder": "training the text encoder",
}
_MARK = re.compile(r"\$([a-z][a-z0-9_]*)")


def words(error: BaseException | str, vocabulary: Mapping[str, str] | None = None) -> str:
    """The message of `error` (or a marked-up text) with each `$setting` in a face's words.

    vocabulary maps a setting to how this face names it ({"batch_size": "--batch-size"}); a setting it
    lacks keeps its neutral words (SETTINGS), and an aside naming one is left out. No vocabulary: the
    face-neutral message, as str(error) gives it and as a job's error is stored."""
    vocabulary = vocabulary or {}
    if isinstance(error, BaseException):
        template = str(error.args[0]) if len(error.args) == 1 else Exception.__str__(error)
        aside = getattr(error, "aside", None)
    else:
        template, aside = str(error), None
    text = _fill(template, vocabulary)
    if aside and all(name in vocabulary for name in _MARK.findall(aside) if name in SETTINGS):
        text += "; " + _fill(aside, vocabulary)
    return text


def _fill(text: str, vocabulary: Mapping[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name in vocabulary:
            return vocabulary[name]
        return SETTINGS.get(name, match.group(0))  # a `$word` that names no setting is left as written

    return _MARK.sub(one, text)


class LoraStudioError(Exception):
    """Base class: the message says what went wrong and what to do about it.

    setting: the field (of TrainConfig, GenerateRequest) to change, if one is to blame; each face names it in
    its own words, and the HTTP error body carries it. aside: a clause said only where the face offers every
    setting it names (see the module's doc)."""

    code = "error"

    def __init__(self, *args: object, setting: str | None = None, aside: str | None = None):
        super().__init__(*args)
        self.setting, self.aside = setting, aside

    def __str__(self) -> str:
        return words(self)


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
