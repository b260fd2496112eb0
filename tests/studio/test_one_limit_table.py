"""One table of limits: the HTTP API, the pages and the CLI refuse the same values, because each reads the
engine's own fields (GenerateRequest for a scene, TrainConfig for a training); nobody types a limit again."""

from __future__ import annotations

import re

from annotated_types import Le, Lt, MaxLen
from typer.testing import CliRunner

from lorastudio.cli import app
from lorastudio.engine import GenerateRequest, TrainConfig
from lorastudio.studio.generation import GenerationIn
from lorastudio.studio.training import TrainingSettings


def _bound(field, kind):
    attr = {"Le": "le", "Lt": "lt", "MaxLen": "max_length"}[kind.__name__]
    return next(getattr(m, attr) for m in field.metadata if isinstance(m, kind))


def _seed_error(page: str) -> str:
    found = re.search(r'<p id="adv-seed-error"[^>]*>(.*?)</p>', page, re.S)
    return found.group(1).strip() if found else ""


def _cli(studio_settings, *args: str):
    env = {"LORASTUDIO_HOME": str(studio_settings.home), "LORASTUDIO_DEVICE": "cpu"}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_a_scene_s_limits_are_the_engine_s_in_the_api_the_studio_page_and_the_cli(client, studio_settings, tmp_path):
    out = tmp_path / "out"
    for name in ("prompt", "n", "steps", "cfg_scale", "width", "seed", "sampler"):
        assert GenerationIn.model_fields[name].metadata == GenerateRequest.model_fields[name].metadata, name
    top = _bound(GenerateRequest.model_fields["steps"], Le)
    scene = {"prompt": "johnhero in a dojo", "base": "tiny-sd15"}

    api = client.post("/api/v1/generations", json=scene | {"steps": top + 1})
    assert api.status_code == 422 and "steps" in api.text and str(top) in api.text
    page = client.post("/studio/generate", data=scene | {"steps": str(top + 1)})
    assert page.status_code == 422 and str(top) in page.text
    cli = _cli(studio_settings, "generate", scene["prompt"], "--base", "tiny-sd15", "--steps", top + 1, "--out", out)
    assert cli.exit_code == 2 and "steps" in cli.stderr and str(top) in cli.stderr
    assert not out.exists()  # refused before any work

    fine = client.post("/api/v1/generations", json=scene | {"steps": top})
    assert fine.status_code == 201  # the limit itself is fine
    form = client.get("/studio").text  # the page's own inputs offer what the API accepts
    for field, kind, attr in (("n", Le, "max"), ("steps", Le, "max"), ("prompt", MaxLen, "maxlength")):
        tag = re.search(rf'<(?:input|textarea) id="{field}"[^>]*>', form).group(0)
        assert f'{attr}="{_bound(GenerateRequest.model_fields[field], kind)}"' in tag, tag


def test_a_training_s_limits_are_train_config_s_in_the_api_the_train_page_and_the_cli(
    client, studio_settings, tmp_path
):
    for name in ("steps", "learning_rate", "network_dim", "resolution", "batch_size"):
        assert TrainingSettings.model_fields[name].metadata == TrainConfig.model_fields[name].metadata, name
    limit = _bound(TrainConfig.model_fields["seed"], Lt)  # 2**64: seeds are unsigned 64-bit everywhere
    assert _bound(TrainingSettings.model_fields["seed"], Lt) == limit  # (and -1, A1111's "pick one", before it)

    api = client.post("/api/v1/trainings", json={"dataset_id": 1, "overrides": {"seed": limit}})
    assert api.status_code == 422 and "seed" in api.text
    page = client.post("/train/1/submit", data={"preset": "quick", "base": "tiny-sd15", "seed": str(limit)})
    assert page.status_code == 422 and str(limit - 1) in _seed_error(page.text)  # beside the Advanced seed field
    images = tmp_path / "images"
    images.mkdir()
    cli = _cli(studio_settings, "train", images, "--kind", "character", "--trigger", "johnhero", "--seed", limit)
    assert cli.exit_code == 2 and "seed" in cli.stderr.lower()

    for seed in (limit - 1, -1):  # the largest seed, and -1 (pick one): the page takes them as the API does
        assert _seed_error(client.post("/train/1/submit", data={"seed": str(seed)}).text) == "", seed


def test_every_job_type_has_its_request_result_and_runner():
    """Adding a job type is its payloads (jobs/payloads.py), its area's runner and a row in workers/runners.py."""
    from typing import get_args

    from lorastudio.studio.jobs import JOB_TYPES
    from lorastudio.studio.jobs.payloads import JobRequest, JobResult
    from lorastudio.studio.workers.runners import RUNNERS

    def types(union) -> set[str]:
        return {m.model_fields["type"].default for m in get_args(get_args(union)[0])}

    assert set(JOB_TYPES) == types(JobRequest) == types(JobResult) == set(RUNNERS)
