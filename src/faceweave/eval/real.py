"""The real-face ruler: what `faceweave evaluate --data celebamask1k|FOLDER` measures with.

FaceSynth's protocol reads attributes with a classifier trained on rendered faces, which
means nothing on a photo. On real faces every instrument is one that has seen real faces:

  masks       the real-face parser (parser-real-SIZE, FaceSynth-pretrained, fine-tuned on the
              celebamask-1k training pairs) reads a mask off every image;
  attributes  `RealLabeller` reads the attributes the data's labels were derived from, the
              same way (data.celebamask1k): the parsed mask gives Eyeglasses, Wearing_Hat,
              Wearing_Earrings, Wearing_Necklace, Mouth_Slightly_Open, Bald and Bangs, the
              hair pixels give the hair colour, dlib's age and gender networks give Male and
              Young (eval.faces);
  realism     `fd` is the Fréchet distance between dlib's 128-d identity embeddings of the
              outputs and of real photos (an offline stand-in for FID, which needs Inception
              weights that cannot be downloaded here; --inception-weights adds standard FID);
  copying     `memorised`: the share of outputs whose nearest training photo, in identity
              distance, is closer than held-out real photos come to the training set (their
              1st percentile; eval.faces.memorisation).

Conditions and reference: `RealProtocol` picks the held-out photos whose masks, captions
and attributes are the conditions, and disjoint real photos as the realism reference:

  celebamask1k        conditions: the collection's "val" split (data.celebamask1k.split_of);
                      reference and memorisation bank: the "train" split.
  a unified folder    made from a CelebAMask-HQ / MM-CelebA-HQ copy (`faceweave data prepare`):
                      conditions are the images numbered 27000-29999, the test ids the papers
                      use (MaskGAN, Collaborative Diffusion, TediGAN); reference and bank are
                      the images numbered below 27000. A folder without CelebA-HQ numbers
                      falls back to its "test" (else "val") split labels against "train".
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from .. import io
from ..errors import FaceweaveError

DATA_CHOICES = ("facesynth", "celebamask1k")
TEST_IDS = range(27000, 30000)          # CelebA-HQ test ids of MaskGAN / Collaborative Diffusion
BUNDLED_REAL_PARSERS = {64: "parser-real-64", 128: "parser-real-128"}


@dataclasses.dataclass
class RealFace:
    """One real photo with what it is conditioned by (duck-types synth.FaceSample for evaluate)."""

    name: str
    image: np.ndarray                   # (S, S, 3) uint8
    mask: np.ndarray | None             # (S, S) class ids
    sketch: np.ndarray | None           # (S, S) uint8, lines 255 on 0
    attributes: dict[str, int]          # derived labels (data.celebamask1k) or the data set's own
    captions: list[str]


def _load_face(root: Path, record: dict, size: int) -> RealFace:
    from ..data.unified import IMAGES, MASKS, SKETCHES, read_stored_sketch

    file = record["file"]
    image = io.read_image(root / IMAGES / file)
    if image.shape[:2] != (size, size):
        image = io.resize_image(image, size)
    mask = io.read_mask(root / MASKS / file, size=size) if (root / MASKS / file).is_file() else None
    sketch = read_stored_sketch(root / SKETCHES / file, size) if (root / SKETCHES / file).is_file() else None
    if sketch is None and mask is not None:
        sketch = io.sketch_from_mask(mask)
    captions = list(record.get("captions") or [])
    if not captions:
        from ..text import captions_from_attributes
        captions = captions_from_attributes(record.get("attributes") or {}, np.random.default_rng(0), n=1) \
            if record.get("attributes") else ["a face"]
    return RealFace(Path(file).stem, image, mask, sketch, dict(record.get("attributes") or {}), captions)


def _celeba_id(file: str) -> int | None:
    stem = Path(file).stem
    return int(stem) if stem.isdigit() else None


class RealProtocol:
    """Held-out conditions and a disjoint reference/bank of real photos (module docstring)."""

    def __init__(self, data: str, size: int, progress: bool = True):
        from ..data import celebamask1k
        from ..data.unified import CAPTIONS_FILE, read_records

        self.size = size
        if data == "celebamask1k":
            root = celebamask1k.prepared(size, progress=progress)
            records = read_records(root / CAPTIONS_FILE)
            held = [r for r in records if r.get("split") == "val"]
            rest = [r for r in records if r.get("split") == "train"]
            self.description = ("celebamask-1k: conditions from its val split (SHA-1 of the stem), "
                                "reference and memorisation bank from its train split")
        else:
            root = Path(data).expanduser()
            if not (root / CAPTIONS_FILE).is_file():
                raise FaceweaveError(f"--data {data}: not facesynth, celebamask1k or a unified data folder "
                                     f"(no {CAPTIONS_FILE}); make one with `faceweave data prepare`")
            records = read_records(root / CAPTIONS_FILE)
            ids = [_celeba_id(r["file"]) for r in records]
            if any(i in TEST_IDS for i in ids if i is not None):
                held = [r for r, i in zip(records, ids) if i in TEST_IDS]
                rest = [r for r, i in zip(records, ids) if i is not None and i < TEST_IDS.start]
                self.description = (f"{root}: conditions are the CelebA-HQ test ids 27000-29999 "
                                    f"({len(held)} here), reference and bank the ids below 27000")
            else:
                splits = {r.get("split") for r in records}
                test = "test" if "test" in splits else "val"
                held = [r for r in records if r.get("split") == test]
                rest = [r for r in records if r.get("split") == "train"]
                self.description = f"{root}: conditions from its {test!r} split, reference and bank from 'train'"
        if not held or not rest:
            raise FaceweaveError(f"--data {data}: need held-out photos and training photos; found "
                                 f"{len(held)} held-out and {len(rest)} training (label them with a "
                                 "'split' of train/val/test, or name them by CelebA-HQ id)")
        self.root, self.held, self.rest = root, held, rest
        self.has_masks = (root / "masks" / held[0]["file"]).is_file()   # masks are all-or-none

    @property
    def max_n(self) -> int:
        return min(len(self.held), len(self.rest))

    def condition(self, i: int) -> RealFace:
        return _load_face(self.root, self.held[i], self.size)

    def reference(self, i: int) -> np.ndarray:
        return _load_face(self.root, self.rest[i], self.size).image

    def bank_face(self, i: int) -> RealFace:
        return _load_face(self.root, self.rest[i], self.size)

    def bank_images(self, limit: int | None = None) -> np.ndarray:
        rows = self.rest if limit is None else self.rest[:limit]
        return np.stack([_load_face(self.root, r, self.size).image for r in rows])


def real_parser(name_or_path=None, size: int = 64):
    """The real-face parser for `size` (bundled parser-real-SIZE, or the next larger one)."""
    from .. import checkpoint, ruler

    if name_or_path is not None and not isinstance(name_or_path, (str, os.PathLike)):
        return name_or_path
    if name_or_path is None:
        bundled = checkpoint.bundled_models()
        sizes = sorted(s for s, n in BUNDLED_REAL_PARSERS.items() if n in bundled)
        if not sizes:
            raise FaceweaveError("no bundled real-face parser; train one with "
                                 "`faceweave train parser --preset real128 --data celebamask1k:128` "
                                 "and pass it with --parser")
        pick = next((s for s in sizes if s >= size), sizes[-1])
        name_or_path = BUNDLED_REAL_PARSERS[pick]
    return ruler.load_parser(name_or_path)


class RealLabeller:
    """Attributes and identity features of real faces (module docstring); the classifier's API.

    predict_proba gives 1/0 for what the parsed mask and the hair show (0 where the part is
    not visible: an output that hides the mouth has not drawn it open) and dlib's male
    probability; features gives the 128-d identity embeddings behind fd and memorisation.
    """

    def __init__(self, parser, strict: bool = False):
        from ..data.celebamask1k import DERIVED_ATTRIBUTES

        self.parser = parser
        self.aligned = not strict        # strict: exactly one detected face per image, else an error
        self.attributes = DERIVED_ATTRIBUTES
        self.path = None

    def __repr__(self) -> str:
        return f"RealLabeller(parser={self.parser!r}, faces=dlib)"

    def predict_proba(self, images: np.ndarray, names=None) -> np.ndarray:
        from ..data.celebamask1k import YOUNG_AGE, derive_attributes
        from . import faces

        images = np.asarray(images)
        male, age = faces.age_gender(list(images), aligned=self.aligned, names=names)   # refuses non-faces first
        masks = self.parser.predict(images)
        rows = []
        for image, mask, m, a in zip(images, masks, male, age):
            derived = {**derive_attributes(image, mask), "Male": float(m), "Young": float(a < YOUNG_AGE)}
            rows.append([float(derived.get(name, 0.0)) for name in self.attributes])
        return np.asarray(rows, np.float32)

    def features(self, images: np.ndarray) -> np.ndarray:
        from . import faces

        return np.asarray(faces.identity_embeddings(list(np.asarray(images)), aligned=True), np.float32)


def memorisation(generated: np.ndarray, bank: np.ndarray, held_out: np.ndarray) -> dict:
    """faces.memorisation with held-out real photos as the reference, as metrics.json stores it.

    generated, bank, held_out: identity embeddings (N, 128), (B, 128), (M, 128), all made at
    the evaluation's size. The threshold is the 1st percentile of the held-out photos'
    nearest-bank distances (faces.memorisation says why not the minimum or 0.6).
    """
    from . import faces

    result = faces.memorisation(generated, bank, real_emb=held_out)
    return {"memorised": result.share, "threshold": result.threshold,
            "nearest_median": float(np.median(result.nearest_distance)), "reference": result.reference}


__all__ = ["DATA_CHOICES", "RealFace", "RealLabeller", "RealProtocol", "memorisation", "real_parser"]
