"""The storyboard as a PDF (reportlab): a cover page with the title, description and characters, then one
page per panel with its image, title, notes, prompt, LoRAs with strengths and seed."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image as PILImage

from lorastudio.fileio import write_atomic
from lorastudio.studio.storyboards.export.snapshot import Panel, Snapshot

IMAGE_SIDE = 360  # points: about half the page, so the text below stays on the same page
FRAME = (439, 680)  # points: what A4 with SimpleDocTemplate's margins holds, less the frame's padding


def _text(value: object) -> str:
    # Paragraphs read a little markup: user text is escaped so it is shown, never interpreted.
    return escape(str(value)).replace("\n", "<br/>")


def lora_line(loras: list[dict]) -> str:
    """LoRAs as the panel lists them: 'kungfustyle at 0.6 (left), johnhero at 1.2'."""
    parts = []
    for x in loras:
        where = f" ({x['region']})" if x.get("region") else ""
        strength = x.get("strength")
        parts.append(f"{x.get('name', '?')} at {strength:g}{where}" if strength is not None else x.get("name", "?"))
    return ", ".join(parts) or "none"


def _picture(panel: Panel):
    from reportlab.platypus import Image

    image = panel.image.convert("RGB")
    # Small renders (the toy world is 32 px) are enlarged with nearest neighbour so viewers show crisp pixels.
    scale = max(1, IMAGE_SIDE // max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), PILImage.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    ratio = image.height / image.width
    width = min(IMAGE_SIDE, IMAGE_SIDE / ratio)
    return Image(buffer, width=width, height=width * ratio)


def _panel_flowables(panel: Panel, total: int, styles) -> list:
    from reportlab.platypus import Paragraph, Spacer

    p = panel.params
    body, label = styles["BodyText"], styles["Heading1"]
    heading = f"Panel {panel.number} of {total}" + (f": {panel.title}" if panel.title else "")
    out = [Paragraph(_text(heading), label), _picture(panel), Spacer(1, 10)]
    if panel.notes:
        out.append(Paragraph(f"<b>Notes:</b> {_text(panel.notes)}", body))
    out.append(Paragraph(f"<b>Prompt:</b> {_text(p.get('prompt', ''))}", body))
    if p.get("negative_prompt"):
        out.append(Paragraph(f"<b>Negative prompt:</b> {_text(p['negative_prompt'])}", body))
    out.append(Paragraph(f"<b>LoRAs:</b> {_text(lora_line(p.get('loras', [])))}", body))
    if panel.identity:
        said = "; ".join(x["text"] + (f" (drifted: {x['reason']})" if x["drifted"] else "") for x in panel.identity)
        out.append(Paragraph(f"<b>Identity:</b> {_text(said)}", body))
    settings = (
        f"Seed: {p.get('seed')}; steps {p.get('steps')}, {p.get('sampler')}, CFG {p.get('cfg_scale')}, "
        f"{p.get('width')}x{p.get('height')}, base {p.get('model') or p.get('base')}"
    )
    out.append(Paragraph(_text(settings), body))
    return out


def _one_page(flowables: list, width: float, height: float):
    from reportlab.platypus import KeepInFrame

    # Long notes or prompts shrink to fit rather than spill: one page is one panel, always.
    return KeepInFrame(width, height, flowables, mode="shrink")


def write_pdf(snap: Snapshot, dest: Path, progress: Callable[[int], None]) -> Path:
    """Write the PDF atomically; progress(i) is called as panel i (1-based) is laid out."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    story: list = [Paragraph(_text(snap.title), styles["Title"]), Spacer(1, 12)]
    if snap.description:
        story.append(Paragraph(_text(snap.description), styles["BodyText"]))
    story += [Spacer(1, 18), Paragraph("Characters", styles["Heading2"])]
    if snap.characters:
        for c in snap.characters:
            line = f"<b>{_text(c['name'])}</b> (trigger {_text(c['trigger'])})"
            story.append(
                Paragraph(line + (f": {_text(c['description'])}" if c["description"] else ""), styles["BodyText"])
            )
    else:
        story.append(Paragraph("No character of yours appears in these scenes.", styles["BodyText"]))
    story.append(Paragraph(f"{len(snap.panels)} panel(s)", styles["BodyText"]))
    for line in snap.consistency:  # identity across the board: a line per character
        story.append(Paragraph(_text(line), styles["BodyText"]))
    for panel in snap.panels:
        story += [PageBreak(), _one_page(_panel_flowables(panel, len(snap.panels), styles), *FRAME)]
        progress(panel.number)

    def build(tmp: str) -> None:
        doc = SimpleDocTemplate(tmp, pagesize=A4, title=snap.title, author="LoRA Studio", creator="LoRA Studio")
        doc.build(story)

    return write_atomic(dest, build)
