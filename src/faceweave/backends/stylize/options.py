"""What the stylize backend's commands take (backends/options.py says how this becomes CLI flags)."""
from __future__ import annotations

from ..options import Option

STYLIZE = (
    Option("strength", "--strength", "float", None, "0..1, how far towards the style (one-shot: the decoder's "
           "weights blended from the model's own to the tuned ones; zero-shot: the text's W+ offsets scaled)  "
           "[default: the model's own, 1]", range=(0.0, 1.0)),
    Option("tune_steps", "--tune-steps", "int", None, "One-shot fine-tuning steps of the decoder towards the "
           "reference  [default: the model's own, 100]", range=(0, 2000)),
    Option("blend", "--blend", "choice", "residual", "Paste back the photo plus the style's change at the photo's "
           "resolution (residual) or the model's stylized face (generated)  [default: residual]",
           choices=("residual", "generated")),
    Option("align", "--no-align", "flag", True, "The image is already an aligned face crop (no detection, no "
           "paste-back).", when_set=False),
)
