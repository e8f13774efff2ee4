"""What the diffusion backend's commands take (backends/options.py says how this becomes CLI
flags). Generation defaults of None are the checkpoint's own ("sampling" in config.json)."""
from __future__ import annotations

from ..options import (DDIM_ETA, EVALUATE_SAMPLING, GUIDANCE, LAYOUT_PRIOR, PRECISION, PROMPT_ATTRIBUTES, S_TMIN,
                       SAMPLER, SCALE, STEPS, WINDOW, Option, parse_classes, read_mask_file)

GENERATE = (STEPS, GUIDANCE, SCALE, SAMPLER, DDIM_ETA, S_TMIN, WINDOW, PROMPT_ATTRIBUTES, LAYOUT_PRIOR, PRECISION)

SOURCE_MASK = Option("source_mask", "--source-mask", "text", None,
                     "The photo's own mask  [default: parsed with the bundled parser]", parse=read_mask_file,
                     metavar="PNG")
EDIT = (
    SOURCE_MASK,
    Option("num_inference_steps", "--steps", "int", 50, "Inversion and sampling steps of the edit"),
    Option("guidance_scale", "--guidance", "float", 1.0, "Guidance scale of the edit"),
    PROMPT_ATTRIBUTES,
    Option("everywhere", "--everywhere", "flag", False,
           "Let the whole image change (default: only where the mask changed, dilated 2 px)."),
    Option("classes", "--classes", "text", None,
           "Count only mask changes from or to these classes as the edit, e.g. mouth,u_lip,l_lip,ear_r (useful "
           "when the photo's own mask is parsed and imperfect).", parse=parse_classes, metavar="NAME,..."),
)

INVERT = (
    Option("mask", "--mask", "text", None, "The photo's mask  [default: parsed with the bundled parser]",
           parse=read_mask_file, metavar="PNG"),
    Option("parse_mask", "--no-mask", "flag", True, "Invert without a mask condition.", when_set=False),
    Option("prompt", "--prompt", "text", None, "A caption of the photo (optional condition)."),
    Option("num_inference_steps", "--steps", "int", 50, "ODE steps each way"),
)

EVALUATE = (
    Option("steps", "--steps", "int", None, "Sampling steps (with --edit: inversion steps [20])  [default: 20]"),
    *EVALUATE_SAMPLING,
    S_TMIN, WINDOW, PROMPT_ATTRIBUTES, LAYOUT_PRIOR, PRECISION,
)
