"""The toy world's captioner: exact captions of toy-world pictures, read with the detectors and checked by
drawing the scene again (the renderer is deterministic), in the world's own caption words."""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import Image

from lorastudio.engine.toyworld.detect import Figure, detect_style, find_figures
from lorastudio.engine.toyworld.render import Fighter, Scene, caption_for, draw_scene
from lorastudio.engine.toyworld.world import BACKGROUNDS, HELD_OUT_CHARACTERS, SIZE, STYLES, Character

FALLBACK = "a picture"  # what an image the detectors cannot read (no fighter in it) is called
# A background is the world's when the top rows are this close to one of its colours (renders: exact).
BACKGROUND_DISTANCE = 40.0
# Pixels a redrawn scene may differ by and still count as the same scene: 0 on a render; a generation that
# drifts further is captioned from the detectors alone (without the pose, which only the redraw can tell).
REDRAW_TOLERANCE = 0


class ToyCaptioner:
    """Captions toy-world pictures exactly: who (by look), the style's trigger word and pose, where."""

    name = "toyworld"

    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per image; an image with no fighter in it gets FALLBACK (with its place if known)."""
        return [self._one(image) for image in images]

    def identity_words(self, images: list[Image.Image], trigger: str) -> list[str]:
        """The words that make the pictures' subject who they are: a held-out character's (by its trigger
        word), else the look most of the pictures' fighters share; longest phrase first."""
        subject = HELD_OUT_CHARACTERS.get(trigger.lower())
        if subject is None:
            looks = Counter(
                (f.body, f.head, f.accessory) for image in images for f in _figures(_small(image)) if f.body and f.head
            )
            if not looks:
                return []
            body, head, accessory = looks.most_common(1)[0][0]
            subject = Character("", body, head, accessory)
        words = [subject.words(), f"{subject.head} head", subject.body, subject.head]
        return words + ([subject.accessory] if subject.accessory != "none" else [])

    def _one(self, image: Image.Image) -> str:
        small = _small(image)
        background = _background(small)
        where = _where(background) if background else None
        figures = [f for f in _figures(small) if f.body and f.head][:2]
        if not figures:
            return f"{FALLBACK}, {where}" if where else FALLBACK
        cast = [Character("", f.body, f.head, f.accessory) for f in figures]
        if background is not None:
            found = _redraw(small, cast, background)
            if found is not None:
                return caption_for(list(found.fighters), found.style, background)
        return _from_detectors(cast, figures, where)


def _small(image: Image.Image) -> Image.Image:
    """The picture at the world's size (an upscaled render comes back pixel for pixel)."""
    image = image.convert("RGB")
    return image if image.size == (SIZE, SIZE) else image.resize((SIZE, SIZE), Image.Resampling.NEAREST)


def _figures(image: Image.Image) -> list[Figure]:
    try:
        return find_figures(image)
    except (ValueError, IndexError):  # a picture the detectors' geometry cannot cope with: nobody in it
        return []


def _background(image: Image.Image) -> str | None:
    top = np.median(np.asarray(image, dtype=np.float32)[:6].reshape(-1, 3), axis=0)
    name, colour = min(BACKGROUNDS.items(), key=lambda kv: float(np.linalg.norm(top - np.array(kv[1]))))
    return name if float(np.linalg.norm(top - np.array(colour))) <= BACKGROUND_DISTANCE else None


def _where(background: str) -> str:
    """The place in the world's words (as caption_for says it)."""
    return caption_for([], None, background).split(", ")[-1]


def _redraw(image: Image.Image, cast: list[Character], background: str) -> Scene | None:
    """The scene (style and pose) whose drawing is this picture, or None when none is close enough."""
    seen = np.asarray(image, dtype=np.int16)
    bg = np.array(BACKGROUNDS[background], dtype=np.int16)
    floor = np.maximum(bg - 25, 0)  # the floor texture's shade: drawn at random, never what a caption says
    plain_seen = np.all(seen == bg, -1) | np.all(seen == floor, -1)
    positions = [(16, 1)] if len(cast) == 1 else [(9, 1), (23, -1)]
    best: tuple[int, Scene] | None = None
    for style in [None, *STYLES]:
        poses = STYLES[style].poses if style else ("stance",)
        prop = STYLES[style].prop if style else "none"
        for pose in poses:
            fighters = tuple(Fighter(c, pose, prop, x, facing) for c, (x, facing) in zip(cast, positions, strict=False))
            scene = Scene(fighters, background, style, "")
            drawn = np.asarray(draw_scene(scene, 0), dtype=np.int16)
            plain_drawn = np.all(drawn == bg, -1) | np.all(drawn == floor, -1)
            differ = np.any(seen != drawn, -1) & ~(plain_seen & plain_drawn)
            count = int(differ.sum())
            if best is None or count < best[0]:
                best = (count, scene)
    return best[1] if best is not None and best[0] <= REDRAW_TOLERANCE else None


def _from_detectors(cast: list[Character], figures: list[Figure], where: str | None) -> str:
    """A picture that is not a render (a generation): who, the style the detectors see, where."""
    who = [c.words() for c in cast]
    parts = [" and ".join(who) if len(who) < 2 else f"{who[0]} facing {who[1]}"]
    style = next((s for s in (detect_style(f) for f in figures) if s), None)
    parts.append(STYLES[style].trigger if style else "fighting stance")
    if where:
        parts.append(where)
    return ", ".join(parts)
