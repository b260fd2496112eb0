"""One seed rule for training and generation: 0 <= seed < 2**64 (as A1111), and -1 means "pick one"."""

from __future__ import annotations

import secrets

from lorastudio.errors import Invalid

SEED_LIMIT = 2**64
RANDOM = -1


def check_seed(seed: int | None, what: str = "seed", *, setting: str | None = None) -> int | None:
    """The seed if it is in range, None (or -1) for random, else Invalid saying the range."""
    if seed is None or seed == RANDOM:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise Invalid(
            f"{what} {str(seed)[:30]} is out of range: use 0 to 2**64-1, or -1 for a random seed", setting=setting
        )
    return seed


def pick_seed(seed: int | None) -> int:
    """The seed to use and record: the given one, or a fresh random one for None/-1."""
    checked = check_seed(seed)
    return secrets.randbelow(2**32) if checked is None else checked


def offset_seed(seed: int, offset: int) -> int:
    """seed + offset, wrapped into the seed range (image i of a batch uses seed + i)."""
    return (seed + offset) % SEED_LIMIT
