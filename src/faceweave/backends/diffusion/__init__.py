"""Conditional diffusion (text, attributes, mask and sketch through one denoiser with
cross-attention): the pipeline (`pipeline.py`) and its training tasks (`train.py`).
Manual: docs/diffusion.md."""
from .pipeline import (DEFAULT_MODEL, DEFAULT_SAMPLER, DiffusionBackend, DiffusionPipeline, PipelineOutput,
                       changed_region)

__all__ = ["DEFAULT_MODEL", "DEFAULT_SAMPLER", "DiffusionBackend", "DiffusionPipeline", "PipelineOutput",
           "changed_region"]
