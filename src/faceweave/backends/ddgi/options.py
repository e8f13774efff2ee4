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
