"""faceweave: multi-modal face generation and editing (text, attributes, masks, sketches).

    import faceweave
    pipe = faceweave.load("diffusion")          # the bundled default (diffusion-64-real), or a checkpoint folder
    out = pipe(prompt="a smiling woman", mask=mask, seeds=[0, 1])
"""
from .conditions import CLASSES, CELEBA_ATTRIBUTES, Conditions
from .errors import FaceweaveError

__version__ = "0.1.0"
__all__ = ["CLASSES", "CELEBA_ATTRIBUTES", "Conditions", "DEFAULT_MODELS", "FaceweaveError", "load",
           "__version__"]



def __getattr__(name: str):
    if name == "DEFAULT_MODELS":       # backend name -> its bundled default checkpoint (from the registry)
        from .backends.base import BACKENDS
        return {n: s.default_model for n, s in BACKENDS.items() if s.default_model}
    raise AttributeError(f"module 'faceweave' has no attribute {name!r}")


def load(name_or_path: str = "diffusion", device: str | None = None, precision: str = "fp32"):
    """A ready pipeline: a backend name ("diffusion": its bundled default model), a bundled
    model name ("diffusion-64") or a checkpoint folder. The checkpoint's family picks the
    pipeline class (the registry in backends/base.py). precision "bf16" (diffusion models):
    the denoiser under bfloat16 autocast, 1.3-2.3x less CPU time on a CPU with native bf16
    (docs/diffusion.md)."""
    from . import checkpoint
    from .backends.base import BACKENDS, spec_for_family

    key = str(name_or_path).strip()
    named = BACKENDS.get(key.lower())
    if named and named.pipeline and not named.default_model:
        raise FaceweaveError(f"the {named.name} backend has no bundled model yet; load a checkpoint folder "
                             f"(faceweave train {named.family} makes one)")
    meta = checkpoint.read_config(named.default_model if named and named.default_model else key)
    family = meta["family"]
    spec = spec_for_family(family)
    if spec is None:
        raise FaceweaveError(f"{meta['path']} holds a {family!r} model, which is not a generation pipeline; "
                             "load parsers and classifiers with faceweave.ruler.load_parser / load_classifier")
    if len(spec.precisions) == 1 and precision != spec.precisions[0]:
        raise FaceweaveError(f"precision {precision!r} applies to diffusion models; {meta['path']} holds a "
                             f"{family!r} model, which runs in {spec.precisions[0]}")
    extra = {"precision": precision} if len(spec.precisions) > 1 else {}
    return spec.pipeline_class().from_pretrained(meta["path"], device=device, **extra)
