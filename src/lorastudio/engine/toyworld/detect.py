"""Deterministic detectors for toy-world images (renders or generations): no learned weights.

Pixels are classified by colour against the background (taken from the top rows) and the world's
palette; fighters are column groups of figure-coloured pixels; a fighter's head colour is the
palette colour of its top rows, its body colour that of the rest, its accessory read from where the
white pixels are. Styles are read from props (gloves, blade) and from the legs' and arms' geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from lorastudio.engine.toyworld.world import ACCESSORY_COLOUR, BLADE_COLOUR, COLOURS, GLOVE_COLOUR, Character

FIGURE = list(COLOURS)
PALETTE = np.array([*COLOURS.values(), ACCESSORY_COLOUR, GLOVE_COLOUR, BLADE_COLOUR], dtype=np.float32)
WHITE, BLACK, SILVER = len(FIGURE), len(FIGURE) + 1, len(FIGURE) + 2
NONE = -1


@dataclass
class Figure:
    """One fighter found in an image."""

    left: int
    right: int
    top: int
    bottom: int
    body: str | None
    head: str | None
    accessory: str
    labels: np.ndarray  # the image's label map cropped to this figure's columns (with margin)
    x0: int  # column of labels[:, 0] in the image
    props: np.ndarray  # labels of a wider crop, where a held prop (blade, gloves) may reach
    props_rgb: np.ndarray  # pixels of that wider crop
    props_x0: int  # column of props[:, 0] in the image

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in pixels."""
        return (self.left, self.top, self.right, self.bottom)


