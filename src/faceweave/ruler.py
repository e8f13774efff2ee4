"""The ruler: faceweave's own measuring instruments, a face parser and an attribute classifier.

Every generation backend is scored with these: the parser reads a 19-class mask
off an image (mask consistency), the classifier reads attribute probabilities (attribute /
text consistency) and gives the embedding for the Fréchet distance `fd`, KID and diversity.

    from faceweave.ruler import load_parser, load_classifier
    parser = load_parser()                      # bundled parser-64; load_parser(size=128), or a folder
    masks = parser.predict(images)              # (N, H, W, 3) uint8 RGB -> (N, H, W) uint8 class ids
    clf = load_classifier()                     # bundled classifier-64
    probs = clf.predict_proba(images)           # (N, A) float32, columns = clf.attributes
    feats = clf.features(images)                # (N, D) float32, the embedding behind `fd`

Images are uint8 RGB arrays, (N, H, W, 3) or a single (H, W, 3); a single image gives an
unbatched result ((H, W), (A,), (D,)). Any H x W: images are resized to the model's
resolution inside (area averaging to shrink, bicubic to enlarge, as `io.resize_image`),
and the parser's class scores are resized back to H x W before the arg-max, so the mask
lines up with the input. Work is done in batches (memory stays flat for thousands of
images), in eval mode under torch.inference_mode; the same image gives the same answer
whatever else is in the batch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, io
from .conditions import MIRRORED_CLASSES
from .errors import FaceweaveError
from .models.classifier import AttributeClassifier
from .models.parser import FaceParser

PARSER_FAMILY = "parser"
CLASSIFIER_FAMILY = "classifier"
BUNDLED_PARSERS = {64: "parser-64", 128: "parser-128"}
# Attributes are global: one classifier reads every size (larger images are area-downsampled
# to its 64 px; measured on 128 px test faces by benchmarks/eval_ruler.py).
BUNDLED_CLASSIFIERS = {64: "classifier-64"}


def _bundled_name(kind: str, table: dict[int, str], size: int) -> str:
    name = table.get(size)
    available = [s for s, n in table.items() if n in checkpoint.bundled_models()]
    if name is None or size not in available:
        sizes = ", ".join(str(s) for s in available) or "none"
        raise FaceweaveError(f"no bundled {kind} for {size} px (bundled sizes: {sizes}); "
                             f"pass size= one of those or a checkpoint folder made by `faceweave train {kind}`")
    return name


def _as_batch(images) -> tuple[np.ndarray, bool]:
    """uint8 (N, H, W, 3) and whether a single (H, W, 3) image was given."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise FaceweaveError("no images given")
        shapes = {np.shape(im) for im in images}
        if len(shapes) > 1:
            raise FaceweaveError(f"images of one call must share a size, got {sorted(shapes)[:3]}; "
                                 "call once per size")
        images = np.stack([np.asarray(im) for im in images])
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise FaceweaveError(f"images must be uint8 RGB (0..255), got dtype {arr.dtype}; "
                             "convert with (x * 255).round().astype(np.uint8) or read them with faceweave.io.read_image")
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0 or min(arr.shape[1:3]) < 1:
        raise FaceweaveError(f"images must be (N, H, W, 3) or (H, W, 3) RGB arrays, got shape {np.shape(images)}")
    return arr, single


