"""MM2Latent on StyleGAN2: a multi-modal mapper (`mapper.py`, `modality_ae.py`) into the
latent space of a StyleGAN2 generator (`mm2latent.py`); the pipeline with inversion and
real-photo editing (`pipeline.py`) and the training tasks (`train.py`, `encoder_train.py`).
Manual: docs/gan.md."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('DEFAULT_MODEL', 'GANBackend', 'GANPipeline')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
