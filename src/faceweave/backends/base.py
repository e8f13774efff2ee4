"""The one call every generation backend implements, and the registry that finds them by name.

    backend = get_backend("copy")          # a model backend: get_backend(name, model=DIR or bundled name)
    images = backend.generate([Conditions(prompt="a smiling woman")], seeds=[0], size=64)

A new backend is one folder under backends/ (its pipeline, networks and training tasks)
and one BackendSpec line in BACKENDS below: its Backend subclass sets `name` and `accepts`
and implements `_generate` (the arguments arrive checked). docs/adding-a-backend.md walks
through it.

Everything user-facing (CLI, Python API, app, `faceweave evaluate`) goes through
`Backend.generate`, so a feature added to a backend shows up everywhere at once. The
contract that makes results reproducible and batch-independent: image i depends only on
(conditions[i], seeds[i]), whatever else is in the batch.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import importlib
import inspect
from typing import Any, Callable, Sequence

import numpy as np

from ..conditions import Conditions, check_size
from ..errors import FaceweaveError
from ..seeds import check_seed


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
        same words: mismatched lengths, seeds out of range, a size out of range, a modality the
        backend cannot read.
        """
        size = check_size(size)
        conditions, seeds = list(conditions), [check_seed(s) for s in seeds]
        if len(conditions) != len(seeds):
            raise FaceweaveError(f"{len(conditions)} conditions but {len(seeds)} seeds; "
                                 "pass one seed per image")
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


def check_callback(callback, steps: int) -> Callable | None:
    """The callback(step, sigma, x, denoised) a sampler calls, guarded: an exception in the
    user's function becomes one FaceweaveError naming the step ("callback raised at step 3
    of 20: ValueError: ..."; the original stays chained for a debugger) instead of a
    traceback through the sampler's internals."""
    if callback is None:
        return None
    if not callable(callback):
        raise FaceweaveError(f"callback must be a function callback(step, sigma, x, denoised), "
                             f"got {type(callback).__name__}")

    def guarded(i, sigma, x, denoised):
        try:
            callback(i, sigma, x, denoised)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise FaceweaveError(f"callback raised at step {i + 1} of {steps}: {type(exc).__name__}"
                                 + (f": {text[0]}" if text else "")) from exc
    return guarded


def checked_keywords(method: Callable) -> Callable:
    """A pipeline method whose unknown keyword (pipe(prompt="x", negative_prompt="y")) is a
    FaceweaveError naming it and the keywords the method takes, not Python's TypeError."""
    signature = inspect.signature(method)
    taken = [name for name, p in signature.parameters.items()
             if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError as exc:
            where = type(self).__name__ + ("" if method.__name__ == "__call__" else f".{method.__name__}")
            unknown = [k for k in kwargs if k not in taken]
            what = f"no keyword {unknown[0]!r}" if unknown else f"these arguments ({exc})"
            raise FaceweaveError(f"{where}() takes {what}; it takes {', '.join(taken)}") from None
        return method(self, *args, **kwargs)
    return call


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


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """One registered method: everything the package needs to find it, as data.

    name           the registry name (`--backend NAME`, get_backend(NAME))
    backend        "module:Class" of its Backend (the generate call `evaluate` and the CLI use)
    pipeline       "module:Class" of its diffusers-style pipeline (faceweave.load), if any
    family         the checkpoint family that pipeline loads (config.json's "family")
    default_model  its bundled default checkpoint (None: the method has no weights)
    precisions     the precisions `faceweave.load(..., precision=...)` accepts for it
    """

    name: str
    backend: str
    pipeline: str | None = None
    family: str | None = None
    default_model: str | None = None
    precisions: tuple[str, ...] = ("fp32",)

    def pipeline_class(self) -> type:
        module, cls = self.pipeline.split(":")
        return getattr(importlib.import_module(module), cls)


# Every method, imported on first use (so `faceweave --help` stays fast). A new backend is
# one folder under backends/ and one line here.
BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("copy", "faceweave.backends.copy:CopyBackend"),
    BackendSpec("diffusion", "faceweave.backends.diffusion:DiffusionBackend",
                "faceweave.backends.diffusion:DiffusionPipeline", "diffusion", "diffusion-64-real", ("fp32", "bf16")),
    BackendSpec("collab", "faceweave.backends.collab:CollabBackend",
                "faceweave.backends.collab:CollabPipeline", "collab", "collab-64"),
    BackendSpec("gan", "faceweave.backends.gan:GANBackend", "faceweave.backends.gan:GANPipeline", "gan", "gan-64"),
)}
# Backends of the design not built yet; named here so the error can say so.
_PLANNED: tuple[str, ...] = ("ddgi", "stylize")


def spec_for_family(family: str) -> BackendSpec | None:
    """The backend whose pipeline loads checkpoints of `family`, or None."""
    return next((s for s in BACKENDS.values() if s.family == family and s.pipeline), None)


def available_backends() -> list[str]:
    return sorted(BACKENDS)


def backend_name(name: str) -> str:
    """The registry key of `name` ("Copy " -> "copy"), or an error listing the available ones."""
    key = str(name).strip().lower()
    if key not in BACKENDS:
        available = ", ".join(available_backends())
        if key in _PLANNED:
            raise FaceweaveError(f"backend {name!r} is not implemented yet; available backends: {available}")
        raise FaceweaveError(f"unknown backend {name!r}; available backends: {available}")
    return key


def get_backend(name: str, model: str | None = None, **options: Any) -> Backend:
    """A ready backend by registry name. `model` is a checkpoint folder or bundled model name
    for backends that have one; `options` are backend-specific settings (e.g. bank_size)."""
    module, cls = BACKENDS[backend_name(name)].backend.split(":")
    backend = getattr(importlib.import_module(module), cls)
    taken = [k for k in inspect.signature(backend).parameters if k != "model"]
    unknown = [k for k in options if k not in taken]
    if unknown:
        raise FaceweaveError(f"backend {name!r} has no option {unknown[0]!r}; its options: {', '.join(taken)}")
    return backend(model=model, **options)
