"""The web app: paint a mask, type a prompt, get faces; edit a photo the same way.

    faceweave app                                   # http://127.0.0.1:7860, bundled diffusion-64-real
    faceweave app --host 0.0.0.0 --port 8080 --max-concurrency 2 --max-queue 32

Three layers, so that everything but the page itself is tested without a browser:

* plain functions: `canvas_to_mask` / `canvas_to_sketch` (what the browser painted ->
  class ids / a line drawing, through faceweave.io's own colour-mask decoder),
  `run_generate` / `run_edit` (Conditions in, images + metadata out, through the same
  pipeline call as `faceweave generate` / `faceweave edit`);
* `Models`: the pipelines and the parser, loaded once per process and shared by every
  request;
* `build_app` (the Gradio page) and `launch` (the server: 127.0.0.1 by default, a bounded
  queue, upload limits).

Every mistake a user can make (a bad upload, a colour that is not a class, nothing to
generate from, a setting out of range) is a FaceweaveError, shown in the page as one line;
anything else is a bug, logged with its traceback on the server and shown as one line too.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

# Gradio reports usage to its makers unless told otherwise; this app never calls out.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import numpy as np

from . import io
from .conditions import (
    CELEBA_ATTRIBUTES,
    CELEBAMASK_PALETTE,
    CLASS_LABELS,
    CLASSES,
    Conditions,
    colorize_mask,
)
from .backends.base import DEFAULT_BACKEND, backend_name
from .backends.options import backend_options, capable, join_names
from .errors import FaceweaveError
from .seeds import check_seed, check_seeds

log = logging.getLogger("faceweave.app")

CANVAS = 256                 # side of the painting canvases (masks are resized to the model's side)
MAX_IMAGES = 8               # images per request: bounds the time and memory one click can take
MAX_STEPS = 100              # sampling / editing steps per request
MAX_UPLOAD = "10mb"          # per uploaded file (Gradio refuses bigger ones before reading them)
MAX_PIXELS = io.DEFAULT_MAX_PIXELS   # per decoded picture, as the CLI's readers
DEFAULT_MAX_QUEUE = 16       # requests waiting; more are refused with "queue is full"
ATTRIBUTE_STATES = ("don't care", "want", "don't want")
_STATE_VALUE = {"want": 1, "don't want": 0}
_UNSEEN = 32                 # grey levels: fainter sketch strokes than this count as no drawing


# ---------------------------------------------------------------------------------------
# What the browser sends -> Conditions
# ---------------------------------------------------------------------------------------

def _rgba(image: Any, what: str) -> np.ndarray | None:
    """One picture of an ImageEditor value as H x W x 4 uint8 RGBA (None stays None)."""
    if image is None:
        return None
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise FaceweaveError(f"the {what} must be an RGB(A) picture, got an array of shape {image.shape} "
                             f"and dtype {image.dtype}; paint on the canvas or upload a PNG")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise FaceweaveError(f"the {what} has {image.shape[0] * image.shape[1]:,} pixels, over the limit of "
                             f"{MAX_PIXELS:,}; send a smaller picture")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 3:
        image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return image


def _composite(value: Any, what: str) -> np.ndarray | None:
    """The whole picture of an ImageEditor value (a dict with background / layers / composite,
    or one array) as RGBA, or None when there is none."""
    if isinstance(value, dict):
        image = value.get("composite")
        return _rgba(value.get("background") if image is None else image, what)
    return _rgba(value, what)


def _over(rgba: np.ndarray, colour: Sequence[int]) -> np.ndarray:
    """RGBA composited over a flat colour -> RGB (what a viewer would show)."""
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    flat = np.asarray(colour, np.float32)
    return np.rint(rgba[..., :3].astype(np.float32) * alpha + flat * (1.0 - alpha)).astype(np.uint8)


def _unpainted(rgba: np.ndarray) -> np.ndarray:
    """Pixels nobody painted: (mostly) transparent, or the plain white Gradio gives an empty canvas."""
    return (rgba[..., 3] < 128) | (rgba[..., :3] == 255).all(axis=2)


def _painted_colours(value: Any) -> np.ndarray | None:
    """H x W x 3: the colour painted at each pixel, black (the background class) where nothing
    was; None when nothing was painted at all.

    From the browser the value has the background picture and the brush layers: a layer pixel
    is painted where it is at least half opaque, and its colour is the brush's own (canvases
    store colour apart from opacity), so a stroke's soft rim never blends into a third class.
    A bare composite (an API client's picture) is taken as it is; blends there are snapped
    by the colour decoder."""
    layers = (value.get("layers") or []) if isinstance(value, dict) else []
    base = _rgba(value.get("background"), "mask") if isinstance(value, dict) and layers else _composite(value, "mask")
    layers = [_rgba(layer, "mask layer") for layer in layers]
    shape = base.shape if base is not None else layers[0].shape if layers else None
    if shape is None:
        return None
    if base is None:
        base = np.zeros(shape, np.uint8)
    if any(layer.shape != shape for layer in layers):
        raise FaceweaveError(f"the mask's layers do not match its {shape[1]}x{shape[0]} canvas; "
                             "send layers the size of the background")
    painted = ~_unpainted(base)
    rgb = np.where(painted[..., None], base[..., :3], CELEBAMASK_PALETTE[0]).astype(np.uint8)
    for layer in layers:
        stroke = layer[..., 3] >= 128
        rgb[stroke] = layer[..., :3][stroke]
        painted |= stroke
    return rgb if painted.any() else None


def canvas_to_mask(value: Any) -> np.ndarray | None:
    """A painted mask canvas -> H x W uint8 class ids, or None when nothing was painted.

    Unpainted pixels are background. The colours go through faceweave.io's colour-mask
    decoder restricted to the official CelebAMask-HQ palette (the brushes' colours), so
    blended edges snap to the classes on either side; a colour that is no class is a
    one-line error naming it.
    """
    rgb = _painted_colours(value)
    if rgb is None:
        return None
    mask = io.decode_colour_mask(rgb, {"celebamask-hq": CELEBAMASK_PALETTE}, source="the painted mask",
                                 fix="paint only with the 19 class brushes, or upload the mask as a file "
                                     "(index PNG or a known colour palette)")
    return mask if mask.any() else None


def canvas_to_sketch(value: Any) -> np.ndarray | None:
    """A sketch canvas (dark strokes on white or on transparent) -> H x W uint8, lines = 255
    on 0 with the strongest line at 255 (as io.read_sketch gives), or None when blank."""
    rgba = _composite(value, "sketch")
    if rgba is None or not rgba[..., 3].any():
        return None
    grey = _over(rgba, (255, 255, 255)).astype(np.float32).mean(axis=2)
    ink = 255.0 - grey
    peak = float(ink.max())
    if peak < _UNSEEN:
        return None
    return np.rint(ink * (255.0 / peak)).astype(np.uint8)


def mask_to_canvas(mask: np.ndarray, side: int = CANVAS) -> dict:
    """Class ids -> an ImageEditor value: the mask in the official colours as the background."""
    return {"background": colorize_mask(io.resize_mask(mask, side)), "layers": [], "composite": None}


def sketch_to_canvas(sketch: np.ndarray, side: int = CANVAS) -> dict:
    """A sketch (lines 255 on 0) -> an ImageEditor value: black lines on white."""
    lines = 255 - io.resize_sketch(np.asarray(sketch, np.uint8), side)
    return {"background": np.repeat(lines[..., None], 3, axis=2), "layers": [], "composite": None}


def attributes_from_states(states: dict[str, str] | Sequence[str]) -> dict[str, int]:
    """{attribute: "want" | "don't want" | "don't care"} (or one state per CelebA attribute, in
    order) -> {attribute: 1 | 0}; "don't care" leaves the attribute out."""
    if not isinstance(states, dict):
        states = list(states)
        if len(states) != len(CELEBA_ATTRIBUTES):
            raise FaceweaveError(f"expected one state per CelebA attribute ({len(CELEBA_ATTRIBUTES)}), "
                                 f"got {len(states)}")
        states = dict(zip(CELEBA_ATTRIBUTES, states))
    out = {}
    for name, state in states.items():
        state = "don't care" if state is None else str(state).strip().lower()
        if state not in ATTRIBUTE_STATES:
            raise FaceweaveError(f"attribute {name}: {state!r} is not a choice; use one of "
                                 f"{', '.join(ATTRIBUTE_STATES)}")
        if state in _STATE_VALUE:
            out[name] = _STATE_VALUE[state]
    return out


def read_upload(path: str | os.PathLike | None, kind: str) -> np.ndarray | None:
    """An uploaded file through the CLI's own readers (formats, palettes, size limits)."""
    if path is None:
        return None
    reader = {"mask": io.read_mask, "sketch": io.read_sketch, "photo": io.read_photo,
              "style reference": io.read_image}[kind]
    try:
        return reader(path)
    except FaceweaveError as exc:       # the temporary upload name means nothing to the user
        raise FaceweaveError(str(exc).replace(str(path), f"the uploaded {kind}")) from None


# ---------------------------------------------------------------------------------------
# Example masks
# ---------------------------------------------------------------------------------------

_EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"   # a source checkout's examples/
_FACESYNTH_EXAMPLES = (0, 2, 3, 4)    # held-out FaceSynth test faces (examples/ has 1 and 6)


def example_masks() -> dict[str, Callable[[], np.ndarray]]:
    """Label -> loader of an example mask: the bundled examples/ (when the app runs from a
    checkout) and a few held-out FaceSynth faces rendered on demand."""
    out: dict[str, Callable[[], np.ndarray]] = {}
    if _EXAMPLES_DIR.is_dir():
        for path in sorted(_EXAMPLES_DIR.glob("mask_*.png")):
            out[f"example: {path.stem.removeprefix('mask_').replace('_', ' ')}"] = \
                (lambda p=path: io.read_mask(p))
    for index in _FACESYNTH_EXAMPLES:
        out[f"FaceSynth test face {index}"] = lambda i=index: _facesynth_mask(i)
    return out


def _facesynth_mask(index: int) -> np.ndarray:
    from .data.unified import facesynth_seed
    from .synth import render
    return render(facesynth_seed("test"), index, size=CANVAS // 2, captions=1).mask


# ---------------------------------------------------------------------------------------
# Models, loaded once
# ---------------------------------------------------------------------------------------

def installed_default(backend: str) -> str | None:
    """The backend's bundled default model if the installation has it, else None (logged)."""
    import faceweave

    from . import checkpoint
    model = faceweave.DEFAULT_MODELS.get(backend)
    if model is None:
        return None
    try:
        checkpoint.resolve(model)
    except FaceweaveError:
        log.info("backend %s is registered but its model %s is not bundled; not offered", backend, model)
        return None
    return model


def generation_backends() -> list[str]:
    """Registered backends that have a generation pipeline (`faceweave.load(name)`) and whose
    default model is at hand; the copy baseline is for evaluation only. New backends appear
    here when they are registered and their model is bundled."""
    from .backends import available_backends
    from .backends.base import BACKENDS

    # the default backend (diffusion: the fastest, and `faceweave generate`'s default) first
    return [b for b in sorted(available_backends(), key=lambda b: (b != DEFAULT_BACKEND, b))
            if "generate" in BACKENDS[b].capabilities and installed_default(b)]


class Models:
    """The pipelines and the face parser of one app, each loaded once and shared by every
    request (loading is locked, so two first requests do not load twice)."""

    def __init__(self, model: str | None = None, device: str | None = None):
        import faceweave

        from . import checkpoint

        self.device = device
        self.sources = {b: faceweave.DEFAULT_MODELS[b] for b in generation_backends()}
        # a checkpoint of a backend that stylizes photos: the bundled one unless --model names another
        self.stylize_source: str | None = installed_default("stylize")
        if model is not None:          # a checkpoint replaces the default of its family's backend
            from .backends.base import spec_for_family
            from .backends.options import capable
            family = checkpoint.read_config(model)["family"]
            spec = spec_for_family(family)
            if spec is not None and "stylize" in spec.capabilities and "generate" not in spec.capabilities:
                self.stylize_source, model, spec = str(model), None, None
        if model is not None:
            if spec is None or "generate" not in spec.capabilities:
                raise FaceweaveError(f"--model {model} holds a {family!r} model; the app takes a generation "
                                     f"model (of {', '.join(capable('generate'))})")
            self.sources = {spec.name: model, **{b: m for b, m in self.sources.items() if b != spec.name}}
        if not self.sources:
            raise FaceweaveError("no generation model is available; reinstall faceweave (it bundles diffusion-64-real) "
                                 "or pass --model DIR")
        self._pipes: dict[str, Any] = {}
        self._parser = None
        self._lock = threading.Lock()

    @property
    def backends(self) -> list[str]:
        return list(self.sources)

    def pipeline(self, backend: str):
        from .backends import backend_name
        name = backend_name(backend)
        if name not in self.sources:
            from .backends.base import BACKENDS
            spec = BACKENDS[name]
            if spec.pipeline and not spec.default_model:
                raise FaceweaveError(f"the {name} backend has no bundled model; start the app with --model "
                                     f"FOLDER (a {spec.family} checkpoint) or choose one of {', '.join(self.sources)}")
            raise FaceweaveError(f"backend {backend!r} has no generation pipeline in the app; "
                                 f"choose one of {', '.join(self.sources)}")
        with self._lock:
            if name not in self._pipes:
                import faceweave
                self._pipes[name] = faceweave.load(self.sources[name], device=self.device)
            return self._pipes[name]

    def stylizer(self):
        """The stylize pipeline: the bundled one, or the stylize checkpoint the app was started with."""
        if self.stylize_source is None:
            raise FaceweaveError(f"no stylize model is installed: start the app with --model FOLDER (a checkpoint of "
                                 f"{join_names(capable('stylize'))}; faceweave train stylize, docs/stylize.md)")
        with self._lock:
            if "stylize" not in self._pipes:
                import faceweave
                self._pipes["stylize"] = faceweave.load(self.stylize_source, device=self.device)
            return self._pipes["stylize"]

    def parser(self):
        with self._lock:
            if self._parser is None:
                from .ruler import load_parser, photo_parser_name
                self._parser = load_parser(photo_parser_name())
            return self._parser

    def warm_up(self) -> None:
        """Load what a first request needs (the first backend's model, its text encoder, the
        parser), so it is not slow; other backends load on their first request."""
        pipe = self.pipeline(self.backends[0])
        if hasattr(pipe, "text_encoder"):
            pipe.text_encoder.encode(["a face"])
        self.parser()


# ---------------------------------------------------------------------------------------
# The two actions, as plain functions
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Generated:
    images: list[np.ndarray]          # H x W x 3 uint8, one per seed
    metadata: list[dict[str, Any]]    # the pipeline's per-image metadata
    influence: list[np.ndarray] = dataclasses.field(default_factory=list)  # collab: maps per image
    layouts: list[np.ndarray | None] = dataclasses.field(default_factory=list)  # diffusion: drawn layouts


def _influence_picture(pipe, out) -> np.ndarray | None:
    """A backend that mixes several models per pixel (collab) reports how much each decided
    where (`out.influence`); its module draws that as a picture (`influence_picture`)."""
    if not getattr(out, "influence", None):
        return None
    return pipe.influence_pictures(out, 1)[0]


def guidance_setting(guidance: float, scales: dict[str, float | None] | None, given: Sequence[str]
                     ) -> float | dict[str, float]:
    """One scale for all given conditions, or per modality: the modalities with their own value
    take it, the other given ones take `guidance` (a value for a modality not given is an
    error from the pipeline, naming it)."""
    guidance = _check_number(guidance, "guidance")
    own = {k: _check_number(v, f"guidance for {k}") for k, v in (scales or {}).items() if v is not None and v != ""}
    if not own:
        return guidance
    return {**{m: guidance for m in given if m != "image"}, **own}


def _check_number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaceweaveError(f"{name} must be a number (1 = no guidance, 2-7 is usual), got {value!r}") from None
    if not np.isfinite(number):
        raise FaceweaveError(f"{name} must be a finite number, got {value!r}")
    return number


def _check_int(value: Any, name: str, lo: int, hi: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FaceweaveError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}") from None
    if not number.is_integer() or not lo <= number <= hi:
        raise FaceweaveError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    return int(number)


def iter_generate(models: Models, prompt: str | None = None, attributes: dict[str, int] | None = None,
                  mask: np.ndarray | None = None, sketch: np.ndarray | None = None, *,
                  backend: str = "diffusion", steps: int = 20, guidance: float = 2.0,
                  scales: dict[str, float | None] | None = None, seed: int = 0, n_images: int = 1,
                  on_step: Callable[[int, int], None] | None = None) -> Iterator[Generated]:
    """The results so far after each image, for seeds seed .. seed + n_images - 1 made one at a
    time (image i depends only on seed i, so they are what one call with all seeds gives):
    the page shows the first face as soon as it exists. on_step(done, total) after every
    sampling step feeds the progress bar. Every input is checked before any work starts."""
    steps = _check_int(steps, "steps", 1, MAX_STEPS)
    n_images = _check_int(n_images, "number of images", 1, MAX_IMAGES)
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)                     # the page's number box sends whole numbers as floats
    seeds = check_seeds([check_seed(seed) + k for k in range(n_images)])
    cond = Conditions(prompt=prompt, attributes=attributes or {}, mask=mask, sketch=sketch)
    if not cond.given:
        raise FaceweaveError("nothing to generate from: type a prompt, set an attribute, paint or pick a "
                             "mask, or draw a sketch")
    pipe = models.pipeline(backend)
    given = list(cond.given)
    if getattr(pipe, "wants_layout", lambda c: False)(cond):
        given.append("mask")            # the diffusion pipeline draws a layout: a mask, guided like the rest
    scale = guidance_setting(guidance, scales, given)
    takes = {o.name for o in backend_options(backend_name(backend), "generate")}
    extra = {"return_influence": True} if "return_influence" in takes else {}
    sampled = "num_inference_steps" in takes        # the gan backend has no steps: one pass per image
    total = n_images * steps if sampled else n_images
    result = Generated([], [])
    for k in range(n_images):
        def step(i, sigma, x, denoised, k=k):
            if on_step is not None:
                on_step(k * steps + i + 1, total)
        if sampled:
            out = pipe(conditions=cond, seeds=[seeds[k]], num_inference_steps=steps, guidance_scale=scale,
                       callback=step, progress=False, **extra)
        else:
            out = pipe(conditions=cond, seeds=[seeds[k]], progress=False)
            if on_step is not None:
                on_step(k + 1, total)
        result.images.extend(out.images)
        result.metadata.extend(out.metadata)
        result.layouts.extend(getattr(out, "layouts", None) or [None] * len(out.images))
        picture = _influence_picture(pipe, out)
        if picture is not None:
            result.influence.append(picture)
        yield result


def run_generate(models: Models, prompt: str | None = None, attributes: dict[str, int] | None = None,
                 mask: np.ndarray | None = None, sketch: np.ndarray | None = None, **settings) -> Generated:
    """All images of a request (see iter_generate for the settings)."""
    result = None
    for result in iter_generate(models, prompt, attributes, mask, sketch, **settings):
        pass
    return result


def working_photo(photo: np.ndarray) -> np.ndarray:
    """The photo, shrunk to the canvas' side when it is bigger: the parser labels a photo at
    the size it is given (a 12-megapixel one would cost gigabytes of class scores) and the
    model edits at its own, smaller side anyway."""
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise FaceweaveError(f"the photo must be an RGB picture, got an array of shape {photo.shape}; upload a "
                             "PNG or JPEG")
    return photo if photo.shape[0] * photo.shape[1] <= CANVAS * CANVAS else io.resize_image(photo, CANVAS)


@dataclasses.dataclass
class Edited:
    before: np.ndarray                # the photo at the model's side
    after: np.ndarray                 # the edited face
    source_mask: np.ndarray           # the parser's mask of the photo
    metadata: dict[str, Any]


def run_edit(models: Models, photo: np.ndarray, mask: np.ndarray | None = None, prompt: str | None = None,
             attributes: dict[str, int] | None = None, *, steps: int = 20, guidance: float = 1.0,
             everywhere: bool = False, backend: str = "diffusion") -> Edited:
    """Edit a photo toward a painted mask and/or a prompt and attributes (as `faceweave edit`).

    The photo's own mask comes from the bundled parser. When the painted mask differs from
    it, only the changed pixels (dilated 2 px) may change, unless `everywhere`; when it does
    not (or no mask is given), the prompt and attributes may change the whole face.
    """
    steps = _check_int(steps, "steps", 1, MAX_STEPS)
    if photo is None:
        raise FaceweaveError("no photo: upload the face photo to edit first")
    photo = working_photo(photo)
    own = models.parser().predict(photo)
    changed = mask is not None and not np.array_equal(io.resize_mask(own, mask.shape), mask)
    target = Conditions(prompt=prompt, attributes=attributes or {}, mask=mask if mask is not None else own)
    if not changed and not target.prompt and not target.attributes:
        raise FaceweaveError("nothing to edit: paint a change on the photo's mask, or give a prompt or "
                             "attributes")
    name = backend_name(backend)
    if name not in capable("edit"):
        raise FaceweaveError(f"backend {backend!r} cannot edit photos; choose {join_names(capable('edit'))}")
    takes = {o.flag: o.name for o in backend_options(name, "edit")}
    pipe = models.pipeline(name)
    # a backend that reads the photo's own mask keeps it as the target's when it was not repainted
    if "--source-mask" not in takes:
        target = Conditions(prompt=prompt, attributes=attributes or {}, mask=mask if changed else None)
    options = {takes["--steps"]: steps}
    if "--guidance" in takes:
        options[takes["--guidance"]] = _check_number(guidance, "guidance")
    if "--source-mask" in takes:
        options["source_mask"] = own
    if "--everywhere" in takes:
        options["everywhere"] = everywhere or not changed
    out = pipe.edit_photo(photo, target, progress=True, **options)
    before = photo if out.image.shape[:2] == photo.shape[:2] else io.resize_image(photo, out.image.shape[:2])
    return Edited(before, out.image, own, out.metadata)


@dataclasses.dataclass
class Stylized:
    face: np.ndarray                  # the aligned face
    stylized: np.ndarray              # the stylized face
    pasted: np.ndarray                # the photo with the stylized face pasted back
    metadata: dict[str, Any]


def run_stylize(models: Models, photo: np.ndarray | None, reference: np.ndarray | None = None,
                style_text: str | None = None, *, strength: float = 1.0, tune_steps: int = 100,
                align: bool = True) -> Stylized:
    """The photo's face in the look of a reference image or of a text (as `faceweave stylize`):
    an empty text box counts as no text, so exactly one of the two must be given. `align`
    False: the photo is already an aligned face crop."""
    if photo is None:
        raise FaceweaveError("no photo: upload the face photo to stylize first")
    text = style_text if style_text and style_text.strip() else None
    if (reference is None) == (text is None):
        raise FaceweaveError("give exactly one style: upload a reference image or type a style text"
                             + (", not both" if reference is not None else ""))
    steps = _check_int(tune_steps, "tune steps", 0, 500)
    pipe = models.stylizer()
    out = pipe(working_photo(photo), style=reference, style_text=text, strength=_check_number(strength, "strength"),
               tune_steps=steps, align=align, name="the photo")
    return Stylized(out.aligned, out.stylized, out.images[0], out.metadata[0])


def run_multiview(models: Models, photo: np.ndarray | None = None, seed: int = 0,
                  yaws: str = "-30,-15,0,15,30", invert_steps: int = 150) -> tuple[list[np.ndarray], dict[str, Any]]:
    """One face at several yaws (as `faceweave multiview`): the uploaded photo's face, inverted
    at its estimated yaw, or else the seed's face. -> (one image per yaw, metadata)."""
    from .backends.multiview.pipeline import parse_yaws
    angles = parse_yaws(yaws)
    pipe = models.pipeline("multiview")
    if photo is not None:
        out = pipe.views(image=working_photo(photo), yaws=angles,
                         invert_steps=_check_int(invert_steps, "inversion steps", 0, 1000))
    else:
        out = pipe.views(seeds=[_check_int(seed, "seed", 0, 2**31 - 1)], yaws=angles)
    return out.views[0], out.metadata[0]


def save_results(images: Sequence[np.ndarray], names: Sequence[str], metadata: Any, folder: Path) -> Path:
    """PNGs + meta.json in one zip (the page's download), in `folder`."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"faceweave-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, image in zip(names, images):
            buf = BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            zf.writestr(name, buf.getvalue())
        zf.writestr("meta.json", json.dumps(metadata, indent=1, default=str) + "\n")
    return path


def _prune(folder: Path, age_s: float = 3600.0) -> None:
    """Forget downloads older than an hour (Gradio keeps its own copy while a page shows it)."""
    now = time.time()
    for old in folder.glob("faceweave-*.zip"):
        try:
            if now - old.stat().st_mtime > age_s:
                old.unlink()
        except OSError:
            pass


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------

_CSS = """
.fw-legend {display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 12px; line-height: 18px;}
.fw-legend span.sw {display: inline-block; width: 12px; height: 12px; border: 1px solid #888;
                    vertical-align: -2px; margin-right: 3px;}
"""


def _legend_html() -> str:
    items = "".join(
        f'<span><span class="sw" style="background: rgb{tuple(int(c) for c in CELEBAMASK_PALETTE[i])}">'
        f"</span>{CLASS_LABELS[name]}</span>" for i, name in enumerate(CLASSES))
    return f'<div class="fw-legend">{items}</div>'


def _gallery(result: Generated) -> list:
    """Each face, followed by the layout drawn for it when the pipeline drew one."""
    items = []
    for k, (im, m) in enumerate(zip(result.images, result.metadata)):
        items.append((im, f"seed {m['seed']}"))
        layout = result.layouts[k] if k < len(result.layouts) else None
        if layout is not None:
            items.append((colorize_mask(layout), f"seed {m['seed']}: the layout drawn for it"))
    return items


def _maps(result: Generated):
    import gradio as gr
    pictures = [(p, f"seed {m['seed']}") for p, m in zip(result.influence, result.metadata)]
    return gr.update(value=pictures or None, visible=bool(pictures))


def _user_errors(fn: Callable) -> Callable:
    """Turn FaceweaveError (and, logged, any bug) into a one-line message in the page."""
    import functools
    import inspect

    import gradio as gr

    def shown(exc: BaseException) -> gr.Error:
        if isinstance(exc, FaceweaveError):       # the user's mistake: no traceback in the server log either
            return gr.Error(str(exc).splitlines()[0] if str(exc) else "invalid input", print_exception=False)
        log.exception("internal error in %s", fn.__name__)
        return gr.Error(f"internal error ({type(exc).__name__}); the server log has the details")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # noqa: BLE001 - the page must never show a traceback
                raise shown(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise shown(exc) from None
    return wrapper


def build_app(models: Models, work_dir: str | os.PathLike | None = None):
    """The Gradio page (Blocks) around `models`; `launch` serves it."""
    import gradio as gr

    work = Path(work_dir or tempfile.mkdtemp(prefix="faceweave-app-"))
    examples = example_masks()
    palette = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in CELEBAMASK_PALETTE.tolist()]

    def mask_editor(label: str, elem_id: str):
        return gr.ImageEditor(
            label=label, elem_id=elem_id, type="numpy", image_mode="RGBA", format="png",
            sources=(), canvas_size=(CANVAS, CANVAS), fixed_canvas=True, height=CANVAS + 180,
            brush=gr.Brush(colors=palette, default_color=palette[1], color_mode="fixed",
                           default_size=max(2, CANVAS // 40)),
            eraser=gr.Eraser(default_size=max(2, CANVAS // 40)), layers=False, transforms=())

    def attribute_radios(prefix: str) -> list:
        radios = []
        with gr.Accordion("Attributes: want / don't want / don't care", open=False):
            for start in range(0, len(CELEBA_ATTRIBUTES), 4):
                with gr.Row():
                    for name in CELEBA_ATTRIBUTES[start:start + 4]:
                        radios.append(gr.Radio(list(ATTRIBUTE_STATES), value="don't care", min_width=120,
                                               label=name.replace("_", " "), elem_id=f"{prefix}-{name}"))
        return radios

    def progress_step(progress):
        def on_step(done, total):
            progress((done, total), desc="sampling", unit="steps")
        return on_step

    # -- generate ---------------------------------------------------------------------------
    # Gradio hands a progress bar to a parameter whose default is gr.Progress() only among the
    # positional ones, so it comes first, before the inputs (the 40 attribute states end them).
    def on_generate(progress=gr.Progress(), *inputs):  # noqa: B008 - Gradio's way to ask for a progress bar
        (prompt, mask_value, sketch_value, backend, steps, guidance, scale_prompt, scale_attributes, scale_mask,
         scale_sketch, seed, n_images, *states) = inputs
        cond_mask, cond_sketch = canvas_to_mask(mask_value), canvas_to_sketch(sketch_value)
        attributes = attributes_from_states(states)
        scales = {"prompt": scale_prompt, "attributes": scale_attributes, "mask": scale_mask,
                  "sketch": scale_sketch}
        last = None
        for last in iter_generate(models, prompt, attributes, cond_mask, cond_sketch, backend=backend,
                                  steps=steps, guidance=guidance, scales=scales, seed=seed, n_images=n_images,
                                  on_step=progress_step(progress)):
            yield _gallery(last), {"results": last.metadata}, None, _maps(last)
        names = [f"{m['seed']:06d}.png" for m in last.metadata]
        record = {"images": names, "results": last.metadata}
        drawn = [(f"{m['seed']:06d}_layout.png", colorize_mask(lay))
                 for m, lay in zip(last.metadata, last.layouts) if lay is not None]
        if drawn:                          # as `faceweave generate` writes them: masks to edit and reuse
            record["layouts"] = [name for name, _ in drawn]
        _prune(work)
        saved = save_results(last.images + [im for _, im in drawn], names + [name for name, _ in drawn], record, work)
        yield _gallery(last), record, str(saved), _maps(last)

    def on_example(label):
        if not label:
            return gr.update()
        if label not in examples:
            raise FaceweaveError(f"unknown example {label!r}; pick one of the listed examples")
        return mask_to_canvas(examples[label]())

    def on_mask_file(path):
        mask = read_upload(path, "mask")
        return gr.update() if mask is None else mask_to_canvas(mask)

    def on_sketch_file(path):
        sketch = read_upload(path, "sketch")
        return gr.update() if sketch is None else sketch_to_canvas(sketch)

    # -- edit -------------------------------------------------------------------------------
    def on_photo(path):
        photo = read_upload(path, "photo")
        if photo is None:
            return gr.update()
        return mask_to_canvas(models.parser().predict(working_photo(photo)))

    def on_edit(progress=gr.Progress(track_tqdm=True), *inputs):  # noqa: B008 - pipe.edit reports through tqdm
        photo_path, mask_value, prompt, steps, guidance, everywhere, *states = inputs
        if photo_path is None:
            raise FaceweaveError("no photo: upload the face photo to edit first")
        photo = read_upload(photo_path, "photo")
        result = run_edit(models, photo, canvas_to_mask(mask_value), prompt, attributes_from_states(states),
                          steps=steps, guidance=guidance, everywhere=everywhere)
        _prune(work)
        archive = save_results([result.before, result.after], ["before.png", "edited.png"], result.metadata, work)
        return (result.before, result.after), result.metadata, str(archive)

    # -- stylize ----------------------------------------------------------------------------
    def on_stylize(photo_path, reference_path, style_text, strength, tune_steps):
        result = run_stylize(models, read_upload(photo_path, "photo"), read_upload(reference_path, "style reference"),
                             style_text, strength=strength, tune_steps=tune_steps)
        _prune(work)
        archive = save_results([result.stylized, result.pasted], ["stylized.png", "pasted.png"], result.metadata, work)
        return (result.face, result.stylized), result.pasted, result.metadata, str(archive)

    # -- multiview ---------------------------------------------------------------------------
    def on_multiview(photo_path, seed, yaws, invert_steps):
        views, meta = run_multiview(models, read_upload(photo_path, "photo"), seed, yaws, invert_steps)
        _prune(work)
        names = [f"yaw{y:+g}.png" for y in meta["yaws"]]
        archive = save_results(views, names, meta, work)
        return [(v, f"yaw {y:+g}") for v, y in zip(views, meta["yaws"])], meta, str(archive)

    with gr.Blocks(title="faceweave", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## faceweave: text, attributes, a mask and a sketch → a face\n"
                    "Paint the mask with the class brushes (unpainted = background) or pick an example, "
                    "type a prompt, press **Generate**. Every input is optional; give at least one.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(label="Prompt", placeholder="a smiling woman with blond hair",
                                        elem_id="fw-prompt", lines=2)
                    with gr.Row():
                        with gr.Column():
                            mask = mask_editor("Mask (brush = class colour)", "fw-mask")
                        with gr.Column():
                            sketch = gr.ImageEditor(
                                label="Sketch (dark lines)", elem_id="fw-sketch", type="numpy",
                                image_mode="RGBA", format="png", sources=(), canvas_size=(CANVAS, CANVAS),
                                fixed_canvas=True, height=CANVAS + 180, layers=False, transforms=(),
                                brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=1))
                    gr.HTML(_legend_html())
                    with gr.Row():
                        example = gr.Radio(list(examples), label="Example masks", elem_id="fw-examples")
                    with gr.Row():
                        mask_file = gr.File(label="Upload a mask (index PNG or colour mask)",
                                            file_types=["image"], type="filepath", height=90)
                        sketch_file = gr.File(label="Upload a sketch", file_types=["image"], type="filepath",
                                              height=90)
                    attributes = attribute_radios("fw-attr")
                with gr.Column(scale=2):
                    backend = gr.Dropdown(models.backends, value=models.backends[0], label="Backend")
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps", elem_id="fw-steps")
                        guidance = gr.Slider(0, 10, value=2.0, step=0.1, label="Guidance (all conditions)")
                    with gr.Row():
                        seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="fw-seed")
                        n_images = gr.Slider(1, MAX_IMAGES, value=4, step=1, label="Images", elem_id="fw-images")
                    with gr.Accordion("Guidance per modality (blank: as above)", open=False), gr.Row():
                        scale_prompt = gr.Number(None, label="prompt", minimum=0, maximum=10)
                        scale_attributes = gr.Number(None, label="attributes", minimum=0, maximum=10)
                        scale_mask = gr.Number(None, label="mask", minimum=0, maximum=10)
                        scale_sketch = gr.Number(None, label="sketch", minimum=0, maximum=10)
                    run = gr.Button("Generate", variant="primary", elem_id="fw-generate")
                    gallery = gr.Gallery(label="Results", elem_id="fw-gallery", columns=4, height=300,
                                         format="png", object_fit="contain")
                    influence = gr.Gallery(label="Influence maps: which condition decides each pixel, per step "
                                                 "(rows: conditions; bright: decides)", visible=False, columns=1,
                                           format="png", elem_id="fw-influence")
                    download = gr.File(label="Download (PNGs + meta.json)", elem_id="fw-download")
                    meta = gr.JSON(label="Metadata", elem_id="fw-meta")
            run.click(_user_errors(on_generate),
                      [prompt, mask, sketch, backend, steps, guidance, scale_prompt, scale_attributes, scale_mask,
                       scale_sketch, seed, n_images, *attributes],
                      [gallery, meta, download, influence], api_name="generate", concurrency_id="model")
            example.change(_user_errors(on_example), example, mask, api_name="example_mask",
                           concurrency_limit=4)
            mask_file.upload(_user_errors(on_mask_file), mask_file, mask, api_name="upload_mask",
                             concurrency_limit=4)
            sketch_file.upload(_user_errors(on_sketch_file), sketch_file, sketch, api_name="upload_sketch",
                               concurrency_limit=4)
        with gr.Tab("Edit"):
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        photo = gr.Image(label="Photo", type="filepath", sources=("upload",), elem_id="fw-photo",
                                         height=CANVAS + 40)
                        edit_mask = mask_editor("Its mask (parsed; paint the change)", "fw-edit-mask")
                    gr.HTML(_legend_html())
                    edit_prompt = gr.Textbox(label="Prompt for the edited face", lines=1)
                    edit_attributes = attribute_radios("fw-edit-attr")
                with gr.Column(scale=2):
                    with gr.Row():
                        edit_steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps", elem_id="fw-steps")
                        edit_guidance = gr.Slider(0, 10, value=1.0, step=0.1, label="Guidance")
                    everywhere = gr.Checkbox(False, label="Let the whole face change (default: only the "
                                                          "painted change, when there is one)")
                    edit_run = gr.Button("Edit", variant="primary", elem_id="fw-edit")
                    compare = gr.ImageSlider(label="Before / after", type="numpy", format="png", max_height=360)
                    edit_download = gr.File(label="Download (before, edited, meta.json)")
                    edit_meta = gr.JSON(label="Metadata")
            photo.upload(_user_errors(on_photo), photo, edit_mask, api_name="parse_photo", concurrency_limit=2)
            edit_run.click(_user_errors(on_edit),
                           [photo, edit_mask, edit_prompt, edit_steps, edit_guidance, everywhere, *edit_attributes],
                           [compare, edit_meta, edit_download], api_name="edit", concurrency_id="model")
        with gr.Tab("Stylize"):
            gr.Markdown("A face photo in the look of a reference image (one-shot: the decoder is fine-tuned "
                        "for a few seconds) or of a text (zero-shot), by the bundled stylize-64-real or the "
                        "stylize checkpoint the app was started with (--model FOLDER; docs/stylize.md).")
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        style_photo = gr.Image(label="Photo", type="filepath", sources=("upload",),
                                               elem_id="fw-style-photo", height=CANVAS + 40)
                        style_reference = gr.Image(label="Style reference (one-shot)", type="filepath",
                                                   sources=("upload",), elem_id="fw-style-reference", height=CANVAS + 40)
                    style_text = gr.Textbox(label="…or a style text (zero-shot)", placeholder="a pencil sketch",
                                            elem_id="fw-style-text", lines=1)
                with gr.Column(scale=2):
                    with gr.Row():
                        style_strength = gr.Slider(0, 1, value=1.0, step=0.05, label="Strength")
                        style_steps = gr.Slider(0, 500, value=100, step=10, label="Fine-tune steps (one-shot)")
                    style_run = gr.Button("Stylize", variant="primary", elem_id="fw-stylize")
                    style_compare = gr.ImageSlider(label="Face / stylized", type="numpy", format="png", max_height=360)
                    style_pasted = gr.Image(label="Pasted back", type="numpy", format="png")
                    style_download = gr.File(label="Download (stylized, pasted, meta.json)")
                    style_meta = gr.JSON(label="Metadata")
            style_run.click(_user_errors(on_stylize),
                            [style_photo, style_reference, style_text, style_strength, style_steps],
                            [style_compare, style_pasted, style_meta, style_download], api_name="stylize",
                            concurrency_id="model")
        with gr.Tab("Multiview"):
            gr.Markdown("One face turned to several yaws: the uploaded photo's face (inverted at its estimated "
                        "yaw) or, with no photo, the seed's face. Needs the app started with --model FOLDER of a "
                        "multiview checkpoint (docs/multiview.md).")
            with gr.Row():
                with gr.Column(scale=2):
                    mv_photo = gr.Image(label="Photo (optional)", type="filepath", sources=("upload",),
                                        elem_id="fw-mv-photo", height=CANVAS + 40)
                    mv_seed = gr.Number(label="Seed (no photo)", value=0, precision=0)
                    mv_yaws = gr.Textbox(label="Yaws (degrees, -30..30)", value="-30,-15,0,15,30", lines=1)
                    mv_steps = gr.Slider(0, 500, value=150, step=10, label="Inversion steps (photo)")
                    mv_run = gr.Button("Turn", variant="primary", elem_id="fw-multiview")
                with gr.Column(scale=3):
                    mv_gallery = gr.Gallery(label="Views", columns=5, height=240)
                    mv_download = gr.File(label="Download (one PNG per yaw, meta.json)")
                    mv_meta = gr.JSON(label="Metadata")
            mv_run.click(_user_errors(on_multiview), [mv_photo, mv_seed, mv_yaws, mv_steps],
                         [mv_gallery, mv_meta, mv_download], api_name="multiview", concurrency_id="model")
    return demo


# ---------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(host: str = "127.0.0.1", port: int = 7860, model: str | None = None, max_concurrency: int = 1,
           max_queue: int = DEFAULT_MAX_QUEUE, block: bool = True, models: Models | None = None,
           quiet: bool = False):
    """Serve the app; returns (demo, url) when block=False (close with demo.close()).

    max_concurrency requests run at once (they share one model: more only helps on a machine
    with cores to spare), max_queue more wait; a request beyond that is refused at once with
    "queue is full" instead of piling up in memory.
    """
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise FaceweaveError("the web app needs Gradio; install it with pip install 'faceweave[app]'") from None
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS       # Gradio decodes uploads with PIL; same bound as io
    models = models or Models(model)
    models.warm_up()
    demo = build_app(models)
    demo.queue(default_concurrency_limit=max_concurrency, max_size=max_queue)
    try:
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, max_file_size=MAX_UPLOAD,
                    share=False, quiet=quiet, footer_links=["api"], show_error=True, css=_CSS, ssr_mode=False,
                    pwa=False, mcp_server=False, enable_monitoring=False)
    except OSError:
        raise FaceweaveError(f"cannot listen on {host}:{port}: the port is in use or the address is not this "
                             "machine's; pass another --port (or --host)") from None
    return demo, f"http://{host}:{port}/"

