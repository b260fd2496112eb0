"""One error, each face's words: the engine names the setting to change (`$batch_size`), the CLI says it as its
flag, the HTTP face as the API's field (and the JSON error carries it), and a stored job error in neutral words."""

import ast
import re
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lorastudio.cli.common import FLAGS
from lorastudio.errors import SETTINGS, Invalid, OutOfMemory, words
from lorastudio.web.errors import FIELDS, install, words_for_web

ENGINE = Path(__file__).parents[1] / "src" / "lorastudio" / "engine"


def test_a_message_names_its_settings_in_each_faces_words():
    error = OutOfMemory(
        "ran out of memory. Lower $batch_size (now 4) or use $precision bf16",
        setting="batch_size",
        aside="$resume continues from the last checkpoint",
    )
    neutral = "ran out of memory. Lower the batch size (now 4) or use mixed precision bf16"
    assert str(error) == words(error) == neutral  # what a log line and a stored job error say
    assert words(error, FLAGS) == (
        "ran out of memory. Lower --batch-size (now 4) or use --precision bf16; --resume continues from the last "
        "checkpoint"
    )
    assert words_for_web(error) == "ran out of memory. Lower batch_size (now 4) or use precision bf16"
    assert error.setting == "batch_size" and error.args == (
        "ran out of memory. Lower $batch_size (now 4) or use $precision bf16",
    )
    # A `$word` that names no setting (in a path, a price) is left as written; an error without one is unchanged.
    assert str(Invalid("cannot read /tmp/$HOME/$x.png")) == "cannot read /tmp/$HOME/$x.png"
    assert str(Invalid()) == "" and str(Invalid("a", "b")) == "('a', 'b')"


def _marks_in_engine_messages() -> set[str]:
    marks = set()
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                marks |= set(re.findall(r"\$([a-z][a-z0-9_]*)", node.value))
    return marks


def test_every_setting_a_message_names_has_words_in_every_face():
    marks = _marks_in_engine_messages()
    assert marks and marks <= set(SETTINGS), f"settings without neutral words: {marks - set(SETTINGS)}"
    assert set(FLAGS) == set(SETTINGS), "each setting an error names needs its CLI flag"
    assert set(FIELDS) <= set(SETTINGS)
    # The HTTP face's words are fields its API takes.
    from lorastudio.studio.generation import GenerationIn
    from lorastudio.studio.training import TrainingIn, TrainingSettings

    api = set(GenerationIn.model_fields) | set(TrainingIn.model_fields) | set(TrainingSettings.model_fields)
    assert set(FIELDS.values()) <= api


def test_the_http_face_names_the_api_field_and_carries_the_setting():
    from lorastudio.engine.models.device import resolve_precision

    app = FastAPI()
    install(app)

    @app.get("/api/v1/fp16-on-cpu")
    def fp16_on_cpu():
        resolve_precision("fp16", torch.device("cpu"))

    answer = TestClient(app).get("/api/v1/fp16-on-cpu")
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["setting"] == "precision" and error["code"] == "invalid"
    assert "on CPU use precision no" in error["message"] and "--" not in error["message"]
