"""Consistency, diversity, editing and speed metrics: small pure functions on arrays.

Each takes what a model produced and what was asked for (both already measured, e.g. the
parser's mask of a generated image vs the requested mask) and returns plain floats, lists
and dicts, ready for metrics.json. Inputs may be numpy arrays or torch tensors. A metric
with nothing to measure (no attribute requested, no pixel outside an edit region) is None,
never a made-up number.

    mask_scores          requested mask vs parsed mask: mIoU, pixel accuracy, per-class IoU
                         (mask_scores_from_confusion: the same from a summed confusion matrix)
    attribute_accuracy   requested attributes vs classifier probabilities
    sketch_fscore        requested sketch vs extracted edges, with a pixel tolerance
                         (edge_match_counts + fscore_from_counts: the same over batches)
    chamfer_distance     the same, as a symmetric mean distance in pixels
    pairwise_diversity   how different the seeds of one condition are
    psnr, masked_preservation   editing: what should not change, did not
    Timer, measure_latency, peak_memory_mb   speed and memory
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Callable, Sequence

import numpy as np
import torch

from ..conditions import CELEBA_ATTRIBUTES, NUM_CLASSES
from ..errors import FaceweaveError


def _numpy(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise FaceweaveError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise FaceweaveError(f"{name} contains NaN or infinite values")
    return arr


def _batch_of_maps(name: str, x) -> np.ndarray:
    """(H, W) or (N, H, W) -> (N, H, W)."""
    arr = _numpy(name, x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise FaceweaveError(f"{name} must be (H, W) or (N, H, W) and non-empty, got shape {arr.shape}")
    return arr


def _same_shape(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise FaceweaveError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}; they must match")


# --- masks ------------------------------------------------------------------------------

def confusion_matrix(pred, target, num_classes: int = NUM_CLASSES,
                     ignore_index: int | None = None) -> np.ndarray:
    """(C, C) int64 pixel counts; rows = target class, columns = predicted class."""
    pred, target = _batch_of_maps("pred", pred), _batch_of_maps("target", target)
    _same_shape("pred", pred, "target", target)
    for name, arr in (("pred", pred), ("target", target)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise FaceweaveError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    p, t = pred[keep].astype(np.int64), target[keep].astype(np.int64)
    for name, arr in (("pred", p), ("target", t)):
        bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])
        if bad.size:
            raise FaceweaveError(f"{name} has class ids {bad[:8].tolist()} outside 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per class; NaN where the class is in neither prediction nor target."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mask_scores(pred, target, num_classes: int = NUM_CLASSES, per_image: bool = False,
                ignore_index: int | None = None) -> dict:
    """Segmentation agreement between predicted and target class-id maps ((N,) H, W).

    Dataset-level, as face-parsing papers report it: one confusion matrix is accumulated
    over all pixels of all images, then IoU_c = TP / (TP + FP + FN) per class, and
    "miou" is the mean over the classes present in the target or the prediction (a class
    absent from both has no IoU: None in "per_class_iou"). "pixel_acc" = correct / all.
    per_image=True adds "per_image_miou" (each image's own mIoU over its own present
    classes) and "miou_image_mean", their mean; small parts (earrings) weigh more there.
    Target pixels equal to ignore_index (e.g. 255, "unlabelled") are left out.
    """
    out = mask_scores_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))
    if per_image:
        pred_b, target_b = _batch_of_maps("pred", pred), _batch_of_maps("target", target)
        per = []
        for p, t in zip(pred_b, target_b):
            cm_i = confusion_matrix(p, t, num_classes, ignore_index)
            per.append(float(np.nanmean(_iou_per_class(cm_i))) if cm_i.sum() else None)
        scored = [v for v in per if v is not None]
        out["per_image_miou"] = per
        out["miou_image_mean"] = float(np.mean(scored)) if scored else None
    return out


def mask_scores_from_confusion(cm) -> dict:
    """mask_scores' dataset-level numbers (miou, pixel_acc, per_class_iou) from a confusion
    matrix, e.g. one summed over batches so thousands of masks need not sit in memory."""
    cm = np.asarray(cm)
    total = int(cm.sum())
    if total == 0:
        raise FaceweaveError("every target pixel is ignore_index; nothing to score")
    iou = _iou_per_class(cm)
    return {
        "miou": float(np.nanmean(iou)),
        "pixel_acc": float(np.trace(cm) / total),
        "per_class_iou": [None if math.isnan(v) else float(v) for v in iou],
    }


# --- attributes -------------------------------------------------------------------------

def attribute_accuracy(pred_probs, requested, names: Sequence[str] | None = None,
                       threshold: float = 0.5) -> dict:
    """Did the generated images get the attributes that were asked for?

    pred_probs: (N, A) classifier probabilities in [0, 1]; requested: (N, A) with 1 / 0 for
    an attribute asked present / absent and -1 for "not requested". An attribute counts as
    present when its probability is > threshold. "attr_acc" is the micro average: correct
    decisions / all requested (image, attribute) pairs; "per_attribute" maps each name to its
    accuracy, or None if it was never requested; "per_attribute_n" how many pairs each
    accuracy is over; "n_requested" counts all pairs. names defaults to the 40 CelebA
    attributes when A == 40.
    """
    probs, req = _numpy("pred_probs", pred_probs), _numpy("requested", requested)
    if probs.ndim != 2:
        raise FaceweaveError(f"pred_probs must be (N, A), got shape {probs.shape}")
    _same_shape("pred_probs", probs, "requested", req)
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise FaceweaveError("pred_probs must be probabilities in [0, 1] (apply a sigmoid to logits)")
    bad = np.setdiff1d(np.unique(req), [-1, 0, 1])
    if bad.size:
        raise FaceweaveError(f"requested holds {bad[:5].tolist()}; use 1 (present), 0 (absent), -1 (not requested)")
    if names is None:
        if probs.shape[1] != len(CELEBA_ATTRIBUTES):
            raise FaceweaveError(f"pass names for the {probs.shape[1]} attribute columns")
        names = CELEBA_ATTRIBUTES
    if len(names) != probs.shape[1]:
        raise FaceweaveError(f"{len(names)} names for {probs.shape[1]} attribute columns")
    asked = req != -1
    correct = ((probs > threshold) == (req == 1)) & asked
    n_asked = asked.sum(0)
    per_attribute = {
        str(name): (float(correct[:, j].sum() / n_asked[j]) if n_asked[j] else None)
        for j, name in enumerate(names)
    }
    n_requested = int(asked.sum())
    return {
        "attr_acc": float(correct.sum() / n_requested) if n_requested else None,
        "per_attribute": per_attribute,
        "per_attribute_n": {str(name): int(n_asked[j]) for j, name in enumerate(names)},
        "n_requested": n_requested,
    }


# --- sketches ---------------------------------------------------------------------------

def _edge_maps(name: str, x) -> np.ndarray:
    """Edge pixels as (N, H, W) bool. bool maps are taken as they are; numbers are edges
    above half their range: > 127 for uint8 0..255 sketches, > 0.5 for 0/1 or 0..1 maps."""
    arr = _batch_of_maps(name, x)
    if arr.dtype == bool:
        return arr
    half = 127.5 if arr.dtype == np.uint8 and arr.max() > 1 else 0.5
    return arr > half


def _distance_to_edges(edges: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance of every pixel to the nearest edge pixel of one (H, W) map."""
    import cv2  # opencv is a dependency; imported here to keep `import faceweave.eval` light

    return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def sketch_tolerance_px(size: int) -> float:
    """The edge-matching tolerance faceweave uses at `size` px: 2 px at 64 px, in proportion
    elsewhere (lines and their placement scale with the face)."""
    return 2.0 * size / 64


