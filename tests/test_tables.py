"""Tables that live once: a kind's name and words live in engine/kinds.py (its preset in the preset table keyed
by kind), a family's facts in engine/models/families.py. The faces and the studio refer to those rows; no
page, command or service types a kind's name or label, or a family's name, again."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from pathlib import Path

import pytest

from lorastudio.engine.kinds import KINDS, kind_list
from lorastudio.engine.models.families import FAMILIES, Memory
from lorastudio.engine.training.presets import BASE_PRESETS, PRESETS
from lorastudio.studio.jobs import capabilities

SRC = Path(__file__).resolve().parent.parent / "src" / "lorastudio"
FACES_AND_STUDIO = ("studio", "web", "cli")  # the layers above the engine's tables

KIND_WORDS = {word for k in KINDS.values() for word in (k.name, k.label, k.title, k.plural)}
FAMILY_NAMES = set(FAMILIES)

# (file under src/lorastudio, literal): each a word that is not a kind (or family) although it is spelled like one.
ALLOWED = {
    ("studio/characters/service.py", "character"): "the noun in 'character N not found': a card, not a kind",
    ("studio/characters/schemas.py", "Fighting style"): "a character card's fighting_style field (a column)",
    ("web/pages/characters.py", "fighting_style"): "the card's form field of that column",
    ("web/templates/characters.html", "fighting_style"): "the card's form field of that column",
    ("web/templates/characters.html", "Fighting style"): "that field's label",
    ("studio/db/__init__.py", "Character"): "the table class's name in __all__",
    ("studio/storyboards/export/pdf.py", "Characters"): "the storyboard's cast heading (its character cards)",
    ("cli/toyworld.py", "character"): "a key of the toy-world check's result",
    ("cli/toyworld.py", "toyworld"): "the command group's name",
}
QUOTED = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'")


def _sources() -> list[Path]:
    files = []
    for layer in FACES_AND_STUDIO:
        for path in sorted((SRC / layer).rglob("*")):
            if path.suffix in (".py", ".html", ".js") and "migrations" not in path.parts:
                files.append(path)
    return files


def _literals(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return {n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return {a or b for a, b in QUOTED.findall(text)}


def _typed_again(words: set[str]) -> list[str]:
    found = []
    for path in _sources():
        where = path.relative_to(SRC).as_posix()
        found += [f"{where}: {word!r}" for word in sorted(_literals(path) & words) if (where, word) not in ALLOWED]
    return found


def test_the_scan_sees_the_faces():
    files = {p.relative_to(SRC).as_posix() for p in _sources()}
    assert {"web/templates/train.html", "web/pages/studio.py", "cli/common.py", "studio/datasets/service.py"} <= files


def test_no_face_or_service_types_a_kind_again():
    assert _typed_again(KIND_WORDS) == [], "refer to the kinds table (engine/kinds.py): its rows, KINDS or kind_list"


def test_no_face_or_service_types_a_family_again():
    assert _typed_again(FAMILY_NAMES) == [], "ask the family table (engine/models/families.py) for the fact"


def test_the_allow_list_has_no_stale_entries():
    stale = [f"{where}: {word!r}" for where, word in ALLOWED if word not in _literals(SRC / where)]
    assert stale == []


def test_every_kind_has_its_words_and_one_preset():
    for kind in KINDS.values():
        assert kind.title and kind.plural and kind.strength_range and kind.good_images and kind.avoid_images
    assert set(BASE_PRESETS) == set(KINDS)
    assert all(p.name == p.kind == name for name, p in BASE_PRESETS.items())
    assert {p.kind for p in PRESETS.values()} == set(KINDS)
    assert kind_list() == "character, fighting_style, pose or visual_style"


def test_the_faces_offer_the_kinds_of_the_table():
    from lorastudio.cli.common import KindOpt
    from lorastudio.studio.library import LoraOut

    assert KindOpt.__metadata__[0].help == kind_list()
    assert LoraOut.model_fields["kind"].description == kind_list()


def _with_family(monkeypatch, name: str, **changes) -> None:
    """The family table with one row changed (a copy): what capabilities reads."""
    monkeypatch.setitem(FAMILIES, name, replace(FAMILIES[name], **changes))


def test_training_memory_follows_the_family_row(monkeypatch):
    before = capabilities.training_memory_mb("sdxl", "x", resolution=1024, batch_size=2)
    fam = FAMILIES["sdxl"]
    assert before == int((fam.train_memory.fixed_gb + 2 * fam.train_memory.per_image_gb) * 1024)
    _with_family(monkeypatch, "sdxl", train_memory=Memory(fixed_gb=20.0, per_image_gb=1.0))
    assert capabilities.training_memory_mb("sdxl", "x", resolution=1024, batch_size=2) == 22 * 1024
    _with_family(monkeypatch, "sdxl", default_size=512)  # activations are per image at the family's own size
    assert capabilities.training_memory_mb("sdxl", "x", resolution=1024, batch_size=2) == (20 + 2 * 4) * 1024


def test_generation_memory_follows_the_family_row(monkeypatch):
    _with_family(monkeypatch, "sd15", generate_memory=Memory(fixed_gb=3.0, per_image_gb=0.25), default_size=640)
    # no size asked for: the family's default size, one image's activations each
    assert capabilities.generation_memory_mb("sd15", "x", width=None, height=None, batch=4) == 4 * 1024
    assert capabilities.generation_memory_mb("sd15", "x", width=1280, height=640, batch=2) == 4 * 1024


def test_a_new_family_row_is_all_capabilities_need(monkeypatch):
    monkeypatch.setitem(FAMILIES, "newfam", replace(FAMILIES["sdxl"], name="newfam", train_memory=Memory(1.0, 1.0)))
    assert capabilities.training_memory_mb("newfam", "x", resolution=1024, batch_size=1) == 2 * 1024
    assert capabilities.generation_memory_mb("newfam", "x", width=None, height=None, batch=1) is not None


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_family_without_figures_runs_anywhere(monkeypatch, name):
    _with_family(monkeypatch, name, train_memory=None, generate_memory=None)
    assert capabilities.training_memory_mb(name, "x", resolution=512, batch_size=1) is None
    assert capabilities.generation_memory_mb(name, "x", width=512, height=512, batch=1) is None
