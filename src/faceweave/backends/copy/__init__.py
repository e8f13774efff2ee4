"""The copy-paste baseline: the training face whose mask, sketch and attributes best match
the request, returned as is (no generator). It is the floor every generator must beat."""
from .pipeline import CopyBackend, FaceBank, facesynth_bank, real_bank

__all__ = ["CopyBackend", "FaceBank", "facesynth_bank", "real_bank"]
