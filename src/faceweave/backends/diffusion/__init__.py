"""Conditional diffusion (text, attributes, mask and sketch through one denoiser with
cross-attention): the pipeline (`pipeline.py`) and its training tasks (`train.py`).
Manual: docs/diffusion.md."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('DEFAULT_MODEL', 'DEFAULT_SAMPLER', 'DiffusionBackend', 'DiffusionPipeline', 'PipelineOutput', 'changed_region')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
