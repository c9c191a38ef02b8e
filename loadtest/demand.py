"""Skewed demand for the launch: most buyers want the same few spaces.

Spaces are ranked from most to least wanted: cheapest first, then the
upper level B1, then zone and label. A buyer draws a shortlist from a Zipf
distribution over that ranking, so with exponent s the space at rank r is
chosen with weight 1 / r**s. With s = 1.1 and 600 spaces, the 10 most
wanted spaces draw half of all picks and the top 50 draw 72 %.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import random
from collections.abc import Sequence
from typing import Any

MAX_RANKED = 5
MISBEHAVIOURS = ("double_click", "same_key_retry", "early_click", "unknown_space")


@dataclasses.dataclass(frozen=True)
class Demand:
    """The ranked spaces of one sale and the cumulative Zipf weights."""

    ranked: tuple[str, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def from_spaces(cls, spaces: Sequence[dict[str, Any]], exponent: float) -> Demand:
        """Rank the spaces of a `GET /spaces` response and weight them."""
        ordered = sorted(
            spaces,
            key=lambda s: (s["price_fen"], s["level"], s["zone"], s["label"]),
        )
        weights = [1.0 / (rank**exponent) for rank in range(1, len(ordered) + 1)]
        return cls(
            ranked=tuple(s["label"] for s in ordered),
            cumulative=tuple(itertools.accumulate(weights)),
        )

    def shortlist(self, rng: random.Random, size: int) -> list[str]:
        """Draw up to `size` distinct spaces, most wanted first for this buyer."""
        size = min(size, len(self.ranked))
        total = self.cumulative[-1]
        chosen: list[str] = []
        # Drawing without replacement by rejection; the bound keeps a buyer
        # whose draws keep repeating from looping for long.
        for _ in range(size * 50):
            index = bisect.bisect_left(self.cumulative, rng.random() * total)
            label = self.ranked[min(index, len(self.ranked) - 1)]
            if label not in chosen:
                chosen.append(label)
                if len(chosen) == size:
                    break
        return chosen


def misbehaviour(buyer_index: int, share: float) -> str | None:
    """Return how this buyer misbehaves, or None for a well-behaved buyer.

    About `share` of the buyers misbehave, spread evenly over the buyers and
    taking the kinds of `MISBEHAVIOURS` in turn.
    """
    if share <= 0:
        return None
    every = max(1, round(1 / share))
    if buyer_index % every != every - 1:
        return None
    return MISBEHAVIOURS[(buyer_index // every) % len(MISBEHAVIOURS)]


def taken_labels(bitmap: bytes, positions: dict[str, int]) -> set[str]:
    """Return the labels whose bit is set in an availability bitmap (MSB first)."""
    taken = set()
    for label, position in positions.items():
        byte = position // 8
        if byte < len(bitmap) and bitmap[byte] & (0x80 >> (position % 8)):
            taken.add(label)
    return taken
