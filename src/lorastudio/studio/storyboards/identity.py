"""Identity across a storyboard: each panel's identity score per character (stored on its chosen image by the
worker that drew it: generation/identity.py), judged against the same character's other panels on this board,
and a line per character saying how many panels drifted. The guide's "maintain visual consistency across the
action sequence", measured.

The drift rule (docs/storyboard-identity.md says it in the same words):
- an embedding score (DINO, else CLIP-I: cosine similarity to the character's references) drifts when it is more
  than DRIFT_MARGIN below the median of that character's other panels measured the same way on this board. Scores
  are compared within a board and a character, never with a fixed bar: a cosine's level depends on the scorer, the
  character and the base model, while a panel falling away from its neighbours is what the eye notices;
- a toy-detector score (found or not) drifts when the detectors do not find the character in the panel;
- a panel without a score (no scorer, no references, an image made before scoring) is never flagged."""

from __future__ import annotations

from statistics import median

from lorastudio.studio.generation import IdentityScore
from lorastudio.studio.storyboards.schemas import CharacterConsistency, PanelIdentity

# DreamBooth's DINO is 0.774 between real pictures of the subject and 0.668 for its best renders: a drop of 0.1
# is the whole gap between "the subject" and "a good likeness of it", so a panel that far below its siblings is
# clearly someone else (a smaller margin flags the ordinary spread of poses and backgrounds).
DRIFT_MARGIN = 0.10
EMBEDDINGS = {"dino": "DINO", "clip_i": "CLIP-I"}
DETECTORS = "toy detectors"


def _text(s: IdentityScore) -> str:
    if s.score is None:
        return f"{s.name}: not measured"
    if s.by == DETECTORS:
        return f"{s.name} ✓ found (toy detectors)" if s.score >= 0.5 else f"{s.name} ✗ not found (toy detectors)"
    return f"{s.name} {s.score:.2f} ({EMBEDDINGS.get(s.by, s.by)})"


def _scores(raw: list | None) -> list[IdentityScore] | None:
    """The stored dumps read back; an entry that no longer reads (a future field's shape) is left out."""
    if raw is None:
        return None
    out = []
    for item in raw:
        try:
            out.append(IdentityScore.model_validate(item))
        except ValueError:
            continue
    return out


def judge(panels: list[tuple[int, list | None]]) -> tuple[list[list[PanelIdentity] | None], list[CharacterConsistency]]:
    """For panels given as (scene number from 1, the chosen image's stored identity or None), each panel's scores
    with the drift verdict, and the characters' lines (in order of first appearance)."""
    read = [(number, _scores(raw)) for number, raw in panels]
    # every measured score of each (character, measure) on the board, by scene number
    measured: dict[tuple[int, str], dict[int, float]] = {}
    for number, scores in read:
        for s in scores or []:
            if s.score is not None:
                measured.setdefault((s.character_id, s.by), {})[number] = s.score
    judged: list[list[PanelIdentity] | None] = []
    names: dict[int, str] = {}
    counted: dict[int, list[int]] = {}
    unmeasured: dict[int, int] = {}
    drifted: dict[int, list[int]] = {}
    for number, scores in read:
        if scores is None:
            judged.append(None)
            continue
        row = []
        for s in scores:
            names.setdefault(s.character_id, s.name)
            reason = _drift(s, number, measured.get((s.character_id, s.by), {}))
            if s.score is None:
                unmeasured[s.character_id] = unmeasured.get(s.character_id, 0) + 1
            else:
                counted.setdefault(s.character_id, []).append(number)
            if reason:
                drifted.setdefault(s.character_id, []).append(number)
            row.append(PanelIdentity(**s.model_dump(), text=_text(s), drifted=reason is not None, reason=reason))
        judged.append(row)
    lines = [
        _line(cid, name, len(set(counted.get(cid, []))), sorted(set(drifted.get(cid, []))), unmeasured.get(cid, 0))
        for cid, name in names.items()
    ]
    return judged, lines


def _drift(s: IdentityScore, number: int, same: dict[int, float]) -> str | None:
    """Why this panel's score is drift, or None."""
    if s.score is None:
        return None
    if s.by == DETECTORS:
        return None if s.score >= 0.5 else f"the detectors do not find {s.name} in this panel"
    others = [v for n, v in same.items() if n != number]
    if not others:
        return None  # nothing on the board to compare with
    middle = median(others)
    if s.score < middle - DRIFT_MARGIN:
        return (
            f"{s.score:.2f} is {middle - s.score:.2f} below the median {middle:.2f} of {s.name}'s other panels "
            f"({EMBEDDINGS.get(s.by, s.by)})"
        )
    return None


def _line(cid: int, name: str, panels: int, drifted: list[int], unmeasured: int) -> CharacterConsistency:
    if not panels:  # named or chosen, but nothing measured it (no scorer, no references)
        return CharacterConsistency(
            character_id=cid,
            name=name,
            panels=0,
            drifted=[],
            text=f"{name}: {unmeasured} panel{'s' if unmeasured != 1 else ''}, not measured",
        )
    words = f"{name}: {panels} panel{'s' if panels != 1 else ''}"
    if drifted:
        where = ", ".join(str(n) for n in drifted)
        words += f", {len(drifted)} drifted (scene{'s' if len(drifted) > 1 else ''} {where})"
    else:
        words += ", none drifted"
    if unmeasured:
        words += f"; {unmeasured} not measured"
    return CharacterConsistency(character_id=cid, name=name, panels=panels, drifted=drifted, text=words)