def sketch_fscore(pred_edges, target_edges, tolerance_px: float = 2.0) -> dict:
    """Edge agreement with a distance tolerance, as in edge-detection benchmarks (BSDS).

    A predicted edge pixel is correct if a target edge pixel lies within tolerance_px
    (Euclidean); a target edge pixel is recalled if a predicted one lies within tolerance_px.
    Counts are pooled over all images (dataset-level, like mask_scores): precision =
    correct predicted / predicted, recall = recalled target / target, F = their harmonic
    mean. With no predicted edges precision is 1 (nothing wrong was drawn); with no target
    edges recall is 1; two empty maps score 1 everywhere.
    """
    return fscore_from_counts(edge_match_counts(pred_edges, target_edges, tolerance_px))


def edge_match_counts(pred_edges, target_edges, tolerance_px: float = 2.0) -> dict[str, int]:
    """The pooled counts behind sketch_fscore: matched_pred / n_pred (precision) and
    matched_target / n_target (recall). Sum them over batches, then fscore_from_counts."""
    pred, target = _edge_maps("pred_edges", pred_edges), _edge_maps("target_edges", target_edges)
    _same_shape("pred_edges", pred, "target_edges", target)
    if tolerance_px < 0:
        raise FaceweaveError(f"tolerance_px must be >= 0, got {tolerance_px}")
    matched_pred = matched_target = 0
    for p, t in zip(pred, target):
        if t.any():
            matched_pred += int((_distance_to_edges(t)[p] <= tolerance_px).sum())
        if p.any():
            matched_target += int((_distance_to_edges(p)[t] <= tolerance_px).sum())
    return {"matched_pred": matched_pred, "n_pred": int(pred.sum()),
            "matched_target": matched_target, "n_target": int(target.sum())}


