"""Silence the ML libraries' own progress bars and advisory warnings; our faces report progress."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Call once at an entry point, before importing torch/diffusers/transformers."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    # peft warns whenever a second adapter is loaded; stacking adapters is what generation does.
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")
    for name in ("transformers", "diffusers", "peft", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Their own tqdm bars ("Loading weights", "Writing model shards") ignore the log level.
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
