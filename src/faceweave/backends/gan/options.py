"""What the gan backend's commands take (backends/options.py says how this becomes CLI flags)."""
from __future__ import annotations

from ..options import Option

GENERATE = (
    Option("diversity", "--diversity", "float", None, "0..1, how far each seed's own latent replaces the finest "
           "layers of the mapped one  [default: the model's own, config.json \"sampling\"]", range=(0.0, 1.0)),
)

NO_ALIGN = Option("align", "--no-align", "flag", True,
                  "The image is already an aligned face crop (no detection, no paste-back).", when_set=False)
TUNE = Option("tune_steps", "--tune-steps", "int", 0, "Pivotal tuning steps after the projector: a copy of "
              "the generator learns this face, so the reconstruction and the edit keep the person "
              "(0: off; 100 is a good start)  [default: 0]")
EDIT = (
    Option("steps", "--steps", "int", 100, "Projector steps after the encoder (0: the encoder alone)"),
    TUNE,
    Option("strength", "--strength", "float", 1.0, "0..3, how far along the mapped edit direction  "
           "[default: 1.0]"),
    Option("blend", "--blend", "choice", "residual", "Paste the photo plus the GAN's change (residual) or the "
           "GAN's face (generated)  [default: residual]", choices=("residual", "generated")),
    NO_ALIGN,
)

INVERT = (
    Option("steps", "--steps", "int", 100, "Projector steps after the encoder (0: the encoder alone)"),
    TUNE,
    NO_ALIGN,
)

EVALUATE = ()
