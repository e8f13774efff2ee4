"""Generation backends behind one call: `get_backend(name, model).generate(conditions, seeds, size)`.

    copy       the copy-paste baseline: the nearest FaceSynth training face (no generator)
    diffusion  one conditional diffusion model (text, attributes, mask, sketch); also a
               diffusers-style pipeline: faceweave.load("diffusion")

The other generation methods of the design (collab, gan, ddgi, stylize) register here
as they are built.
"""
from .base import Backend, available_backends, backend_name, get_backend

__all__ = ["Backend", "available_backends", "backend_name", "get_backend"]
