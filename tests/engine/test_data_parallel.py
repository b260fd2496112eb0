"""One LoRA on N processes: torchrun starts two real gloo ranks on the CPU (no mock of torch.distributed).

Two ranks with a batch of 1 each must train what one process trains with a batch of 2 and the same seed: the
same noise and timesteps (drawn for the global batch, then sliced), the gradients summed over the ranks.
Only the order of float sums differs, so the losses agree to 1e-6. The weights agree within TOLERANCE of the
most AdamW could have moved them (learning rate x steps): AdamW divides each gradient by its running RMS, so
for a weight whose gradient is near zero a difference in the last bits still moves it by part of a step."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from lorastudio.engine.progress import ProgressEvent
from lorastudio.engine.toyworld.consistency import character_references
from lorastudio.engine.toyworld.world import HELD_OUT_CHARACTERS
from lorastudio.engine.training.checkpoint import list_checkpoints, load_checkpoint
from lorastudio.engine.training.config import TrainConfig
from lorastudio.engine.training.distributed import PeerLost, Ranks
from lorastudio.engine.training.launch import _outcome, error_to_json, launch_folder
from lorastudio.engine.training.train import train_lora
from lorastudio.errors import NaNLoss, TrainingFailed
from tests.conftest import tiny_config

TOLERANCE = 0.05  # of learning rate x steps
EXACT = dict(save_precision="fp32", lr_scheduler="constant", warmup_steps=0, seed=5)


def _apart(a_path, b_path) -> float:
    """The largest difference between two LoRA files' weights."""
    a, b = load_file(a_path), load_file(b_path)
    assert set(a) == set(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _within(a_path, b_path, cfg) -> None:
    apart = _apart(a_path, b_path)
    assert apart <= TOLERANCE * cfg.learning_rate * cfg.steps, f"{apart:.2e} apart"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie no one reaped yet is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def john(tmp_path_factory):
    folder = tmp_path_factory.mktemp("john")
    character_references(HELD_OUT_CHARACTERS["johnhero"], folder, n=10)
    return folder


def test_two_processes_train_what_one_process_trains_with_their_global_batch(john, tmp_path, run):
    """The toy world, from the CLI: `--devices 2 --batch-size 1` against one process at `--batch-size 2`."""

    def train(name: str, *extra: str) -> dict:
        args = ["train", john, "--kind", "character", "--trigger", "johnhero", "--base", "toyworld", "--json"]
        args += ["--steps", "6", "--checkpoint-every", "3", "--seed", "5", "--resolution", "32", "--lr", "2e-3"]
        args += ["--dim", "16", "--alpha", "16", "--target", "attn-ff", "--scheduler", "constant", "--warmup", "0"]
        args += ["--out", tmp_path / f"{name}.safetensors", "--run-dir", tmp_path / name, *extra]
        result = run(*args)
        assert result.exit_code == 0, result.output
        return json.loads(result.output[result.output.index("{\n") :])

    one = train("one", "--batch-size", "2")
    two = train("two", "--batch-size", "1", "--devices", "2")
    assert two["devices"] == 2 and two["global_batch"] == 2 and two["steps"] == 6
    for (_, a), (_, b) in zip(one_losses(tmp_path / "one"), one_losses(tmp_path / "two"), strict=True):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a))
    apart = _apart(one["lora"], two["lora"])
    assert apart <= TOLERANCE * 2e-3 * 6, f"{apart:.2e} apart"
    with safe_open(two["lora"], "pt") as f:
        meta = f.metadata()
    assert meta["ss_num_processes"] == "2" and meta["ss_total_batch_size"] == "2"
    # rank 0 alone wrote the checkpoint, once; no settings file is left behind
    assert [p.name for p in list_checkpoints(tmp_path / "two")] == ["checkpoint-000003.safetensors"]
    assert not (launch_folder(tmp_path / "two") / "settings.json").exists()


def one_losses(run_dir) -> list:
    return json.loads((run_dir / "loss_history.json").read_text())["loss"]


def test_a_killed_rank_ends_the_others_and_a_single_process_resumes_exactly(settings, figure_dir, tmp_path):
    """kill -9 one rank: the run fails within seconds, no process is left, and the last checkpoint resumes
    on one process (batch 2, the same global batch) into what an uninterrupted run makes."""
    cfg = tiny_config(figure_dir, tmp_path / "two", steps=100_000, checkpoint_every=2, batch_size=1, devices=2, **EXACT)
    folder = launch_folder(cfg.run_dir)
    killed: dict[str, float] = {}

    def kill_at_second_checkpoint(event: ProgressEvent) -> None:
        if event.phase == "checkpoint" and event.step >= 4 and not killed:
            killed["at"] = time.monotonic()
            os.kill(int((folder / "rank-1.pid").read_text()), signal.SIGKILL)

    pids = []
    watcher = threading.Thread(target=lambda: pids.extend(_pids_when_started(folder)), daemon=True)
    watcher.start()
    with pytest.raises(TrainingFailed) as err:
        train_lora(cfg, settings=settings, on_progress=kill_at_second_checkpoint)
    ended = time.monotonic() - killed["at"]
    assert ended < 15, f"the other rank took {ended:.1f} s to stop"
    message = str(err.value)
    assert "ended without a result" in message and "$resume" not in message and str(tmp_path) not in message
    watcher.join(5)
    assert len(pids) == 2 and not [p for p in pids if _alive(p)], "a rank outlived the run"

    last = list_checkpoints(cfg.run_dir)[-1]
    k = load_checkpoint(last).step
    assert k >= 4
    resumed = cfg.model_copy(update={"devices": 1, "batch_size": 2, "steps": k + 2, "resume": True})
    resumed = resumed.model_copy(update={"output": tmp_path / "resumed.safetensors"})
    events = []
    result = train_lora(resumed, settings=settings, on_progress=events.append)
    assert any(e.message == "resumed from checkpoint" and e.step == k for e in events)
    straight = tiny_config(
        figure_dir, tmp_path / "one", steps=k + 2, checkpoint_every=2, batch_size=2, keep_checkpoints=1000, **EXACT
    )
    reference = train_lora(straight, settings=settings)
    _within(result.lora_path, reference.lora_path, straight)


