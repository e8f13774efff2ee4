"""faceweave: multi-modal face generation and editing (text, attributes, masks, sketches).

    import faceweave
    pipe = faceweave.load("diffusion")          # the bundled default (diffusion-64-real), or a checkpoint folder
    out = pipe(prompt="a smiling woman", mask=mask, seeds=[0, 1])
"""
from .conditions import CLASSES, CELEBA_ATTRIBUTES, Conditions
from .errors import FaceweaveError

__version__ = "0.1.0"
__all__ = ["CLASSES", "CELEBA_ATTRIBUTES", "Conditions", "FaceweaveError", "load", "__version__"]

# backend name -> its bundled default checkpoint
DEFAULT_MODELS = {"diffusion": "diffusion-64-real", "collab": "collab-64", "gan": "gan-64"}


def load(name_or_path: str = "diffusion", device: str | None = None, precision: str = "fp32"):
    """A ready pipeline: a backend name ("diffusion": its bundled default model), a bundled
    model name ("diffusion-64") or a checkpoint folder. The checkpoint's family picks the
    pipeline class. precision "bf16" (diffusion models): the denoiser under bfloat16
    autocast, 1.3-2.3x less CPU time on a CPU with native bf16 (docs/diffusion.md)."""
    from . import checkpoint

    key = str(name_or_path).strip()
    meta = checkpoint.read_config(DEFAULT_MODELS.get(key.lower(), key))
    family = meta["family"]
    if family == "diffusion":
        from .backends.diffusion import DiffusionPipeline
        return DiffusionPipeline.from_pretrained(meta["path"], device=device, precision=precision)
    if precision != "fp32":
        raise FaceweaveError(f"precision {precision!r} applies to diffusion models; {meta['path']} holds a "
                             f"{family!r} model, which runs in fp32")
    if family == "collab":
        from .backends.collab import CollabPipeline
        return CollabPipeline.from_pretrained(meta["path"], device=device)
    if family == "gan":
        from .backends.gan import GANPipeline
        return GANPipeline.from_pretrained(meta["path"], device=device)
    raise FaceweaveError(f"{meta['path']} holds a {family!r} model, which is not a generation pipeline; "
                         "load parsers and classifiers with faceweave.ruler.load_parser / load_classifier")
