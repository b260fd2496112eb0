"""A storyboard contact sheet: numbered panels in a row (or rows), each with its caption."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont

PANEL = 256
PAD = 16
CAPTION_LINES = 3


def contact_sheet(images: list[Image.Image], captions: list[str], title: str, per_row: int = 3) -> Image.Image:
    """Panels enlarged to PANEL px (nearest neighbour keeps small images crisp), captions under each."""
    if not images or len(images) != len(captions):
        raise ValueError("contact_sheet needs one caption per image and at least one image")
    font = ImageFont.load_default(size=14)
    title_font = ImageFont.load_default(size=20)
    rows = -(-len(images) // per_row)
    cols = min(per_row, len(images))
    caption_h = CAPTION_LINES * 18 + 8
    width = PAD + cols * (PANEL + PAD)
    height = 48 + rows * (PANEL + caption_h + PAD)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 12), title, fill="black", font=title_font)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x = PAD + (i % per_row) * (PANEL + PAD)
        y = 48 + (i // per_row) * (PANEL + caption_h + PAD)
        scale = PANEL / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
        sheet.paste(image.convert("RGB").resize(size, resample), (x, y))
        draw.rectangle((x - 1, y - 1, x + PANEL, y + PANEL), outline="black")
        lines = textwrap.wrap(f"{i + 1}. {caption}", width=34)[:CAPTION_LINES]
        for j, line in enumerate(lines):
            draw.text((x, y + PANEL + 6 + 18 * j), line, fill="black", font=font)
    return sheet
