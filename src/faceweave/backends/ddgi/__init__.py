"""Diffusion-driven GAN Inversion (Kim et al., CVPR 2024): the features of one pass of a
frozen conditional diffusion UNet, mapped into the latent space of a frozen StyleGAN2
(`networks.py`); the pipeline (`pipeline.py`) and the training task (`train.py`).
Manual: docs/ddgi.md."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('DEFAULT_MODEL', 'DDGIBackend', 'DDGIPipeline')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
