"""One rank of a data-parallel training: `python -m lorastudio.engine.training.rank LAUNCH_FOLDER`, started
by torchrun (see launch.py). It runs the same train_lora as a single process; rank 0 reports progress and
writes the result, and any rank that fails writes its error for the process that launched them."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from lorastudio.engine.training.lifetime import die_with_parent


def main(folder: Path) -> int:
    """Join the group, train, hand back the result or the error; the exit code says which."""
    from lorastudio.config import Settings
    from lorastudio.engine.progress import never_stop, no_progress
    from lorastudio.engine.training.config import TrainConfig
    from lorastudio.engine.training.distributed import join, leave
    from lorastudio.engine.training.launch import error_to_json, event_to_json, result_to_json
    from lorastudio.engine.training.train import train_lora
    from lorastudio.fileio import write_bytes_atomic

    rank = int(os.environ["RANK"])
    write_bytes_atomic(folder / f"rank-{rank}.pid", str(os.getpid()).encode())
    try:
        cfg = TrainConfig.model_validate_json((folder / "config.json").read_bytes())
        settings = Settings(**json.loads((folder / "settings.json").read_text()))
        join(cfg, settings)
        if rank == 0:
            events = open(folder / "events.jsonl", "ab")  # noqa: SIM115 - open for the whole run

            def emit(event) -> None:
                events.write(event_to_json(event))
                events.flush()

            def stop() -> bool:
                return (folder / "stop").exists()

            result = train_lora(cfg, settings=settings, on_progress=emit, should_stop=stop)
            write_bytes_atomic(folder / "result.json", result_to_json(result))
        else:
            train_lora(cfg, settings=settings, on_progress=no_progress, should_stop=never_stop)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the launcher, in words
        write_bytes_atomic(folder / f"error-{rank}.json", error_to_json(exc))
        import traceback

        traceback.print_exc()  # into torchrun.log, for whoever runs the machine
        return 1
    finally:
        leave()
    return 0


if __name__ == "__main__":
    die_with_parent(signal.SIGKILL, os.getppid())  # torchrun's agent; if it dies, so does this rank
    sys.exit(main(Path(sys.argv[1])))
