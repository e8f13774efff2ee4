"""A layout prior: a FaceSynth label map drawn to match the attributes a user asked for.

Given a prompt but no mask, a model conditioned on masks must invent the face's layout
itself, and the diffusion model learns that far more slowly than it learns to follow a
mask (docs/diffusion.md: eyeglasses, earrings, necklaces, brow and nose shapes are drawn
far more often given a mask). `draw_layout` closes that gap the way two-stage
text -> layout -> image systems do: it draws FaceSynth people until one has every
attribute asked for and returns that person's label map. FaceSynth draws attributes with
CelebA-like joint frequencies, then the geometry *given* them, so this is the exact prior
of the layouts the model learnt from, given the caption. Attributes FaceSynth only paints
(hair colour, make-up, stubble, ...) are matched too: they do not shape a label map, but
they change which layouts are likely (blond hair rules out a bald head, stubble a beard).

Reproducible: draw j of `seed` is a function of (seed, j) alone, from a stream of its own
(no face of FaceSynth's train, val or test splits, which are streams of two numbers).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..conditions import check_size
from ..errors import FaceweaveError
from .face import Painter
from .params import FACESYNTH_ATTRIBUTES, sample_params, sample_person

# The first number of every layout stream, which keeps them apart from the data splits.
LAYOUT_STREAM = 0x1A70
# Attributes FaceSynth only paints (colour, shading, fine lines): they never change a label
# map (tests/test_layout.py checks this on renders), but they are correlated with ones that
# do, so they are matched after those (match="all") or left free (match="layout").
PAINT_ONLY: frozenset[str] = frozenset({
    "5_o_Clock_Shadow", "Bags_Under_Eyes", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Double_Chin", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Pale_Skin", "Rosy_Cheeks",
    "Wearing_Lipstick", "Young",
})
LAYOUT_ATTRIBUTES: tuple[str, ...] = tuple(a for a in FACESYNTH_ATTRIBUTES if a not in PAINT_ONLY)
DEFAULT_DRAWS = 10_000            # 1-2 s on the 2-core CPU when no draw has them all (benchmarks/bench_layout.py)
DEFAULT_MATCH = "all"             # which attributes a layout must have (draw_layout's `match`)


@dataclasses.dataclass
class Layout:
    mask: np.ndarray               # H x W uint8 class ids (CelebAMask-HQ order)
    draw: int                      # which draw of the seed's stream it is
    matched: list[str]             # attributes asked for that the layout's person has
    unmatched: list[str]           # attributes asked for that no draw within the budget had
    free: list[str]                # attributes asked for that were not matched (FaceSynth does not
                                   # render them; with match="layout", also the paint-only ones)
    match: str = DEFAULT_MATCH     # which attributes were matched: "all" or "layout"

    def describe(self) -> dict:
        return {"source": "FaceSynth layout prior", "draw": self.draw, "matched": self.matched,
                "unmatched": self.unmatched, "free": self.free, "match": self.match}


def _generator(seed: int, draw: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([LAYOUT_STREAM, int(seed), int(draw)])))


def draw_layout(attributes: Mapping[str, int] | None, seed: int, size: int = 64,
                max_draws: int = DEFAULT_DRAWS, match: str = DEFAULT_MATCH) -> Layout:
    """The label map of the first FaceSynth person of `seed`'s stream with all `attributes`.

    attributes: CelebA name -> 0/1 (validated names, as in Conditions). match="all" (the
    default) matches every attribute FaceSynth renders; match="layout" only those that shape
    a label map (LAYOUT_ATTRIBUTES; the older behaviour, which leaves hair colour, make-up
    and the like free, so a caption asking for blond hair may get a bald head's layout).
    If no draw within `max_draws` has them all (FaceSynth never draws some combinations, e.g.
    a goatee on a woman), the draw with the most layout attributes, then the most attributes
    in all, is used, and `unmatched` says which it lacks.
    """
    size = check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FaceweaveError(f"a layout seed must be a non-negative integer, got {seed!r}")
    if isinstance(max_draws, bool) or not isinstance(max_draws, int) or max_draws < 1:
        raise FaceweaveError(f"max_draws must be a positive integer, got {max_draws!r}")
    if match not in ("all", "layout"):
        raise FaceweaveError(f"match must be 'all' or 'layout', got {match!r}")
    asked = dict(attributes or {})
    matchable = FACESYNTH_ATTRIBUTES if match == "all" else LAYOUT_ATTRIBUTES
    wanted = {k: int(v) for k, v in asked.items() if k in matchable}
    shaping = [k for k in wanted if k in LAYOUT_ATTRIBUTES]
    free = sorted(k for k in asked if k not in wanted)
    best = ((-1, -1), 0)                          # ((layout attributes matched, all matched), draw)
    for j in range(max_draws):
        have = sample_person(_generator(seed, j))  # the person only, not the rest of the render's choices
        hits = (sum(have[k] == wanted[k] for k in shaping), sum(have[k] == v for k, v in wanted.items()))
        if hits > best[0]:
            best = (hits, j)
        if hits[1] == len(wanted):
            break
    j = best[1]
    rng = _generator(seed, j)
    params = sample_params(rng)                   # the same person, with the rest of the render's choices
    painter = Painter(params, size, rng)
    painter.paint()
    have = params["attributes"]
    return Layout(mask=painter.cv.label.copy(), draw=j,
                  matched=sorted(k for k, v in wanted.items() if have[k] == v),
                  unmatched=sorted(k for k, v in wanted.items() if have[k] != v), free=free, match=match)