def _pids_when_started(folder) -> list[int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        files = [folder / "rank-0.pid", folder / "rank-1.pid"]
        if all(f.exists() for f in files):
            return [int(f.read_text()) for f in files]
        time.sleep(0.05)
    return []


def test_a_flow_family_stops_and_resumes_on_two_processes(settings, figure_dir, tmp_path):
    """tiny FLUX.1: the caller's stop reaches both ranks at one step and rank 0 keeps a checkpoint, which
    one process at the global batch resumes into what it would have made alone."""
    from lorastudio.engine.models.tiny import ensure_tiny_model

    ensure_tiny_model("tiny-flux1", settings.models_dir)
    cfg = tiny_config(figure_dir, tmp_path / "two", base="tiny-flux1", steps=10_000, batch_size=1, devices=2, **EXACT)
    seen = []
    stopped = train_lora(
        cfg, settings=settings, on_progress=seen.append, should_stop=lambda: any(e.phase == "train" for e in seen)
    )
    assert stopped.stopped and 1 <= stopped.steps_done < 10_000 and stopped.checkpoints
    # The latent cache was built once: rank 0 encoded its half of the 8 pictures, the other rank the rest.
    assert {e.total for e in seen if e.phase == "cache" and e.total} == {4}
    at = stopped.steps_done
    resumed = cfg.model_copy(update={"resume": True, "steps": at + 2, "devices": 1, "batch_size": 2})
    finished = train_lora(resumed, settings=settings)
    assert not finished.stopped and finished.steps_done == at + 2 and finished.info is not None
    one = tiny_config(figure_dir, tmp_path / "one", base="tiny-flux1", steps=at + 2, batch_size=2, **EXACT)
    _within(finished.lora_path, train_lora(one, settings=settings).lora_path, one)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-flux2-klein", "tiny-qwen-image", "tiny-z-image"])
def test_every_family_trains_the_same_on_two_processes(settings, figure_dir, tmp_path, name):
    from lorastudio.engine.models.tiny import ensure_tiny_model

    ensure_tiny_model(name, settings.models_dir)
    common = dict(base=name, steps=4, **EXACT)
    two = train_lora(tiny_config(figure_dir, tmp_path / "two", batch_size=1, devices=2, **common), settings=settings)
    one = train_lora(tiny_config(figure_dir, tmp_path / "one", batch_size=2, **common), settings=settings)
    _within(two.lora_path, one.lora_path, tiny_config(figure_dir, tmp_path, **common))


def test_uneven_global_batches_give_every_rank_its_contiguous_share():
    shares = [Ranks(3, r).shard(list(range(7))) for r in range(3)]
    assert shares == [(0, 3), (3, 5), (5, 7)]
    assert [Ranks(4, r).shard([9]) for r in range(4)] == [(0, 1), (1, 1), (1, 1), (1, 1)]  # some get none
    assert Ranks.single().shard([1, 2]) == (0, 2)


def test_a_ranks_domain_error_comes_back_as_itself(tmp_path):
    folder = tmp_path / "launch"
    folder.mkdir()
    nan = NaNLoss("the loss became nan; lower $learning_rate", setting="learning_rate")
    (folder / "error-1.json").write_bytes(error_to_json(nan))
    cfg = TrainConfig.model_construct(run_dir=tmp_path, devices=2)
    with pytest.raises(NaNLoss) as err:
        _outcome(folder, cfg, 1)
    assert err.value.setting == "learning_rate" and "the learning rate" in str(err.value)
    # rank 1's collective broke and rank 0 left no word: rank 0 was killed
    (folder / "error-1.json").write_bytes(error_to_json(PeerLost("gloo: connection closed by peer")))
    with pytest.raises(TrainingFailed, match="ended without a result"):
        _outcome(folder, cfg, 1)
    # rank 0 failed of itself (a bug): that is what is said, in one line without the paths after it
    (folder / "error-0.json").write_bytes(error_to_json(RuntimeError("boom\n at /some/build/path")))
    with pytest.raises(TrainingFailed, match=r"unexpectedly \(RuntimeError: boom\)") as err:
        _outcome(folder, cfg, 1)
    assert "/some/build" not in str(err.value)


def test_devices_on_a_machine_that_cannot_is_refused_before_anything_starts(settings, figure_dir, tmp_path):
    from lorastudio.engine import detect_devices
    from lorastudio.errors import Invalid

    assert [d.index for d in detect_devices("cpu", 2)] == [0, 1]
    with pytest.raises(Invalid, match="give one per device"):
        train_lora(tiny_config(figure_dir, tmp_path, devices=2, device_ids=[0]), settings=settings)
    if not torch.cuda.is_available():
        with pytest.raises(Invalid, match="no CUDA GPU"):
            train_lora(tiny_config(figure_dir, tmp_path, devices=2, device="cuda"), settings=settings)
    else:
        many = torch.cuda.device_count() + 1
        with pytest.raises(Invalid, match=f"this machine has {many - 1}"):
            train_lora(tiny_config(figure_dir, tmp_path, devices=many, device="cuda"), settings=settings)
