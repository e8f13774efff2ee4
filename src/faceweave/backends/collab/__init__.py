"""Collaborative Diffusion: frozen uni-modal diffusion models mixed per pixel and per step by
a learned dynamic diffuser (`diffuser.py`); the pipeline (`pipeline.py`) and its training
task (`train.py`). Manual: docs/collab.md."""
from .pipeline import (DEFAULT_MODEL, CollabBackend, CollabPipeline, add_int8_fingerprints, fingerprint,
                       influence_picture, relink)

__all__ = ["DEFAULT_MODEL", "CollabBackend", "CollabPipeline", "add_int8_fingerprints", "fingerprint",
           "influence_picture", "relink"]
