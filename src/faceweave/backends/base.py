"""The one call every generation backend implements, and the registry that finds them by name.

    backend = get_backend("copy")          # a model backend: get_backend(name, model=DIR or bundled name)
    images = backend.generate([Conditions(prompt="a smiling woman")], seeds=[0], size=64)

A new backend is one folder under backends/ (its pipeline, networks, options and training
tasks) and one BackendSpec line in BACKENDS below: its Backend subclass sets `name` and
`accepts` and implements `_generate` (the arguments arrive checked); a model backend's
pipeline subclasses `Pipeline` (from_pretrained / save_pretrained, a `sampling` block read
from its checkpoint), declares its flags once in its own `options.py`, and names what else
it can do (`edit`, `invert`, `influence`) in the spec's `capabilities`. The CLI, the app and
`faceweave evaluate` decide by those capabilities and options, never by a backend's name.
docs/adding-a-backend.md walks through it.

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


class Pipeline:
    """What every backend's pipeline is (diffusers-style), whatever its method:

        pipe = Pipeline subclass.from_pretrained(folder or bundled name)
        out = pipe(prompt=..., attributes=..., mask=..., sketch=..., seeds=[...], **options)
        out = pipe(conditions=[Conditions, ...], seeds=[...])   # one per seed
        out.images, out.metadata                                  # one per seed
        pipe.save_pretrained(folder)                              # loads back to the same images

    What else a pipeline can do is data, not a guess from its methods: `capabilities` (from
    its registry spec: "generate", "edit" -> `edit_photo`, "invert" -> `invert_photo`,
    "evaluate") and `options(command)` (its declared options, backends/options.py). Its
    sampling defaults are its checkpoint's "sampling" block over the class's `SAMPLING`.
    """

    family: str = ""
    SAMPLING: dict[str, Any] = {}
    meta: dict[str, Any]

    @classmethod
    def from_pretrained(cls, name_or_path, device=None, **kwargs) -> "Pipeline":
        raise NotImplementedError

    def save_pretrained(self, path, storage: str | None = None):
        """Write this pipeline's weights and settings as a checkpoint folder (atomically);
        `storage` None keeps float32, "fp16" or "int8" store smaller (checkpoint.save)."""
        raise NotImplementedError

    @property
    def spec(self) -> "BackendSpec":
        return spec_for_family(self.family)

    @property
    def capabilities(self) -> tuple[str, ...]:
        return self.spec.capabilities

    def options(self, command: str) -> tuple:
        """The options this pipeline's backend declares for `command` (options.Option)."""
        from .options import backend_options
        return backend_options(self.spec.name, command)

    @property
    def sampling(self) -> dict[str, Any]:
        """Sampling defaults: the checkpoint's "sampling" block over the class's SAMPLING."""
        return {**self.SAMPLING, **(self.meta.get("sampling") or {})}

    def check_guidance_scale(self, scale):
        """A guidance scale checked once against what the model reads, before a run of many
        calls; returns it with the names the model uses. Pipelines with guidance override it."""
        return scale

    def guidance_for(self, scale, conditions, layout_prior=None):
        """The scale one call on `conditions` takes: per-modality scales narrowed to what those
        conditions give, where the pipeline needs that (the diffusion pipeline does)."""
        return scale

    def _saved_meta(self) -> dict[str, Any]:
        """The loaded config.json entries a save keeps (not those checkpoint.save writes itself,
        nor what describes the stored bytes: storage, shared tensors)."""
        skip = {"path", "format", "format_version", "family", "config", "storage", "shared"}
        return {k: v for k, v in self.meta.items() if k not in skip}


@dataclasses.dataclass
class PhotoResult:
    """What a pipeline's `edit_photo` or `invert_photo` made of one photo, in the shape the CLI
    writes without knowing the backend: OUT/edited.png or reconstruction.png (`image`),
    comparison.png (`panels`, left to right), any further PNGs (`files`), latent.safetensors
    (`tensors`, an inversion's code), meta.json (`metadata`) and one line to print (`summary`).
    An edit also says which pixels it promises to leave as they were (`kept`: a bool map at
    the image's size, where the image equals the photo resized to that size; None: no promise)."""

    image: np.ndarray
    panels: list[np.ndarray]
    metadata: dict[str, Any]
    summary: str
    kept: np.ndarray | None = None
    files: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    tensors: dict[str, Any] | None = None
    tensor_metadata: dict[str, str] = dataclasses.field(default_factory=dict)


