"""The copy-paste baseline: the training face whose mask, sketch and attributes best match
the request, returned as is (no generator). It is the floor every generator must beat."""
# Names load on first use, so that reading this backend's options (options.py) imports no torch.
_LAZY = {name: ".pipeline" for name in ('CopyBackend', 'FaceBank', 'facesynth_bank', 'real_bank')}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