def fscore_from_counts(counts: dict[str, int]) -> dict:
    """precision, recall and F from edge_match_counts (see sketch_fscore for the empty cases)."""
    precision = counts["matched_pred"] / counts["n_pred"] if counts["n_pred"] else 1.0
    recall = counts["matched_target"] / counts["n_target"] if counts["n_target"] else 1.0
    fscore = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "fscore": fscore}


def chamfer_distance(pred_edges, target_edges) -> float:
    """Symmetric chamfer distance in pixels, averaged over images.

    Per image: (mean distance of predicted edge pixels to the nearest target edge pixel +
    the same from target to predicted) / 2. An empty map against a non-empty one scores the
    image diagonal (the largest possible distance) instead of infinity; two empty maps score 0.
    """
    pred, target = _edge_maps("pred_edges", pred_edges), _edge_maps("target_edges", target_edges)
    _same_shape("pred_edges", pred, "target_edges", target)
    h, w = pred.shape[1:]
    worst = math.hypot(h - 1, w - 1)
    per_image = []
    for p, t in zip(pred, target):
        if not p.any() and not t.any():
            per_image.append(0.0)
        elif not p.any() or not t.any():
            per_image.append(worst)
        else:
            per_image.append(0.5 * (float(_distance_to_edges(t)[p].mean()) + float(_distance_to_edges(p)[t].mean())))
    return float(np.mean(per_image))


# --- diversity --------------------------------------------------------------------------

