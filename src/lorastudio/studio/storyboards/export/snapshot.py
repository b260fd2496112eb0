"""What an export shows, read from the database in one go: the storyboard and its panels (each scene's
chosen image with its PNG record). Every format (PDF, contact sheet, ZIP) writes from this."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image as PILImage


@dataclass
class Panel:
    """One scene as exported: its chosen image's stored PNG and parameters."""

    number: int
    title: str
    notes: str
    png_blob: str
    params: dict  # the image's PNG record, LoRA names replaced by their library names
    image: PILImage.Image
    # Its identity score per character, judged across the board (storyboards/identity.py): PanelIdentity dumps
    # (name, score, by, text, drifted, reason); empty when the image was not scored.
    identity: list[dict] = field(default_factory=list)


@dataclass
class Snapshot:
    """What an export shows, read in one go from the database."""

    storyboard_id: int
    title: str
    description: str
    characters: list[dict] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    consistency: list[str] = field(default_factory=list)  # a line per character: panels scored, which drifted
