"""MM2Latent on StyleGAN2: a multi-modal mapper (`mapper.py`, `modality_ae.py`) into the
latent space of a StyleGAN2 generator (`mm2latent.py`); the pipeline with inversion and
real-photo editing (`pipeline.py`) and the training tasks (`train.py`, `encoder_train.py`).
Manual: docs/gan.md."""
from .pipeline import DEFAULT_MODEL, GANBackend, GANPipeline

__all__ = ["DEFAULT_MODEL", "GANBackend", "GANPipeline"]