class _Instrument:
    """Shared plumbing: checkpoint loading, batching, resizing, device placement."""

    family: str
    model_class: type

    def __init__(self, name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                 batch_size: int | None = None):
        meta, state = checkpoint.load(name_or_path, self.family)
        try:
            model = self.model_class.from_config(meta["config"])
        except (TypeError, KeyError) as exc:
            raise FaceweaveError(f"{meta['path']}/config.json does not describe a {self.family} "
                                 f"({exc}); re-export the checkpoint") from None
        checkpoint.load_into(model, state, where=meta["path"])
        size = meta.get("image_size")
        if not isinstance(size, int) or size < 8:
            raise FaceweaveError(f"{meta['path']}/config.json has no valid image_size; "
                                 "re-export the checkpoint with faceweave.train.export")
        self.meta: dict[str, Any] = meta
        self.path = Path(meta["path"])
        self.size: int = size
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size or max(1, 32 * 64 * 64 // (size * size))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, size={self.size})"

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, 3) -> float (n, 3, S, S) in [-1, 1] on the model's device."""
        if batch.shape[1:3] != (self.size, self.size):
            batch = np.stack([io.resize_image(im, self.size) for im in batch])
        x = torch.from_numpy(np.require(batch, requirements=["C", "W"])).to(self.device)
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    def _map(self, images, fn) -> tuple[list[np.ndarray], bool]:
        arr, single = _as_batch(images)
        out = []
        with torch.inference_mode():
            for start in range(0, len(arr), self.batch_size):
                out.append(fn(arr[start:start + self.batch_size]))
        return out, single


class Parser(_Instrument):
    """A face parser: images -> 19-class masks (CelebAMask-HQ ids) at the images' size."""

    family = PARSER_FAMILY
    model_class = FaceParser

    @property
    def flip_average(self) -> bool:
        """Average the class scores of the image and its mirror image (left/right classes
        swapped back), when the checkpoint's config asks for it ("inference": {"flip_average":
        true}): twice the cost, measured +0.011 mIoU for the real-face parser (docs/real-faces.md)."""
        return bool((self.meta.get("inference") or {}).get("flip_average", False))

    @property
    def ensemble(self) -> list[tuple["Parser", float]]:
        """Other parsers whose probabilities are averaged in, each with its weight, when the
        checkpoint's config asks for it ("inference": {"ensemble": [{"model": NAME, "weight":
        W}]}): each reads the image at its own size, and its scores are resized back. Loaded
        once, without ensembles of their own."""
        if not hasattr(self, "_ensemble"):
            self._ensemble = []
            for entry in (self.meta.get("inference") or {}).get("ensemble") or []:
                try:
                    weight = float(entry.get("weight", 0.5))
                except (AttributeError, TypeError, ValueError):
                    weight = float("nan")
                if not isinstance(entry, dict) or not entry.get("model") or not 0 < weight < 1:
                    raise FaceweaveError(f"{self.path}/config.json: bad inference.ensemble entry {entry!r}; "
                                         'write {"model": NAME, "weight": W} with 0 < W < 1')
                partner = Parser(entry["model"], device=self.device)
                partner._ensemble = []
                self._ensemble.append((partner, weight))
        return self._ensemble

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N, 19, S, S): logits, or averaged probabilities with flip_average or
        an ensemble."""
        logits = self.model(x).float()
        if not self.flip_average and not self.ensemble:
            return logits
        probs = logits.softmax(1)
        if self.flip_average:
            mirrored = self.model(x.flip(3)).float().softmax(1).flip(3)
            probs = (probs + mirrored[:, torch.as_tensor(MIRRORED_CLASSES, dtype=torch.long)]) / 2
        for partner, weight in self.ensemble:
            theirs = x if partner.size == self.size else F.interpolate(
                x, size=(partner.size, partner.size), mode="bilinear", align_corners=False,
                antialias=partner.size < self.size)
            theirs = partner._scores(theirs)
            theirs = theirs if partner.flip_average else theirs.softmax(1)
            if partner.size != self.size:
                theirs = F.interpolate(theirs, size=(self.size, self.size), mode="bilinear", align_corners=False)
            probs = (1 - weight) * probs + weight * theirs
        return probs

    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        scores = self._scores(self._tensor(batch))
        height, width = batch.shape[1:3]
        if (height, width) == (self.size, self.size):
            return scores.argmax(1).to(torch.uint8).cpu().numpy()
        # Resize scores, not labels: boundaries land between input pixels correctly.
        # One image at a time keeps memory flat (19 x 1024 x 1024 floats is 80 MB).
        mode = "bilinear" if height >= self.size and width >= self.size else "area"
        masks = [F.interpolate(l[None], size=(height, width), mode=mode,
                               **({"align_corners": False} if mode == "bilinear" else {}))[0].argmax(0)
                 for l in scores]
        return torch.stack(masks).to(torch.uint8).cpu().numpy()

    def predict(self, images) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) -> (N, H, W) uint8 class ids; (H, W, 3) -> (H, W)."""
        parts, single = self._map(images, self._predict_batch)
        masks = np.concatenate(parts)
        return masks[0] if single else masks


