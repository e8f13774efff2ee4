"""EG3D-style 3D-aware faces (Chan et al. 2022): a tri-plane generator with volume rendering,
super-resolution and a pose-conditioned dual discriminator (`networks.py`); FaceSynth heads at
chosen yaws and a yaw read off a photo's landmarks (`views.py`); its training task
(`train.py`); the pipeline that renders a face at several yaws from a seed, from conditions
through ddgi, or from an inverted photo (`pipeline.py`). Manual: docs/multiview.md."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('MultiviewBackend', 'MultiviewPipeline')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
