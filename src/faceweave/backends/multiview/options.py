"""What the multiview backend's commands take (backends/options.py says how this becomes CLI flags)."""
from __future__ import annotations

from ..options import Option

TRUNCATION = Option("truncation", "--truncation", "float", None, "0..1, how far a seed's face may lie from the "
                    "average face (1: no truncation)  [default: the model's own, 0.7]", range=(0.0, 1.0))

GENERATE = (TRUNCATION,)

MULTIVIEW = (
    TRUNCATION,
    Option("invert_steps", "--invert-steps", "int", None, "With --image: refinement steps of the photo's inversion "
           "after the encoder's guess (0: the encoder alone)  [default: the model's own, 150]", range=(0, 5000)),
    Option("align", "--no-align", "flag", True, "With --image: the photo is already an aligned face crop "
           "(FaceSynth framing; no detection).", when_set=False),
)

EVALUATE = ()
