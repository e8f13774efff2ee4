"""The copy-paste baseline: answer every request with the closest FaceSynth *training* face.

It needs no generator and no training, and it is the reference point every report shows:
where a trivial solution lands. Its outputs are real FaceSynth faces, so realism (fd)
is near the ceiling; how well it follows a condition measures how far the nearest of a
few thousand memorised faces is from what was asked, which a real generator must beat.

How "closest" is decided, from the first modality given in this order:
    mask        highest per-image mIoU between the requested mask and the bank's masks
    sketch      highest edge agreement within a pixel tolerance (pooled, like an F-score)
    attributes  fewest mismatches over the requested attributes FaceSynth renders
                (a prompt is read with text.parse_prompt; explicit attributes win)
Ties go to the next given modality, then to the seed, which picks among the faces still
tied; with nothing given the seed alone picks a bank face. Image i therefore depends only
on (conditions[i], seeds[i]).

The bank is faces 0..bank_size-1 of the FaceSynth train split, rendered once per process
and size (a few seconds for 1000 faces at 64 px). With bank="celebamask1k" (or a unified
folder) it is instead the first bank_size *training* photos of that real data set, as
eval.real.RealProtocol splits it, matched on their hand-made masks and derived attributes:
the real-face baseline of `faceweave evaluate --data celebamask1k`.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ...conditions import NUM_CLASSES, Conditions
from ...errors import FaceweaveError
from ...eval.metrics import sketch_tolerance_px
from ...io import resize_image, resize_mask
from ...synth import FACESYNTH_ATTRIBUTES
from ...text import parse_prompt
from ..base import Backend

DEFAULT_BANK_SIZE = 1000
MAX_BANK_SIZE = 100_000


@dataclasses.dataclass(frozen=True)
class FaceBank:
    """Bank faces precomputed for fast matching (B faces, P = size² pixels).

    Per-pixel arrays are stored pixel-major (P, B): matching gathers the pixels a query
    cares about, and a pixel's row of B values is then one contiguous copy (about 4x faster
    than gathering columns of a (B, P) array).
    """

    images: np.ndarray          # (B, S, S, 3) uint8
    masks: np.ndarray           # (P, B) uint8 class ids
    class_pixels: np.ndarray    # (B, 19) pixels of each class
    edges: np.ndarray           # (P, B) bool sketch lines
    near_edges: np.ndarray      # (P, B) bool: within the tolerance of a sketch line
    attributes: np.ndarray      # (B, A) int8 over attribute_names (-1: unknown)
    tolerance_px: int
    attribute_names: tuple[str, ...] = FACESYNTH_ATTRIBUTES


def _bank(images, masks, sketches, attributes, names, size: int) -> FaceBank:
    tolerance = max(1, round(sketch_tolerance_px(size)))   # a whole-pixel dilation radius
    lines = [sketch > 127 for sketch in sketches]
    flat_masks = [m.ravel() for m in masks]
    class_pixels = np.stack([np.bincount(m, minlength=NUM_CLASSES) for m in flat_masks])
    return FaceBank(np.stack(images), np.stack(flat_masks, axis=1), class_pixels,
                    np.stack([e.ravel() for e in lines], axis=1),
                    np.stack([_near(e, tolerance).ravel() for e in lines], axis=1),
                    np.asarray(attributes, np.int8), tolerance, tuple(names))


def real_bank(data: str, size: int, bank_size: int) -> FaceBank:
    """The first bank_size training photos of a real data set (eval.real.RealProtocol),
    cached per process by where the data lies (another collection is another bank)."""
    from ...data import celebamask1k

    where = str(celebamask1k.find_root()) if data == "celebamask1k" else str(Path(data).expanduser().resolve())
    return _real_bank(data, where, int(size), int(bank_size))


@functools.lru_cache(maxsize=2)
def _real_bank(data: str, where: str, size: int, bank_size: int) -> FaceBank:
    from ...data.celebamask1k import DERIVED_ATTRIBUTES
    from ...eval.real import RealProtocol

    protocol = RealProtocol(data, size)
    faces = [protocol.bank_face(i) for i in range(min(bank_size, len(protocol.rest)))]
    if any(f.mask is None for f in faces):
        raise FaceweaveError(f"--data {data} has no label maps; the copy backend matches on masks")
    return _bank([f.image for f in faces], [f.mask for f in faces], [f.sketch for f in faces],
                 [[f.attributes.get(a, -1) for a in DERIVED_ATTRIBUTES] for f in faces], DERIVED_ATTRIBUTES, size)


def _near(edges: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within `radius` (Euclidean disk) of an edge pixel of one (S, S) bool map."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(edges.astype(np.uint8), disk).astype(bool)


def facesynth_bank(size: int, bank_size: int = DEFAULT_BANK_SIZE) -> FaceBank:
    """Faces 0..bank_size-1 of the FaceSynth train split at `size`, cached per process."""
    return _render_bank(int(size), int(bank_size))  # one cache key however it is called


@functools.lru_cache(maxsize=4)
def _render_bank(size: int, bank_size: int) -> FaceBank:
    from ... import synth
    from ...data.unified import facesynth_seed

    seed = facesynth_seed("train")
    images, masks, sketches, attributes = [], [], [], []
    # disable=None: a progress bar on a terminal only (a 20k-face bank takes a minute)
    for index in tqdm(range(bank_size), desc="render copy bank", unit="img", disable=None, leave=False):
        face = synth.render(seed, index, size, captions=0)
        images.append(face.image)
        masks.append(face.mask)
        sketches.append(face.sketch)
        attributes.append([face.attributes[name] for name in FACESYNTH_ATTRIBUTES])
    return _bank(images, masks, sketches, attributes, FACESYNTH_ATTRIBUTES, size)


def mask_similarity(bank: FaceBank, mask: np.ndarray) -> np.ndarray:
    """Per-image mIoU of every bank mask against `mask` ((B,) float): IoU averaged over the
    classes present in either map, as eval.mask_scores(per_image=True) computes it.

    One gather does all classes: the query's pixels are sorted by class, so the matches of
    each class are one contiguous run, summed with np.add.reduceat.
    """
    query = mask.ravel()
    order = np.argsort(query, kind="stable")
    sorted_query = query[order]
    classes, starts = np.unique(sorted_query, return_index=True)
    agree = (bank.masks[order] == sorted_query[:, None]).view(np.uint8)     # (P, B)
    intersection = np.zeros(bank.class_pixels.shape, np.int64)
    intersection[:, classes] = np.add.reduceat(agree, starts, axis=0, dtype=np.int32).T
    query_pixels = np.bincount(query, minlength=NUM_CLASSES)
    union = bank.class_pixels + query_pixels - intersection
    present = (bank.class_pixels > 0) | (query_pixels > 0)
    iou = intersection / np.maximum(union, 1)
    return iou.sum(1) / present.sum(1)


def sketch_similarity(bank: FaceBank, sketch: np.ndarray) -> np.ndarray:
    """Edge agreement with a tolerance ((B,) float in 0..1): (bank lines near a query line +
    query lines near a bank line) / (all lines of both). 1 means every line has a partner."""
    lines = sketch > 127
    query_edges = np.flatnonzero(lines)
    query_near = np.flatnonzero(_near(lines, bank.tolerance_px))
    matched = bank.near_edges[query_edges].sum(0) + bank.edges[query_near].sum(0)
    total = bank.edges.sum(0) + query_edges.size
    return np.where(total > 0, matched / np.maximum(total, 1), 1.0)


def attribute_similarity(bank: FaceBank, requested: dict[str, int]) -> np.ndarray | None:
    """Fraction of the requested attributes each bank face has right, over the attributes the
    bank knows (FaceSynth's rendered ones, or a real bank's derived ones); None when none of
    the requested attributes is one of them (nothing to compare)."""
    column = {name: j for j, name in enumerate(bank.attribute_names)}
    known = {name: v for name, v in requested.items() if name in column}
    if not known:
        return None
    columns = [column[name] for name in known]
    wanted = np.array(list(known.values()), np.int8)
    return (bank.attributes[:, columns] == wanted).mean(1)


class CopyBackend(Backend):
    """Nearest FaceSynth training face to the conditions (see the module docstring)."""

    name = "copy"
    accepts = ("prompt", "attributes", "mask", "sketch")

    def __init__(self, model: str | None = None, bank_size: int = DEFAULT_BANK_SIZE, bank: str = "facesynth"):
        if model is not None:
            raise FaceweaveError("the copy backend has no model (it copies FaceSynth training faces); "
                                 "drop --model, or pick a backend that takes one")
        if isinstance(bank_size, bool) or not isinstance(bank_size, int) or not 1 <= bank_size <= MAX_BANK_SIZE:
            raise FaceweaveError(f"bank size must be a whole number from 1 to {MAX_BANK_SIZE}, got {bank_size!r}")
        if not isinstance(bank, str) or not bank.strip():
            raise FaceweaveError(f"bank must be facesynth, celebamask1k or a unified data folder, got {bank!r}")
        self.bank_size, self.bank = bank_size, bank

    def describe(self) -> dict:
        where = ("FaceSynth train split, faces" if self.bank == "facesynth"
                 else f"{self.bank} training photos (name order)")
        return {"backend": self.name, "bank": f"{where} 0..{self.bank_size - 1}", "bank_size": self.bank_size}

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        bank = (facesynth_bank(size, self.bank_size) if self.bank == "facesynth"
                else real_bank(self.bank, size, self.bank_size))
        # copies: a caller drawing on an output must not change the cached bank
        return [bank.images[self._pick(bank, cond, seed, size)].copy() for cond, seed in zip(conditions, seeds)]

    def _pick(self, bank: FaceBank, cond: Conditions, seed: int, size: int) -> int:
        similarities = []
        if cond.mask is not None:
            similarities.append(mask_similarity(bank, resize_mask(cond.mask, size)))
        if cond.sketch is not None:
            sketch = cond.sketch
            if sketch.shape != (size, size):
                sketch = resize_image(sketch, size)
                sketch = (sketch > sketch.max() // 4).astype(np.uint8) * 255  # thin lines fade when shrunk
            similarities.append(sketch_similarity(bank, sketch))
        requested = {**(parse_prompt(cond.prompt) if cond.prompt else {}), **cond.attributes}
        by_attributes = attribute_similarity(bank, requested)
        if by_attributes is not None:
            similarities.append(by_attributes)
        candidates = np.arange(len(bank.images))
        for similarity in similarities:          # lexicographic: later modalities only break ties
            scores = similarity[candidates]
            candidates = candidates[scores == scores.max()]
        return int(candidates[np.random.default_rng(seed).integers(len(candidates))])