def photo_instrument(meta: dict, name: str, device="cpu"):
    """The parser ("parser") or attribute classifier ("classifier") a model reads a photo's
    own conditions with: its checkpoint's choice ("instruments" in config.json, e.g.
    parser-real-64 for a model of real faces), else the bundled 64 px one (FaceSynth's)."""
    from ..ruler import load_classifier, load_parser

    if name not in ("parser", "classifier"):
        raise ValueError(f"no instrument {name!r}")
    chosen = ((meta or {}).get("instruments") or {}).get(name)
    return (load_parser if name == "parser" else load_classifier)(chosen, size=64, device=device)


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
    capabilities   the commands it can run: "generate", "edit" (a photo), "invert" (a photo),
                   "stylize" (a photo towards a reference or a text), "multiview" (one face
                   rendered at several yaws), "evaluate"; the CLI and
                   the app offer a command by this, never by name
    options        "module" declaring its options per command (GENERATE, EDIT, INVERT,
                   EVALUATE tuples of options.Option; no torch import), see options.py
    tiny           "module:function" that builds a tiny checkpoint of it in a folder, in
                   seconds on a CPU (function(root) -> checkpoint path): the contract tests
                   run every registered backend on one (tests/test_contract.py)
    """

    name: str
    backend: str
    pipeline: str | None = None
    family: str | None = None
    default_model: str | None = None
    precisions: tuple[str, ...] = ("fp32",)
    capabilities: tuple[str, ...] = ("evaluate",)
    options: str | None = None
    tiny: str | None = None

    def pipeline_class(self) -> type:
        module, cls = self.pipeline.split(":")
        return getattr(importlib.import_module(module), cls)

    def build_tiny(self, root) -> str:
        """A tiny checkpoint of this backend built in `root` (see `tiny`); its path."""
        module, fn = self.tiny.split(":")
        return str(getattr(importlib.import_module(module), fn)(root))


# Every method, imported on first use (so `faceweave --help` stays fast). A new backend is
# one folder under backends/ and one line here.
BACKENDS: dict[str, BackendSpec] = {s.name: s for s in (
    BackendSpec("copy", backend="faceweave.backends.copy:CopyBackend",
                options="faceweave.backends.copy.options"),
    BackendSpec("diffusion", backend="faceweave.backends.diffusion:DiffusionBackend",
                pipeline="faceweave.backends.diffusion:DiffusionPipeline", family="diffusion",
                default_model="diffusion-64-real", precisions=("fp32", "bf16"),
                capabilities=("generate", "edit", "invert", "evaluate"),
                options="faceweave.backends.diffusion.options", tiny="faceweave.backends.diffusion.train:tiny_checkpoint"),
    BackendSpec("collab", backend="faceweave.backends.collab:CollabBackend",
                pipeline="faceweave.backends.collab:CollabPipeline", family="collab", default_model="collab-64-real",
                capabilities=("generate", "edit", "evaluate"),
                options="faceweave.backends.collab.options", tiny="faceweave.backends.collab.train:tiny_checkpoint"),
    BackendSpec("gan", backend="faceweave.backends.gan:GANBackend",
                pipeline="faceweave.backends.gan:GANPipeline", family="gan", default_model="gan-64-real",
                capabilities=("generate", "edit", "invert", "evaluate"),
                options="faceweave.backends.gan.options", tiny="faceweave.backends.gan.train:tiny_checkpoint"),
    BackendSpec("ddgi", backend="faceweave.backends.ddgi:DDGIBackend",
                pipeline="faceweave.backends.ddgi:DDGIPipeline", family="ddgi", default_model="ddgi-64-real",
                capabilities=("generate", "edit", "evaluate"),
                options="faceweave.backends.ddgi.options", tiny="faceweave.backends.ddgi.train:tiny_checkpoint"),
    BackendSpec("stylize", backend="faceweave.backends.stylize:StylizeBackend",
                pipeline="faceweave.backends.stylize:StylizePipeline", family="stylize",
                default_model="stylize-64-real", capabilities=("stylize",),
                options="faceweave.backends.stylize.options", tiny="faceweave.backends.stylize.train:tiny_checkpoint"),
    BackendSpec("multiview", backend="faceweave.backends.multiview:MultiviewBackend",
                pipeline="faceweave.backends.multiview:MultiviewPipeline", family="multiview",
                capabilities=("generate", "multiview", "evaluate"),
                options="faceweave.backends.multiview.options",
                tiny="faceweave.backends.multiview.train:tiny_checkpoint"),
)}
# The backend a command runs when neither --backend nor --model says (and the app offers first).
DEFAULT_BACKEND = "diffusion"
# Backends of the design not built yet; named here so the error can say so.
_PLANNED: tuple[str, ...] = ()


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


def backend_settings(name: str) -> list[str]:
    """The settings get_backend(name, ...) takes besides `model` (its Backend's constructor)."""
    module, cls = BACKENDS[backend_name(name)].backend.split(":")
    backend = getattr(importlib.import_module(module), cls)
    return [k for k in inspect.signature(backend).parameters if k != "model"]


def get_backend(name: str, model: str | None = None, **options: Any) -> Backend:
    """A ready backend by registry name. `model` is a checkpoint folder or bundled model name
    for backends that have one; `options` are backend-specific settings (e.g. bank_size)."""
    module, cls = BACKENDS[backend_name(name)].backend.split(":")
    backend = getattr(importlib.import_module(module), cls)
    taken = backend_settings(name)
    unknown = [k for k in options if k not in taken]
    if unknown:
        raise FaceweaveError(f"backend {name!r} has no option {unknown[0]!r}; its options: {', '.join(taken)}")
    return backend(model=model, **options)
