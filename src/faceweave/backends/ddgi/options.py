"""What the ddgi backend's commands take (backends/options.py says how this becomes CLI flags)."""
from __future__ import annotations

from ..options import Option

GENERATE = (
    Option("sigma", "--sigma", "float", None, "Noise level of the one diffusion pass the latent is read from  "
           "[default: the model's own]", range=(0.1, 80.0)),
    Option("diversity", "--diversity", "float", None, "0..1, how far each seed's own latent replaces the finest "
           "layers of the mapped one  [default: the model's own, 0]", range=(0.0, 1.0)),
)

EVALUATE = GENERATE

EDIT = (
    Option("steps", "--steps", "int", 200, "Projector steps of the inversion, from the generator's average code"),
    Option("tune_steps", "--tune-steps", "int", 0, "Pivotal tuning steps after the projector: a copy of the "
           "generator learns this face (0: off)  [default: 0]"),
    Option("strength", "--strength", "float", 1.0, "0..3, how far along the difference of the two codes  "
           "[default: 1.0]"),
    Option("blend", "--blend", "choice", "residual", "Paste the photo plus the GAN's change (residual) or the "
           "GAN's face (generated)  [default: residual]", choices=("residual", "generated")),
    Option("align", "--no-align", "flag", True,
           "The image is already an aligned face crop (no detection, no paste-back).", when_set=False),
)
