"""Collaborative Diffusion: frozen uni-modal diffusion models mixed per pixel and per step by
a learned dynamic diffuser (`diffuser.py`); the pipeline (`pipeline.py`) and its training
task (`train.py`). Manual: docs/collab.md."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('DEFAULT_MODEL', 'CollabBackend', 'CollabPipeline', 'add_int8_fingerprints', 'fingerprint', 'influence_picture', 'relink')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