class Classifier(_Instrument):
    """An attribute classifier: images -> attribute probabilities and an embedding."""

    family = CLASSIFIER_FAMILY
    model_class = AttributeClassifier

    @property
    def attributes(self) -> list[str]:
        """The column names of predict_proba (CelebA attribute names)."""
        return list(self.model.attributes)

    @property
    def feature_dim(self) -> int:
        return self.model.feature_dim

    def predict_proba(self, images) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) -> (N, A) float32 probabilities; (H, W, 3) -> (A,)."""
        parts, single = self._map(
            images, lambda b: torch.sigmoid(self.model(self._tensor(b)).float()).cpu().numpy())
        probs = np.concatenate(parts).astype(np.float32)
        return probs[0] if single else probs

    def features(self, images) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) -> (N, D) float32 penultimate features; (H, W, 3) -> (D,)."""
        parts, single = self._map(
            images, lambda b: self.model.features(self._tensor(b)).float().cpu().numpy())
        feats = np.concatenate(parts).astype(np.float32)
        return feats[0] if single else feats

    def predict(self, images, threshold: float = 0.5) -> list[dict[str, float]] | dict[str, float]:
        """Probabilities as {attribute: p} per image (a single image gives one dict)."""
        probs = self.predict_proba(images)
        rows = probs[None] if probs.ndim == 1 else probs
        dicts = [{name: round(float(p), 4) for name, p in zip(self.attributes, row)} for row in rows]
        return dicts[0] if probs.ndim == 1 else dicts


def load_parser(name_or_path: str | os.PathLike | None = None, size: int = 64,
                device: str | torch.device = "cpu", batch_size: int | None = None) -> Parser:
    """A face parser from a checkpoint folder or bundled name (None: the bundled one for `size`).

    size picks the bundled default only (parser-64, parser-128); a given checkpoint brings
    its own resolution. batch_size bounds memory (default: 32 images at 64 px, fewer above).
    """
    if name_or_path is None:
        name_or_path = _bundled_name(PARSER_FAMILY, BUNDLED_PARSERS, size)
    return Parser(name_or_path, device=device, batch_size=batch_size)


def photo_parser_name() -> str:
    """The parser that labels users' photos by default (`faceweave parse`, the app's upload):
    the real-face parser when it is bundled, else the FaceSynth one."""
    return "parser-real-128" if "parser-real-128" in checkpoint.bundled_models() else "parser-64"


def load_classifier(name_or_path: str | os.PathLike | None = None, size: int = 64,
                    device: str | torch.device = "cpu", batch_size: int | None = None) -> Classifier:
    """An attribute classifier from a checkpoint folder or bundled name (None: the bundled one
    for `size`, or the largest bundled one below it: inputs are resized to the model's size)."""
    if name_or_path is None:
        below = [s for s in BUNDLED_CLASSIFIERS if s <= size and BUNDLED_CLASSIFIERS[s] in checkpoint.bundled_models()]
        name_or_path = _bundled_name(CLASSIFIER_FAMILY, BUNDLED_CLASSIFIERS, max(below) if below else size)
    return Classifier(name_or_path, device=device, batch_size=batch_size)


__all__ = ["Classifier", "Parser", "load_classifier", "load_parser", "photo_parser_name", "BUNDLED_PARSERS",
           "BUNDLED_CLASSIFIERS"]