def label_pixels(img: Image.Image) -> np.ndarray:
    """Per pixel: index into PALETTE, or NONE for background and unclear pixels."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    background = np.median(a[:6].reshape(-1, 3), axis=0)
    dist_bg = np.linalg.norm(a - background, axis=-1)
    d = np.linalg.norm(a[:, :, None, :] - PALETTE[None, None], axis=-1)
    labels = d.argmin(-1)
    ok = (d.min(-1) < 90) & (dist_bg > 45) & (d.min(-1) < dist_bg)
    return np.where(ok, labels, NONE)


def find_figures(img: Image.Image) -> list[Figure]:
    """Fighters in the image, left to right."""
    labels = label_pixels(img)
    pixels = np.asarray(img.convert("RGB"), dtype=np.int16)
    figure_px = (labels >= 0) & (labels < WHITE)
    cols = figure_px.sum(0) > 0
    groups, start = [], None
    for x, on in enumerate([*cols, False]):
        if on and start is None:
            start = x
        if not on and start is not None:
            groups.append((start, x - 1))
            start = None
    groups = [part for g in _merge_close(groups, figure_px) for part in _split_pair(g, figure_px)]
    figures = []
    for k, (left, right) in enumerate(groups):
        # Props may reach 8 columns out, but never into a neighbouring fighter's columns.
        lo = groups[k - 1][1] + 1 if k > 0 else 0
        hi = groups[k + 1][0] - 1 if k + 1 < len(groups) else labels.shape[1] - 1
        rows = np.where(figure_px[:, left : right + 1].any(1))[0]
        if len(rows) < 6 or figure_px[:, left : right + 1].sum() < 8:
            continue  # specks, not a fighter
        top, bottom = int(rows.min()), int(rows.max())
        x0 = max(0, left - 3)
        x1 = min(labels.shape[1], right + 4)
        crop = labels[:, x0:x1]
        head_rows = labels[top : top + 4, left : right + 1]
        body_rows = labels[top + 5 : bottom + 1, left : right + 1]
        head, body = _dominant(head_rows), _dominant(body_rows)
        accessory = _accessory(crop, top, bottom)
        wide = slice(max(lo, left - 8), min(hi, right + 8) + 1)
        props, props_rgb = labels[:, wide], pixels[:, wide]
        figures.append(Figure(left, right, top, bottom, body, head, accessory, crop, x0, props, props_rgb, wide.start))
    return figures


def _merge_close(groups: list[tuple[int, int]], mask: np.ndarray) -> list[tuple[int, int]]:
    """Join column groups split by a one-column gap inside one fighter (thin limbs in generations)."""
    merged: list[tuple[int, int]] = []
    for g in groups:
        if merged and g[0] - merged[-1][1] <= 2 and (g[1] - merged[-1][0]) < 12:
            merged[-1] = (merged[-1][0], g[1])
        else:
            merged.append(g)
    return merged


def _split_pair(group: tuple[int, int], mask: np.ndarray) -> list[tuple[int, int]]:
    """Two fighters whose limbs touch form one group: split it between the two torsos (the two
    fullest columns at least 8 apart), at the emptiest column between them."""
    left, right = group
    if right - left < 12:
        return [group]
    sums = mask[:, left : right + 1].sum(0)
    first = int(sums.argmax())
    far = [i for i in range(len(sums)) if abs(i - first) >= 8 and sums[i] >= 5]  # a torso, not a blade or arm
    if not far:
        return [group]
    second = max(far, key=lambda i: sums[i])
    a, b = sorted((first, second))
    cut = a + 1 + int(sums[a + 1 : b].argmin())
    return [(left, left + cut - 1), (left + cut, right)]


def _dominant(region: np.ndarray) -> str | None:
    vals = region[(region >= 0) & (region < WHITE)]
    if vals.size == 0:
        return None
    return FIGURE[int(np.bincount(vals, minlength=len(FIGURE)).argmax())]


def _accessory(crop: np.ndarray, top: int, bottom: int) -> str:
    ys, xs = np.where(crop == WHITE)
    if len(ys) <= 1:
        return "none"
    height = max(1, bottom - top)
    rel = (ys - top) / height
    if len(ys) >= 7:
        return "cape"
    if (rel < 0.3).mean() >= 0.5:
        return "headband"
    return "belt"


def find_character(img: Image.Image, character: Character) -> list[tuple[int, int, int, int]]:
    """Boxes of every fighter that looks like `character` (body, head and accessory all match)."""
    return [
        f.box
        for f in find_figures(img)
        if (f.body, f.head, f.accessory) == (character.body, character.head, character.accessory)
    ]


def detect_style(fig: Figure) -> str | None:
    """Which style a fighter shows: props first (gloves, blade), then leg and arm geometry."""
    lab = fig.labels
    height = max(1, fig.bottom - fig.top)
    body = (lab >= 0) & (lab < WHITE)
    ys, xs = np.where(body)
    if len(xs) == 0:
        return None
    band = (ys > fig.top + 0.3 * height) & (ys < fig.top + 0.6 * height)
    centre = float(np.bincount(xs[band]).argmax()) if band.any() else float(np.median(xs))  # the torso column
    if _blade(fig, centre + fig.x0, height):
        return "sword"
    if (fig.props == BLACK).sum() >= 3:
        return "boxing"

    def reach(lo: float, hi: float) -> float:
        sel = xs[(ys >= fig.top + lo * height) & (ys <= fig.top + hi * height)]
        return float(np.abs(sel - centre).max()) if sel.size else 0.0

    feet = xs[ys >= fig.bottom - 1]
    spread = int(feet.max() - feet.min()) if feet.size else 0
    if spread >= 9:
        return "kungfu"  # horse stance: feet wide apart
    if spread <= 4 and reach(0.3, 0.45) >= 5.5:
        return "mma"  # high kick: a foot at shoulder height
    if spread <= 4 and reach(0.5, 0.7) >= 4:
        return "kungfu"  # crane kick: one foot down, the other knee-high in front
    if _both_hands_forward(body, fig, centre):
        return "mma"  # grapple
    return None


def _blade(fig: Figure, centre_x: float, height: int) -> bool:
    """A blade: steel-blue pixels, or (as generations often draw it) a light streak held out in front of
    the body at arm height, beyond where a cape or belt could be."""
    if (fig.props == SILVER).sum() + _steel_like(fig.props_rgb).sum() >= 3:
        return True
    light = fig.props_rgb.min(axis=-1) >= 190
    ys, xs = np.where(light)
    offset = np.abs(xs + fig.props_x0 - centre_x)
    arm_rows = (ys >= fig.top + 0.15 * height) & (ys <= fig.top + 0.55 * height)
    return int((arm_rows & (offset >= 5)).sum()) >= 3


def _steel_like(rgb: np.ndarray) -> np.ndarray:
    """Blade-ish pixels that drifted from the exact steel blue in a generation: bright, blue-leaning, and
    with enough red that they are not the blue figure colour."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (b > 160) & (r > 90) & (g > 100) & (b - r > 40) & (b - g > 25)


def _both_hands_forward(body: np.ndarray, fig: Figure, centre: float) -> bool:
    height = max(1, fig.bottom - fig.top)
    ys, xs = np.where(body)
    band = (ys >= fig.top + 0.3 * height) & (ys <= fig.top + 0.55 * height)
    side = xs[band] - centre
    front = max((side >= 4).sum(), (side <= -4).sum())
    back = min((side >= 2).sum(), (side <= -2).sum())
    return front >= 2 and back == 0


def style_present(img: Image.Image, style: str) -> bool:
    """True when some fighter in the image shows `style`."""
    return any(detect_style(f) == style for f in find_figures(img))