def pairwise_diversity(features_per_condition: Sequence, metric: str = "l2") -> float:
    """Mean distance between images generated for the same condition with different seeds.

    features_per_condition: one (S, D) feature array per condition (S >= 2 seeds). For each
    condition, the mean over its S(S-1)/2 pairs of the L2 distance (metric="l2", in feature
    units) or the cosine distance 1 - cos (metric="cosine", scale-free, 0..2); then the
    plain mean over conditions. 0 means the seeds are ignored (mode collapse).
    """
    if metric not in ("l2", "cosine"):
        raise FaceweaveError(f"metric must be 'l2' or 'cosine', got {metric!r}")
    if len(features_per_condition) == 0:
        raise FaceweaveError("diversity needs at least one condition")
    per_condition = []
    for i, feats in enumerate(features_per_condition):
        x = _numpy(f"features of condition {i}", feats).astype(np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise FaceweaveError(
                f"diversity needs (S, D) features with S >= 2 seeds per condition; condition {i} has shape {x.shape}"
            )
        if metric == "cosine":
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = x / np.where(norms > 0, norms, 1.0)
        # Differences of the pairs, not a Gram matrix: identical images score exactly 0
        # (1 - x.x leaves rounding noise of 1e-17, which reads as a tiny diversity).
        rows, cols = np.triu_indices(x.shape[0], k=1)
        gaps = np.linalg.norm(x[rows] - x[cols], axis=1)
        dist = gaps ** 2 / 2 if metric == "cosine" else gaps          # 1 - cos = |a - b|² / 2 on unit vectors
        per_condition.append(float(dist.mean()))
    return float(np.mean(per_condition))


# --- editing ----------------------------------------------------------------------------

def _mse_to_psnr(mse: float, data_range: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def psnr(a, b, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements given (inf for identical arrays).

    Pass one image for a per-image PSNR; a batch gives the PSNR of the pooled MSE.
    """
    x, y = _numpy("a", a).astype(np.float64), _numpy("b", b).astype(np.float64)
    _same_shape("a", x, "b", y)
    if x.size == 0:
        raise FaceweaveError("psnr of empty arrays")
    return _mse_to_psnr(float(np.mean((x - y) ** 2)), data_range)


def masked_preservation(original, edited, edit_region_mask, data_range: float = 255.0) -> dict:
    """How well an edit leaves alone what it should: PSNR and mean absolute error outside the region.

    original, edited: (H, W), (H, W, C), (N, H, W) or (N, H, W, C) images in 0..data_range;
    edit_region_mask: (H, W) or (N, H, W), nonzero/True where the edit was allowed.
    Returns {"psnr_outside" (dB, inf if untouched), "mae_outside" (in image units),
    "outside_fraction"}; the scores are None when the region covers every pixel.
    """
    x, y = _numpy("original", original).astype(np.float64), _numpy("edited", edited).astype(np.float64)
    _same_shape("original", x, "edited", y)
    region = _numpy("edit_region_mask", edit_region_mask) != 0
    if x.ndim == region.ndim + 1 and region.shape == x.shape[:region.ndim]:
        region = region[..., None]  # one mask for all colour channels
    elif region.ndim == 2 and x.ndim == 4:
        region = region[None, ..., None]  # one mask for a batch of colour images
    try:
        outside = np.broadcast_to(~region, x.shape)
    except ValueError:
        raise FaceweaveError(
            f"edit_region_mask has shape {region.shape}, which does not cover images of shape {x.shape}"
        ) from None
    n_outside = int(outside.sum())
    if n_outside == 0:
        return {"psnr_outside": None, "mae_outside": None, "outside_fraction": 0.0}
    diff = (x - y)[outside]
    return {
        "psnr_outside": _mse_to_psnr(float(np.mean(diff ** 2)), data_range),
        "mae_outside": float(np.mean(np.abs(diff))),
        "outside_fraction": n_outside / outside.size,
    }


# --- speed ------------------------------------------------------------------------------

def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class Timer:
    """`with Timer() as t: ...` then t.seconds (wall clock, CUDA work included)."""

    def __enter__(self) -> "Timer":
        _synchronize()
        self.seconds = 0.0
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        _synchronize()
        self.seconds = time.perf_counter() - self._start


# calls timed for one-image latency in evaluations: a one-image call on a shared 2-core machine
# varies by +-20 % from call to call, so the median is taken over more than a handful
LATENCY_REPEATS = 7


def measure_latency(fn: Callable[[], object], warmup: int = 1, repeats: int = 5) -> dict:
    """Call fn() warmup times untimed (compilation, caches), then time `repeats` calls.

    "sec_per_call" is the median (robust to a stray slow call); mean, min and max come too.
    """
    if repeats < 1 or warmup < 0:
        raise FaceweaveError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        times.append(t.seconds)
    return {"sec_per_call": statistics.median(times), "sec_mean": statistics.fmean(times),
            "sec_min": min(times), "sec_max": max(times), "repeats": repeats}


def peak_memory_mb() -> float | None:
    """Peak memory in MiB: CUDA memory allocated by torch when a GPU is in use, otherwise the
    process's peak resident set size (which includes the Python interpreter and libraries);
    None where neither can be read (Windows without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10  # bytes on macOS, KiB on Linux
