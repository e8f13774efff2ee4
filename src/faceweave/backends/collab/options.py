"""What the collab backend's commands take (backends/options.py says how this becomes CLI flags)."""
from __future__ import annotations

from ..diffusion.options import SOURCE_MASK
from ..options import DDIM_ETA, EVALUATE_SAMPLING, GUIDANCE, MIXING, SAMPLER, SCALE, STEPS, Option

GENERATE = (
    STEPS, GUIDANCE, SCALE, SAMPLER, DDIM_ETA, MIXING,
    Option("return_influence", "--save-influence", "flag", False,
           "Write OUT/influence.png (rows = collaborators, columns = steps; first 4 seeds)."),
)

EDIT = (
    SOURCE_MASK,
    Option("num_inference_steps", "--steps", "int", 20, "Sampling steps of the edit"),
    Option("guidance_scale", "--guidance", "float", 2.0, "Guidance scale of the edit"),
    Option("embed_steps", "--embed-steps", "int", 30, "Steps optimising each condition embedding to reconstruct "
           "the photo  [default: 30]", range=(0, 10_000)),
    Option("finetune_steps", "--finetune-steps", "int", 30, "Steps fine-tuning each edited collaborator on the "
           "photo (0: none)  [default: 30]", range=(0, 10_000)),
    Option("eta", "--eta", "float", 0.8, "How far toward the target embedding (0 = the photo's, 1 = the "
           "target's)  [default: 0.8]"),
    Option("seed", "--seed", "int", 0, "Sampling seed  [default: 0]"),
)

EVALUATE = (
    Option("steps", "--steps", "int", None, "Sampling steps  [default: 20]"),
    *EVALUATE_SAMPLING,
    MIXING,
)
