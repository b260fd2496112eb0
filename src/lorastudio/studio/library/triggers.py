"""Trigger words for characters and styles: suggested from the name, unique per owner, never a word
the base model already knows (a common English word would fight its existing meaning)."""

from __future__ import annotations

import re

from lorastudio.engine import check_trigger
from lorastudio.errors import Conflict, Invalid

# Words a trigger must not be: the guide's pattern ("johnhero") would make these from ordinary names,
# and a base model already has a meaning for each.
COMMON = set(
    """a an the and or of in on at to is it be as by for with from this that hero heroes superhero antihero
    man woman boy girl person people fighter warrior villain master style fight fighting boxing kungfu karate
    sword punch kick action pose photo picture image art red blue green black white gold silver dark light
    super best new old big small good bad king queen lord lady knight ninja samurai monk soldier agent""".split()
)


def suggest_trigger(name: str, taken: set[str], suffix: str = "hero") -> str:
    """'Action Hero John' -> 'johnhero' (the last word of the name + suffix, as the guide's examples),
    made unique among `taken` with a number; a common word gets an 'x' so it means nothing yet."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    if not words:
        raise Invalid("give a name with letters or digits, or give the trigger word yourself")
    stem = words[-1][:40]
    word = stem if stem.endswith(suffix) else stem + suffix
    if word in COMMON or words[-1] in COMMON and len(words) == 1:
        word += "x"
    candidate, n = word, 2
    while candidate in taken or candidate in COMMON:
        candidate, n = f"{word}{n}", n + 1
    return candidate


def check_new_trigger(word: str, taken: set[str]) -> str:
    """A trigger a user chose: one word, not common, not already used by another of their objects."""
    word = check_trigger(word).lower()
    if word in COMMON:
        raise Invalid(f"{word!r} is a common word the base model already knows; pick a made-up word like 'johnhero'")
    if word in taken:
        raise Conflict(f"the trigger word {word!r} is already used by another of your characters or styles")
    return word
