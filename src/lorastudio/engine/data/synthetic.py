"""Generated training pictures for tests and benchmarks: a simple coloured figure on varied backgrounds.

Deterministic by seed. This is a stand-in subject with known ground truth (its colours), not art.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

BACKGROUNDS = [(40, 40, 60), (90, 120, 90), (160, 140, 110), (70, 90, 140), (120, 60, 60), (30, 30, 30)]


def render_figure(
    seed: int,
    size: int = 256,
    body: tuple[int, int, int] = (220, 40, 40),
    head: tuple[int, int, int] = (250, 210, 60),
) -> Image.Image:
    """One picture of the figure in a random stance on a random textured background."""
    rng = random.Random(seed)
    bg = rng.choice(BACKGROUNDS)
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(40):  # background texture, so images are not flat (and not "blurry")
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(2, size // 12)
        shade = tuple(max(0, min(255, c + rng.randint(-35, 35))) for c in bg)
        draw.rectangle((x, y, x + r, y + r), fill=shade)
    cx = size // 2 + rng.randint(-size // 8, size // 8)
    top = size // 6 + rng.randint(-size // 20, size // 20)
    s = size / 256
    head_r = int(22 * s)
    draw.ellipse((cx - head_r, top, cx + head_r, top + 2 * head_r), fill=head, outline=(0, 0, 0))
    neck, hip = top + 2 * head_r, top + 2 * head_r + int(80 * s)
    w = max(2, int(14 * s))
    draw.line((cx, neck, cx, hip), fill=body, width=w)
    for side in (-1, 1):
        hand = (
            cx + side * rng.randint(int(30 * s), int(70 * s)),
            neck + rng.randint(-int(30 * s), int(40 * s)),
        )
        foot = (
            cx + side * rng.randint(int(15 * s), int(60 * s)),
            hip + rng.randint(int(50 * s), int(80 * s)),
        )
        draw.line((cx, neck + int(10 * s), *hand), fill=body, width=w)
        draw.line((cx, hip, *foot), fill=body, width=w)
    return img


def write_reference_set(
    folder: Path, n: int, *, seed: int = 0, size: int = 256, caption: str | None = None
) -> list[Path]:
    """Write n PNG pictures (and optional .txt captions) of the figure into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"ref_{i:03d}.png"
        render_figure(seed * 10_000 + i, size).save(path)
        if caption:
            path.with_suffix(".txt").write_text(caption)
        paths.append(path)
    return paths
