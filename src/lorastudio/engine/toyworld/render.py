"""Deterministic renders of toy-world scenes at 32x32, drawn without anti-aliasing so every pixel is
one of the world's colours (ground truth the detectors can rely on)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from lorastudio.engine.toyworld.world import (
    ACCESSORY_COLOUR,
    BACKGROUNDS,
    BLADE_COLOUR,
    COLOURS,
    GLOVE_COLOUR,
    SIZE,
    STYLES,
    Character,
)

# Joint positions for a fighter facing right, in a 10-wide x 16-tall box (x from the body's centre
# line, y down from the head top). hand_f/foot_f are the front (facing side) limbs.
POSES: dict[str, dict[str, tuple[float, float]]] = {
    "stance": {"hand_f": (3, 6), "hand_b": (-2, 7), "foot_f": (3, 16), "foot_b": (-3, 16)},
    "guard": {"hand_f": (3, 3), "hand_b": (2, 4), "foot_f": (3, 16), "foot_b": (-3, 16)},
    "jab": {"hand_f": (6, 4), "hand_b": (2, 4), "foot_f": (3, 16), "foot_b": (-3, 16)},
    "horse stance": {"hand_f": (4, 7), "hand_b": (-4, 7), "foot_f": (5, 16), "foot_b": (-5, 16)},
    "crane kick": {"hand_f": (3, 2), "hand_b": (-3, 2), "foot_f": (5, 9), "foot_b": (0, 16)},
    "high kick": {"hand_f": (2, 5), "hand_b": (-3, 6), "foot_f": (6, 5), "foot_b": (-1, 16)},
    "grapple": {"hand_f": (5, 6), "hand_b": (5, 8), "foot_f": (3, 16), "foot_b": (-3, 16)},
    "thrust": {"hand_f": (5, 6), "hand_b": (-3, 7), "foot_f": (4, 16), "foot_b": (-3, 16)},
    "parry": {"hand_f": (3, 4), "hand_b": (-2, 7), "foot_f": (3, 16), "foot_b": (-3, 16)},
}
NECK, HIP = (0.0, 4.0), (0.0, 10.0)


@dataclass(frozen=True)
class Fighter:
    """One fighter in a scene: who, doing what, with which prop, where, facing which way."""

    character: Character
    pose: str
    prop: str  # gloves | blade | none
    x: int  # centre line, pixels
    facing: int  # +1 right, -1 left


@dataclass(frozen=True)
class Scene:
    """Everything a render shows, and its caption."""

    fighters: tuple[Fighter, ...]
    background: str
    style: str | None
    caption: str


def _pt(f: Fighter, joint: tuple[float, float], top: int) -> tuple[int, int]:
    return (round(f.x + f.facing * joint[0]), round(top + joint[1]))


def draw_scene(scene: Scene, seed: int) -> Image.Image:
    """Draw a scene; `seed` only varies background texture, never what the caption says."""
    rng = random.Random(seed)
    bg = BACKGROUNDS[scene.background]
    img = Image.new("RGB", (SIZE, SIZE), bg)
    draw = ImageDraw.Draw(img)
    shade = tuple(max(0, c - 25) for c in bg)
    for _ in range(4):  # floor texture in a darker shade of the background, below the fighters' feet
        x = rng.randrange(SIZE)
        draw.line((x, 27, x + rng.randrange(2, 6), 27), fill=shade)
    draw.line((0, 29, SIZE, 29), fill=shade)
    for f in scene.fighters:
        _draw_fighter(draw, f, top=10)
    return img


def _draw_fighter(draw: ImageDraw.ImageDraw, f: Fighter, top: int) -> None:
    pose = POSES[f.pose]
    body, head = COLOURS[f.character.body], COLOURS[f.character.head]
    neck, hip = _pt(f, NECK, top), _pt(f, HIP, top)
    if f.character.accessory == "cape":  # behind the body
        back = -f.facing
        draw.polygon(
            [neck, (neck[0] + back * 3, neck[1] + 1), (hip[0] + back * 4, hip[1] + 2), hip], fill=ACCESSORY_COLOUR
        )
    draw.line((*neck, *hip), fill=body, width=2)
    for hand in ("hand_f", "hand_b"):
        draw.line((*_pt(f, (0, 5), top), *_pt(f, pose[hand], top)), fill=body, width=1)
    for foot in ("foot_f", "foot_b"):
        draw.line((*hip, *_pt(f, pose[foot], top)), fill=body, width=2)
    hx, hy = _pt(f, (0, 1.5), top)
    draw.rectangle((hx - 2, hy - 2, hx + 1, hy + 1), fill=head)
    if f.character.accessory == "headband":
        draw.line((hx - 2, hy - 1, hx + 1, hy - 1), fill=ACCESSORY_COLOUR)
    elif f.character.accessory == "belt":
        draw.line((hip[0] - 1, hip[1] - 1, hip[0] + 1, hip[1] - 1), fill=ACCESSORY_COLOUR)
    hand = _pt(f, pose["hand_f"], top)
    if f.prop == "gloves":
        for h in ("hand_f", "hand_b"):
            x, y = _pt(f, pose[h], top)
            draw.rectangle((x - 1, y - 1, x, y), fill=GLOVE_COLOUR)
    elif f.prop == "blade":
        tip = (hand[0] + f.facing * 6, hand[1] - (4 if f.pose == "parry" else 0))
        draw.line((*hand, *tip), fill=BLADE_COLOUR, width=2)  # 2px: a 1px blade is too faint to learn


def make_scene(characters: list[Character], style: str | None, background: str, rng: random.Random) -> Scene:
    """A scene with one or two fighters of `style` (None: plain stance, no prop) and its caption."""
    st = STYLES[style] if style else None
    fighters = []
    positions = [(16, 1)] if len(characters) == 1 else [(9, 1), (23, -1)]
    pose = rng.choice(st.poses) if st else "stance"  # both fighters in one scene share the pose
    for ch, (x, facing) in zip(characters, positions, strict=False):
        fighters.append(Fighter(ch, pose, st.prop if st else "none", x, facing))
    return Scene(tuple(fighters), background, style, caption_for(fighters, style, background))


def caption_for(fighters: list[Fighter], style: str | None, background: str, names: bool = False) -> str:
    """Plain words: who (by look, or by name when `names`), the style trigger and pose, where."""
    who = [f.character.name if names else f.character.words() for f in fighters]
    text = " and ".join(who) if len(who) < 2 else f"{who[0]} facing {who[1]}"
    parts = [text]
    if style:
        parts.append(f"{STYLES[style].trigger}, {fighters[0].pose}")
    else:
        parts.append("fighting stance")
    parts.append(
        "at night" if background == "night" else f"in {'an' if background[0] in 'aeiou' else 'a'} {background}"
    )
    return ", ".join(parts)
