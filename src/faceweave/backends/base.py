"""The one call every generation backend implements, and the registry that finds them by name.

    backend = get_backend("copy")          # a model backend: get_backend(name, model=DIR or bundled name)
    images = backend.generate([Conditions(prompt="a smiling woman")], seeds=[0], size=64)

A new backend subclasses Backend, sets `name` and `accepts`, implements `_generate` (the
arguments arrive checked) and registers "name": "module:Class" in _REGISTRY.

Everything user-facing (CLI, Python API, app, `faceweave evaluate`) goes through
`Backend.generate`, so a feature added to a backend shows up everywhere at once. The
contract that makes results reproducible and batch-independent: image i depends only on
(conditions[i], seeds[i]), whatever else is in the batch.
"""
from __future__ import annotations

import abc
import importlib
from typing import Any, Sequence

import numpy as np

from ..conditions import Conditions, check_size
from ..errors import FaceweaveError


class Backend(abc.ABC):
    """A face generator behind one call.

    name     the registry name ("copy", "diffusion", ...)
    accepts  the Conditions fields this backend reads; asking for others is an error,
             not a silently ignored condition
    """

    name: str = ""
    accepts: tuple[str, ...] = ()

    @abc.abstractmethod
    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        """Backend-specific work on already-checked arguments."""

    def generate(self, conditions: Sequence[Conditions], seeds: Sequence[int], size: int) -> list[np.ndarray]:
        """One size x size x 3 uint8 RGB image per (conditions[i], seeds[i]).

        Checks the arguments once here so every backend refuses the same mistakes in the
        same words: mismatched lengths, negative seeds, a size out of range, a modality the
        backend cannot read.
        """
        size = check_size(size)
        conditions, seeds = list(conditions), [int(s) for s in seeds]
        if len(conditions) != len(seeds):
            raise FaceweaveError(f"{len(conditions)} conditions but {len(seeds)} seeds; "
                                 "pass one seed per image")
        if any(s < 0 for s in seeds):
            raise FaceweaveError(f"seeds must be non-negative, got {min(seeds)}")
        for cond in conditions:
            if not isinstance(cond, Conditions):
                raise FaceweaveError(f"generate takes faceweave.Conditions, got {type(cond).__name__}")
            unread = [m for m in cond.given if m not in self.accepts]
            if unread:
                raise FaceweaveError(f"backend {self.name!r} cannot condition on {', '.join(unread)}; "
                                     f"it reads {', '.join(self.accepts) or 'nothing'}")
        images = self._generate(conditions, seeds, size)
        if len(images) != len(conditions) or any(
                im.shape != (size, size, 3) or im.dtype != np.uint8 for im in images):
            raise RuntimeError(f"backend {self.name!r} broke the generate contract "
                               f"({len(images)} images for {len(conditions)} conditions)")
        return images

    def describe(self) -> dict[str, Any]:
        """What produced the images (name, model, settings), written into metrics and metadata."""
        return {"backend": self.name}


def check_seeds(seeds) -> list[int]:
    """A pipeline's seeds: a non-empty list of whole numbers >= 0 (numpy integers too). A string
    or a fraction is an error, not a silent int() of its pieces."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise FaceweaveError(f"seeds must be a list of non-negative integers, e.g. [0, 1, 2], got {seeds!r}")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise FaceweaveError(f"seeds must be a non-empty list of non-negative integers, got {s!r} among them")
        out.append(int(s))
    if not out:
        raise FaceweaveError("seeds must be a non-empty list of non-negative integers, got an empty list")
    return out


def check_callback(callback) -> None:
    if callback is not None and not callable(callback):
        raise FaceweaveError(f"callback must be a function callback(step, sigma, x, denoised), "
                             f"got {type(callback).__name__}")


def per_seed_conditions(conditions, prompt, attributes, mask, sketch, n: int, accepts: Sequence[str],
                        who: str) -> list[Conditions]:
    """A pipeline call's conditions as one Conditions per seed: `conditions` (one, or one per
    seed) or else the keyword fields, checked against what the model reads (`who` names it
    in the error)."""
    if conditions is None:
        conditions = Conditions(prompt=prompt, attributes=attributes or {}, mask=mask, sketch=sketch)
    if isinstance(conditions, Conditions):
        conditions = [conditions] * n
    conditions = list(conditions)
    if len(conditions) != n:
        raise FaceweaveError(f"{len(conditions)} conditions but {n} seeds; pass one seed per condition")
    for c in conditions:
        unread = [m for m in c.given if m not in accepts]
        if unread:
            raise FaceweaveError(f"{who} cannot condition on {', '.join(unread)}; it reads {', '.join(accepts)}")
    return conditions


# name -> "module:Class" (imported on first use, so `faceweave --help` stays fast).
_REGISTRY: dict[str, str] = {
    "copy": "faceweave.backends.copy:CopyBackend",
    "diffusion": "faceweave.backends.diffusion:DiffusionBackend",
    "collab": "faceweave.backends.collab:CollabBackend",
    "gan": "faceweave.backends.gan:GANBackend",
}
# Backends of the design that later issues add; named here so the error can say so.
_PLANNED: tuple[str, ...] = ("ddgi", "stylize")


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def backend_name(name: str) -> str:
    """The registry key of `name` ("Copy " -> "copy"), or an error listing the available ones."""
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        available = ", ".join(available_backends())
        if key in _PLANNED:
            raise FaceweaveError(f"backend {name!r} is not implemented yet; available backends: {available}")
        raise FaceweaveError(f"unknown backend {name!r}; available backends: {available}")
    return key


def get_backend(name: str, model: str | None = None, **options: Any) -> Backend:
    """A ready backend by registry name. `model` is a checkpoint folder or bundled model name
    for backends that have one; `options` are backend-specific settings (e.g. bank_size)."""
    module, cls = _REGISTRY[backend_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)(model=model, **options)
