"""MMFS, Multi-Modal Face Stylization (Ma et al. 2023): an encoder in place of a StyleGAN2's
low-resolution layers, its mid and high layers as the decoder (`networks.py`); the pipeline
that stylizes a photo towards a reference image (one-shot) or a text (zero-shot)
(`pipeline.py`); the training tasks of every stage and of the joint image-text space
(`train.py`); the offline looks the joint space learns from (`styles.py`).
Manual: docs/stylize.md."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('StylizeBackend', 'StylizePipeline')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
