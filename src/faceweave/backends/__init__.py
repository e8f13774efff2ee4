"""Generation backends behind one call: `get_backend(name, model).generate(conditions, seeds, size)`.

One folder per method, each registered by one line in `base.BACKENDS`:

    copy       the copy-paste baseline: the nearest training face (no generator)
    diffusion  one conditional diffusion model (text, attributes, mask, sketch)
    collab     Collaborative Diffusion: frozen uni-modal models mixed by a dynamic diffuser
    gan        MM2Latent: a multi-modal mapper into a StyleGAN2's latent space

Those with weights are also diffusers-style pipelines: faceweave.load("diffusion").
docs/adding-a-backend.md walks through adding one.
"""
from .base import BACKENDS, Backend, BackendSpec, available_backends, backend_name, get_backend

__all__ = ["BACKENDS", "Backend", "BackendSpec", "available_backends", "backend_name", "get_backend"]
