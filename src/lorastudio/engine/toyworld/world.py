"""What exists in the toy world: colours, characters, fighting styles with their poses, backgrounds.

Held-out things never appear in the base model's training renders, so a LoRA has something new to
teach: the held-out characters are new *combinations* of familiar colours and accessories (as a new
person is for SD), and one whole fighting style is held out.
"""

from __future__ import annotations

from dataclasses import dataclass

SIZE = 32  # renders and the toyworld model work at 32x32 pixels

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 80, 230),
    "green": (40, 190, 60),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 200),
    "cyan": (40, 210, 220),
    "orange": (245, 140, 30),
}
ACCESSORY_COLOUR = (250, 250, 250)  # headbands, belts and capes are white
GLOVE_COLOUR = (15, 15, 15)
BLADE_COLOUR = (150, 160, 255)  # steel blue: far from every figure, prop and background colour
ACCESSORIES = ("none", "headband", "belt", "cape")

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "dojo": (125, 95, 65),
    "street": (100, 100, 100),
    "night": (20, 25, 70),
    "arena": (175, 160, 120),
    "forest": (35, 75, 45),
}


@dataclass(frozen=True)
class Character:
    """A fighter's look: body colour, head colour and one accessory."""

    name: str
    body: str
    head: str
    accessory: str

    def words(self) -> str:
        """Plain-words description used in captions."""
        extra = "" if self.accessory == "none" else f" with a {self.accessory}"
        return f"{self.body} fighter with {self.head} head{extra}"


@dataclass(frozen=True)
class Style:
    """A fighting style: its trigger word, its poses and the prop its fighters carry (if any)."""

    name: str
    trigger: str
    poses: tuple[str, ...]
    prop: str  # gloves | blade | none


STYLES: dict[str, Style] = {
    "boxing": Style("boxing", "boxingstyle", ("guard", "jab"), "gloves"),
    "kungfu": Style("kungfu", "kungfustyle", ("horse stance", "crane kick"), "none"),
    "mma": Style("mma", "mmastyle", ("high kick", "grapple"), "none"),
    "sword": Style("sword", "swordstyle", ("thrust", "parry"), "blade"),
}
HELD_OUT_STYLE = "sword"

# Named characters from the guide; all held out of base training (LoRAs teach them).
HELD_OUT_CHARACTERS: dict[str, Character] = {
    "johnhero": Character("johnhero", "red", "yellow", "headband"),
    "kanehero": Character("kanehero", "blue", "orange", "cape"),
    "mirahero": Character("mirahero", "magenta", "cyan", "belt"),
}


def held_out_pairs() -> set[tuple[str, str]]:
    """(body, head) colour pairings the base model never sees together."""
    return {(c.body, c.head) for c in HELD_OUT_CHARACTERS.values()}


def all_words() -> list[str]:
    """Every word captions and prompts use, so the tokenizer gives each its own token."""
    words = set(COLOURS) | set(BACKGROUNDS) | set(ACCESSORIES) | set(HELD_OUT_CHARACTERS)
    for style in STYLES.values():
        words |= {style.name, style.trigger, style.prop, *" ".join(style.poses).split()}
    words |= set("a an the with in at and two fighter fighters head facing each other fighting stance".split())
    words |= set("faces attacks blocks punch kick sequence defensive pose action scene".split())
    return sorted(words)
