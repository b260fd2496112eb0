"""The evaluation set: a few prompts with the trigger word in varied scenes, rendered with the same seeds at
every checkpoint (and without the LoRA, the baseline). On the toy world its scenes are in the world's words and
its detectors say whether the subject, and what the rest of the prompt asked for, are in each render."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lorastudio.engine.kinds import KINDS, acts_as_character
from lorastudio.engine.toyworld.world import (
    BACKGROUNDS,
    HELD_OUT_CHARACTERS,
    HELD_OUT_STYLE,
    SIZE,
    STYLES,
    Character,
)

Check = Callable[[Image.Image], bool]
TOYWORLD = "toyworld"
# A character's scenes: each style the base model draws in turn, then a plain stance. The held-out style is left
# out: without its own LoRA nothing draws it, so asking for it would only lower every checkpoint's adherence alike.
KNOWN_STYLES: tuple[str | None, ...] = (*(s for s in STYLES if s != HELD_OUT_STYLE), None)


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt of the evaluation set."""

    text: str  # with the trigger word
    plain: str  # the same scene without the trigger word (CLIP-T reads this)
    seed: int
    identity: Check | None = None  # toy world: the detectors say the subject is there
    adherence: Check | None = None  # toy world: what the rest of the prompt asked for is there


def eval_prompts(
    kind: str, trigger: str, *, family: str, references: list[Image.Image], n: int = 4, first_seed: int = 7000
) -> list[EvalPrompt]:
    """n prompts (seeds first_seed, first_seed + 1, ...) for a LoRA of `kind` with `trigger`: the toy world's
    scenes with detector checks on the toyworld family, the kind's eval_scenes elsewhere."""
    n = max(1, n)
    if family == TOYWORLD:
        return _toy_prompts(kind, trigger, references, n, first_seed)
    scenes = KINDS[kind].eval_scenes if kind in KINDS else KINDS["character"].eval_scenes
    out = []
    for i in range(n):
        template = scenes[i % len(scenes)]
        out.append(EvalPrompt(template.format(trigger=trigger), _plain(template), first_seed + i))
    return out


def _plain(template: str) -> str:
    """The scene without its trigger word: "{trigger}, a person in an office" -> "a person in an office"."""
    words = template.replace("{trigger}", "").strip()
    return " ".join(words.strip(" ,").split()).replace(" ,", ",")


# --- the toy world: its subject read from the references, scenes in its words, checks from its detectors


def toy_subject(kind: str | None, trigger: str | None, references: list[Image.Image]) -> Character | str | None:
    """What a toy-world LoRA teaches: a Character (a held-out one by its trigger, else the look the detectors find
    most often in the references) or, for a fighting style, the style's key; None when nothing is found."""
    from lorastudio.engine.toyworld.detect import detect_style, find_figures

    pictures = [im for im in references if im.size == (SIZE, SIZE)]  # toy-world pictures only
    if kind == "fighting_style":
        by_trigger = next((key for key, style in STYLES.items() if style.trigger == trigger), None)
        if by_trigger:
            return by_trigger
        found = Counter(s for im in pictures for f in find_figures(im) if (s := detect_style(f)) is not None)
        return found.most_common(1)[0][0] if found else None
    if not acts_as_character(kind):
        return None
    if trigger in HELD_OUT_CHARACTERS:
        return HELD_OUT_CHARACTERS[trigger]
    # the subject is in every reference, a partner only in some: the most frequent look is the subject's
    looks = Counter((f.body, f.head, f.accessory) for im in pictures for f in find_figures(im) if f.body and f.head)
    if not looks:
        return None
    body, head, accessory = looks.most_common(1)[0][0]
    return Character(trigger or "subject", body, head, accessory)


def subject_check(subject: Character | str | None) -> Check | None:
    """The detectors' check that a picture shows `subject` (a Character, or a style's key)."""
    from lorastudio.engine.toyworld.detect import find_character, style_present

    if isinstance(subject, Character):
        return lambda image: bool(find_character(image, subject))
    if isinstance(subject, str):
        return lambda image: style_present(image, subject)
    return None


def _background_check(background: str) -> Check:
    """The picture's background (its top rows, as the detectors read it) is the one asked for."""
    want = np.array(BACKGROUNDS[background], dtype=np.float32)
    palette = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
    names = list(BACKGROUNDS)

    def check(image: Image.Image) -> bool:
        top = np.asarray(image.convert("RGB"), dtype=np.float32)[:6].reshape(-1, 3)
        colour = np.median(top, axis=0)
        nearest = names[int(np.linalg.norm(palette - colour, axis=1).argmin())]
        return nearest == background and float(np.linalg.norm(colour - want)) < 60

    return check


def _all(*checks: Check | None) -> Check:
    real = [c for c in checks if c is not None]
    return lambda image: all(c(image) for c in real)


def _toy_prompts(kind: str, trigger: str, references: list[Image.Image], n: int, first_seed: int) -> list[EvalPrompt]:
    from lorastudio.engine.toyworld.basetrain import base_training_characters
    from lorastudio.engine.toyworld.detect import find_character, style_present
    from lorastudio.engine.toyworld.render import caption_for, make_scene

    subject = toy_subject(kind, trigger, references)
    identity = subject_check(subject)
    rng = random.Random(first_seed)  # the same set at every checkpoint and in every run with these arguments
    known = base_training_characters()
    backgrounds = list(BACKGROUNDS)
    out = []
    for i in range(n):
        background = backgrounds[(i + first_seed) % len(backgrounds)]  # every place in turn: "at night", ...
        if isinstance(subject, str):
            # a style on several subjects: known characters in plain words, each doing the style somewhere
            partner = known[rng.randrange(len(known))]
            scene = make_scene([partner], subject, background, rng)
            look, _, pose, where = scene.caption.split(", ")  # "<look>, <style's trigger>, <pose>, <where>"
            text = f"{look}, {trigger}, {pose}, {where}"  # the LoRA's own trigger, whatever its style's word
            plain = f"{look}, {where}"  # the pose words belong to the style, so they go with its trigger
            wanted = lambda image, c=partner: bool(find_character(image, c))  # noqa: E731 - bound per prompt
            out.append(EvalPrompt(text, plain, first_seed + i, identity, _all(wanted, _background_check(background))))
            continue
        # a character (or another kind) in varied fights and places
        style = KNOWN_STYLES[i % len(KNOWN_STYLES)]
        cast = [subject] if isinstance(subject, Character) else [known[rng.randrange(len(known))]]
        scene = make_scene(cast, style, background, rng)
        rest = caption_for(list(scene.fighters), style, background).split(", ", 1)[1]
        text = f"{trigger}, {rest}" if isinstance(subject, Character) else f"{trigger}, {scene.caption}"
        plain = f"a fighter, {rest}" if isinstance(subject, Character) else scene.caption
        style_check = (lambda image, s=style: style_present(image, s)) if style else None
        out.append(EvalPrompt(text, plain, first_seed + i, identity, _all(style_check, _background_check(background))))
    return out
