"""`faceweave evaluate`: score a backend on held-out faces, next to what real faces score.

The protocol (docs/evaluation.md gives the reasons and measured rows); everything below is
written into metrics.json["protocol"], so two runs are comparable when their protocols match:

  conditions  faces 0..n-1 of the FaceSynth *test* split (a renderer seed range no training
              command reads) at --size. --given picks what the backend is told: prompt (the
              face's first caption), attributes (every attribute FaceSynth renders), mask,
              sketch.
  seeds       image i is made with seed i. For diversity, the first min(n, 32) conditions get
              K - 1 more images with seeds i + 1_000_000 k (k = 1..K-1).
  scoring     the ruler (faceweave.ruler): the parser reads a mask off every output (vs the
              requested mask), the classifier reads attributes (vs those requested, or those
              parse_prompt finds in the prompt) and gives the features for fd, kid and
              diversity; XDoG edges of every output vs the requested sketch.
  reference   faces 0..n-1 of the *val* split: the real set fd and kid compare against.
  ceiling     the same metrics for the held-out real faces themselves, against their own
              conditions: what a perfect generator scores with these instruments (its fd is
              test vs val, two disjoint real sets of the same size).

With data="celebamask1k" (or a unified folder of real photos) the same protocol runs on
real held-out photos with real instruments (eval.real): the real-face parser, attributes
read the way the data's labels were derived, fd in dlib's identity space, and `memorised`
(null on FaceSynth).

Images stream through in batches, so memory does not grow with n beyond the feature rows.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from .. import __version__, io
from ..backends.base import Backend, backend_settings, get_backend
from ..conditions import NUM_CLASSES, CLASSES, Conditions, check_size
from ..errors import FaceweaveError
from ..text import parse_prompt
from .frechet import SmallSampleWarning, fd_from_features, kid
from .metrics import (LATENCY_REPEATS, Timer, attribute_accuracy, confusion_matrix, edge_match_counts,
                      fscore_from_counts, mask_scores_from_confusion, measure_latency, pairwise_diversity,
                      peak_memory_mb, sketch_tolerance_px)

GIVEN_CHOICES = ("prompt", "attributes", "mask", "sketch")
DEFAULT_GIVEN = ("prompt", "mask")
CONDITION_SPLIT, REFERENCE_SPLIT = "test", "val"
DEFAULT_N = 500
DIVERSITY_CONDITIONS = 32
DIVERSITY_SEED_STRIDE = 1_000_000
MAX_N = DIVERSITY_SEED_STRIDE          # keeps every seed of a run distinct
MAX_SEEDS_PER_CONDITION = 64
REPORT_SAMPLES = 8
ATTRIBUTE_THRESHOLD = 0.5
SKETCH_EXTRACTOR = "xdog"
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
# The headline numbers, in the order metrics.json and the report list them.
METRICS = ("mask_miou", "mask_pixel_acc", "attr_acc", "sketch_f", "fd", "kid", "fid", "kid_inception",
           "diversity", "sec_per_image", "n")
METRICS_FILE, REPORT_FILE, GRID_FILE = "metrics.json", "report.html", "grid.png"


def parse_given(given: str | Sequence[str]) -> tuple[str, ...]:
    """"prompt,mask" (or a list) -> ("prompt", "mask") in canonical order; "none" -> ()."""
    items = given.split(",") if isinstance(given, str) else list(given)
    names = [str(s).strip().lower() for s in items if str(s).strip()]
    if names == ["none"]:
        return ()
    unknown = [s for s in names if s not in GIVEN_CHOICES]
    if unknown:
        raise FaceweaveError(f"unknown modality {unknown[0]!r} in --given; choose from "
                             f"{', '.join(GIVEN_CHOICES)} (comma-separated, e.g. prompt,mask) or none")
    if not names:
        raise FaceweaveError("--given is empty; name the conditions to pass (e.g. prompt,mask), "
                             "or none for unconditional generation")
    return tuple(m for m in GIVEN_CHOICES if m in names)


def conditions_of(face, given: Sequence[str]) -> Conditions:
    """What the backend is told about a held-out face (a synth.FaceSample)."""
    return Conditions(prompt=face.captions[0] if "prompt" in given else None,
                      attributes=face.attributes if "attributes" in given else {},
                      mask=face.mask if "mask" in given else None,
                      sketch=face.sketch if "sketch" in given else None)


def requested_attributes(face, given: Sequence[str]) -> dict[str, int] | None:
    """The attributes an output is checked for: all of them when given, else what the prompt
    says (parse_prompt), else None (attr_acc has no meaning)."""
    if "attributes" in given:
        return dict(face.attributes)
    if "prompt" in given:
        return parse_prompt(face.captions[0])
    return None


def _integer(name: str, value, lo: int, hi: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise FaceweaveError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}; {hint}")
    return int(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _instrument_info(instrument) -> dict[str, Any]:
    """Which parser / classifier measured: checkpoint (bundled name or folder) and weights digest."""
    from ..checkpoint import WEIGHTS, bundled_dir

    path = getattr(instrument, "path", None)
    if path is None:                       # an in-memory stand-in (tests, notebooks)
        return {"checkpoint": repr(instrument), "image_size": None, "weights_sha256": None, "training_step": None}
    path = Path(path)
    weights = path / WEIGHTS
    training = getattr(instrument, "meta", {}).get("training") or {}
    return {"checkpoint": path.name if path.parent == bundled_dir() else str(path),
            "image_size": getattr(instrument, "size", None),
            "weights_sha256": _sha256(weights)[:16] if weights.is_file() else None,
            "training_step": training.get("step")}


class _SetScores:
    """One image set's consistency metrics and features, accumulated batch by batch.

    Used twice per run with the same instruments: for the backend's outputs and for the
    real held-out faces (the ceiling), so both go through identical code.
    """

    def __init__(self, given: Sequence[str], parser, classifier, inception, size: int):
        self.given, self.parser, self.classifier, self.inception = given, parser, classifier, inception
        self.tolerance = sketch_tolerance_px(size)
        self.confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        self.edges = {"matched_pred": 0, "n_pred": 0, "matched_target": 0, "n_target": 0}
        self.probs: list[np.ndarray] = []
        self.requested: list[np.ndarray] = []
        self.features: list[np.ndarray] = []
        self.inception_features: list[np.ndarray] = []

    def add(self, images: np.ndarray, faces: Sequence) -> None:
        if "mask" in self.given:
            self.confusion += confusion_matrix(self.parser.predict(images), np.stack([f.mask for f in faces]))
        if "sketch" in self.given:
            drawn = np.stack([io.sketch_from_image(im, SKETCH_EXTRACTOR) for im in images])
            counts = edge_match_counts(drawn, np.stack([f.sketch for f in faces]), self.tolerance)
            for key, value in counts.items():
                self.edges[key] += value
        wanted = [requested_attributes(f, self.given) for f in faces]
        if wanted[0] is not None:
            names = list(self.classifier.attributes)
            self.probs.append(self.classifier.predict_proba(images))
            self.requested.append(np.array([[w.get(a, -1) for a in names] for w in wanted], np.int8))
        self.features.append(self.classifier.features(images))
        if self.inception is not None:
            self.inception_features.append(self.inception.features(images))

    def result(self, reference: np.ndarray, reference_inception: np.ndarray | None,
               notes: list[str]) -> tuple[dict, dict]:
        """(headline metrics, details) against the reference features; bias notes go to `notes`."""
        metrics = dict.fromkeys(("mask_miou", "mask_pixel_acc", "attr_acc", "sketch_f", "fid", "kid_inception"))
        details: dict[str, Any] = {}
        if "mask" in self.given:
            scores = mask_scores_from_confusion(self.confusion)
            metrics["mask_miou"], metrics["mask_pixel_acc"] = scores["miou"], scores["pixel_acc"]
            details["per_class_iou"] = dict(zip(CLASSES, scores["per_class_iou"]))
        if self.probs:
            scores = attribute_accuracy(np.concatenate(self.probs), np.concatenate(self.requested),
                                        names=list(self.classifier.attributes), threshold=ATTRIBUTE_THRESHOLD)
            metrics["attr_acc"] = scores["attr_acc"]
            details["per_attribute"] = scores["per_attribute"]
            details["per_attribute_checked"] = scores["per_attribute_n"]
            details["attributes_checked"] = scores["n_requested"]
        if "sketch" in self.given:
            scores = fscore_from_counts(self.edges)
            metrics["sketch_f"] = scores["fscore"]
            details["sketch_precision"], details["sketch_recall"] = scores["precision"], scores["recall"]
        metrics["fd"], metrics["kid"], details["kid_std"] = _realism("fd", np.concatenate(self.features),
                                                                     reference, notes)
        if self.inception is not None:
            metrics["fid"], metrics["kid_inception"], details["kid_inception_std"] = _realism(
                "fid", np.concatenate(self.inception_features), reference_inception, notes)
        return metrics, details


def _realism(name: str, features: np.ndarray, reference: np.ndarray,
             notes: list[str]) -> tuple[float, float, float]:
    """(Fréchet distance, KID mean, KID std); the small-sample bias warning becomes a note."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmallSampleWarning)
        fd = fd_from_features(features, reference)
    notes.extend(f"{name}: {w.message}" for w in caught if issubclass(w.category, SmallSampleWarning))
    # With n <= the subset size every round would draw the same two sets: one round is the same number.
    rounds = KID_SUBSETS if min(len(features), len(reference)) > KID_SUBSET_SIZE else 1
    kid_mean, kid_std = kid(features, reference, subsets=rounds, subset_size=KID_SUBSET_SIZE)
    return fd, kid_mean, kid_std


@dataclasses.dataclass
class Evaluation:
    """metrics: what metrics.json holds; samples: the first few conditions with the real face
    and the outputs (one per seed), for the report's grids."""

    metrics: dict
    samples: list[dict]


def _instruments(parser, classifier, size: int):
    from .. import ruler

    if parser is None or isinstance(parser, (str, os.PathLike)):
        parser = ruler.load_parser(parser, size=size)
    if classifier is None or isinstance(classifier, (str, os.PathLike)):
        classifier = ruler.load_classifier(classifier, size=size)
    return parser, classifier


def evaluate(backend: str | Backend, *, model: str | None = None, given: str | Sequence[str] = DEFAULT_GIVEN,
             n: int = DEFAULT_N, size: int = 64, seeds_per_condition: int = 4, parser=None, classifier=None,
             inception_weights: str | os.PathLike | None = None, backend_options: dict | None = None,
             batch_size: int = 16, progress: bool = True, data: str = "facesynth") -> Evaluation:
    """Run the protocol of the module docstring and return the metrics and report samples.

    backend      a registry name (with `model` and `backend_options` for get_backend) or a Backend
    parser, classifier   a bundled name or checkpoint folder for faceweave.ruler, an already
                 loaded instrument, or None for the bundled default at `size`
    inception_weights    FID InceptionV3 weights for standard fid / kid_inception (else null)
    data         "facesynth" (exact ground truth), or real faces: "celebamask1k" or a unified
                 folder (eval.real: real parser, derived attributes, identity-space fd)
    """
    given = parse_given(given)
    size = check_size(size)
    real = None
    if data != "facesynth":
        from .real import RealLabeller, RealProtocol, real_parser

        if classifier is not None:
            raise FaceweaveError("--classifier reads FaceSynth attributes; real faces are read by the real "
                                 "labeller (parsed mask, hair pixels, dlib's age and gender): drop --classifier")
        real = RealProtocol(data, size, progress=progress)
        if isinstance(backend, str) and "bank" in backend_settings(backend):
            # a baseline that copies training faces copies photos of the same data, not FaceSynth
            backend_options = {"bank": data, **(backend_options or {})}
        if "mask" in given and not real.has_masks:
            raise FaceweaveError(f"--data {data} has no label maps, so it cannot give masks; drop mask from --given")
    n = _integer("n (--n)", n, 2, MAX_N, "fd and kid compare two image sets and need at least 2 per side, "
                 f"and the documented protocol uses --n {DEFAULT_N} (more images than the classifier's 256 "
                 "feature dimensions keep fd's covariance full rank)")
    if real is not None and n > real.max_n:
        raise FaceweaveError(f"n (--n) must be from 2 to {real.max_n} for --data {data} (its held-out "
                             f"photos and training photos bound it), got {n}")
    if real is not None:
        parser = real_parser(parser, size)
        classifier = RealLabeller(parser)
    seeds_per_condition = _integer("--seeds-per-condition", seeds_per_condition, 1, MAX_SEEDS_PER_CONDITION,
                                   "1 skips diversity")
    batch_size = _integer("--batch-size", batch_size, 1, 1024, "16 suits the CPU")
    if isinstance(backend, str):
        backend = get_backend(backend, model, **(backend_options or {}))
    unread = [m for m in given if m not in backend.accepts]
    if unread:
        raise FaceweaveError(f"backend {backend.name!r} cannot condition on {', '.join(unread)}; "
                             f"drop it from --given (it reads {', '.join(backend.accepts) or 'nothing'})")
    notes: list[str] = []
    inception = None
    if inception_weights is not None:
        from .inception import load_inception

        inception, weight_notes = load_inception(inception_weights)
        notes.extend(weight_notes)
    from .. import synth
    from ..data.unified import facesynth_seed

    if real is None:
        parser, classifier = _instruments(parser, classifier, size)
        test_seed, val_seed = facesynth_seed(CONDITION_SPLIT), facesynth_seed(REFERENCE_SPLIT)

        def condition_face(i: int):
            return synth.render(test_seed, i, size)

        def reference_image(i: int) -> np.ndarray:
            return synth.render(val_seed, i, size, captions=0).image
    else:
        condition_face, reference_image = real.condition, real.reference
    run = _SetScores(given, parser, classifier, inception, size)
    ceiling = _SetScores(given, parser, classifier, inception, size)
    reference, reference_inception = [], []
    samples: list[dict] = []
    diverse = min(n, DIVERSITY_CONDITIONS) if seeds_per_condition > 1 else 0
    kept_faces: list = []               # the conditions diversity and the report revisit
    generated, generate_seconds = 0, 0.0
    # One untimed call first, so sec_per_image excludes one-off set-up (the copy backend
    # renders its bank, a model backend may compile or warm caches) as measure_latency does.
    backend.generate([conditions_of(condition_face(0), given)], [0], size)

    bar = tqdm(total=n, desc=f"evaluate {backend.name}", unit="img", disable=not progress)
    for start in range(0, n, batch_size):
        indices = list(range(start, min(n, start + batch_size)))
        faces = [condition_face(i) for i in indices]
        with Timer() as timer:
            outputs = np.stack(backend.generate([conditions_of(f, given) for f in faces], indices, size))
        generate_seconds, generated = generate_seconds + timer.seconds, generated + len(indices)
        run.add(outputs, faces)
        ceiling.add(np.stack([f.image for f in faces]), faces)
        real_images = np.stack([reference_image(i) for i in indices])
        reference.append(classifier.features(real_images))
        if inception is not None:
            reference_inception.append(inception.features(real_images))
        for i, face, output in zip(indices, faces, outputs):
            if i < max(diverse, REPORT_SAMPLES):
                kept_faces.append(face)
            if i < REPORT_SAMPLES:
                samples.append({"index": i, "face": face, "outputs": [output]})
        bar.update(len(indices))
    bar.close()

    diversity = None
    if diverse:
        # Seeds 1..K-1 of the first conditions (seed 0 was made above), in batches like the rest.
        jobs = [(i, i + DIVERSITY_SEED_STRIDE * k) for i in range(diverse) for k in range(1, seeds_per_condition)]
        extra: list[np.ndarray] = []
        for start in tqdm(range(0, len(jobs), batch_size), desc="diversity", unit="batch", disable=not progress):
            chunk = jobs[start:start + batch_size]
            with Timer() as timer:
                extra += backend.generate([conditions_of(kept_faces[i], given) for i, _ in chunk],
                                          [seed for _, seed in chunk], size)
            generate_seconds, generated = generate_seconds + timer.seconds, generated + len(chunk)
        extra_features = classifier.features(np.stack(extra)).reshape(diverse, seeds_per_condition - 1, -1)
        first_seed_features = np.concatenate(run.features)[:diverse, None]
        diversity = pairwise_diversity(list(np.concatenate([first_seed_features, extra_features], axis=1)),
                                       metric="cosine")
        for i, sample in enumerate(samples[:diverse]):
            sample["outputs"] += extra[i * (seeds_per_condition - 1):(i + 1) * (seeds_per_condition - 1)]

    # Latency: one image alone (what an interactive user waits), after everything above warmed up.
    first = conditions_of(kept_faces[0], given)
    latency = measure_latency(lambda: backend.generate([first], [0], size), warmup=0, repeats=LATENCY_REPEATS)

    reference = np.concatenate(reference)
    reference_inception = np.concatenate(reference_inception) if inception is not None else None
    run_metrics, run_details = run.result(reference, reference_inception, notes)
    ceiling_metrics, ceiling_details = ceiling.result(reference, reference_inception, notes)
    memorised = {"run": None, "ceiling": None}
    if real is not None:
        from .real import memorisation

        bank = classifier.features(real.bank_images())
        held_out = np.concatenate(ceiling.features)
        for key, scores, details in (("run", run, run_details), ("ceiling", ceiling, ceiling_details)):
            details["memorisation"] = memorisation(np.concatenate(scores.features), bank, held_out)
            memorised[key] = details["memorisation"]["memorised"]
    if inception is not None and n < 3000:
        notes.append(f"fid at n = {n}: FID falls as n grows (published CelebA-HQ numbers range from about 111 "
                     "at n = 50 to 17 at n = 3000 for one model); compare only at equal n")
    metrics = {
        **{k: run_metrics.get(k) for k in METRICS[:8]},
        "diversity": diversity, "sec_per_image": generate_seconds / generated, "n": n,
        "memorised": memorised["run"],
        "latency_batch1": latency["sec_per_call"], "peak_memory_mb": peak_memory_mb(),
        "ceiling": {**{k: ceiling_metrics.get(k) for k in METRICS[:8]},
                    "diversity": None, "sec_per_image": None, "n": n, "memorised": memorised["ceiling"]},
        "protocol": _protocol(backend, model, given, n, size, seeds_per_condition, diverse, batch_size,
                              parser, classifier, reference.shape[1], inception_weights, real),
        "details": {"run": run_details, "ceiling": ceiling_details},
        "warnings": list(dict.fromkeys(notes)),
    }
    return Evaluation(metrics, samples)


def _protocol(backend: Backend, model, given, n, size, seeds_per_condition, diverse, batch_size,
              parser, classifier, feature_dim, inception_weights, real=None) -> dict:
    """Everything that must match for two runs' numbers to be comparable."""
    import torch

    from ..data.unified import facesynth_seed

    inception = None
    if inception_weights is not None:
        path = Path(inception_weights).expanduser()
        inception = {"file": path.name, "sha256": _sha256(path)[:16],
                     "preprocessing": "bilinear resize to 299, [-1, 1] (pytorch-fid)"}
    if real is None:
        source = {
            "data": "facesynth",
            "split": CONDITION_SPLIT,
            "conditions": f"FaceSynth {CONDITION_SPLIT} split (renderer seed {facesynth_seed(CONDITION_SPLIT)}), "
                          f"faces 0..{n - 1}",
            "reference": f"FaceSynth {REFERENCE_SPLIT} split (renderer seed {facesynth_seed(REFERENCE_SPLIT)}), "
                         f"faces 0..{n - 1}",
            "fd_features": f"classifier features (penultimate layer, {feature_dim}-d)",
            "attributes_read_by": "classifier",
        }
    else:
        source = {
            "data": str(real.root),
            "split": "held-out",
            "conditions": f"{real.description}; held-out photos 0..{n - 1} in name order",
            "reference": f"training photos 0..{n - 1} in name order",
            "fd_features": f"dlib face-recognition embeddings ({feature_dim}-d identity space)",
            "attributes_read_by": "real labeller: parsed mask, hair pixels, dlib age and gender (eval.real)",
            "memorisation": "share of outputs whose nearest training photo (identity distance) is closer than "
                            "the 1st percentile of the held-out real photos' nearest-training distances",
        }
    return {
        **source,
        "n": n,
        "size": size,
        "given": list(given),
        "prompt": "the face's first caption" if "prompt" in given else None,
        "seeds": f"image i: seed i; diversity: seeds i + {DIVERSITY_SEED_STRIDE} k, k = 1..K-1",
        "seeds_per_condition": seeds_per_condition,
        "diversity_conditions": diverse,
        "diversity_metric": "mean pairwise cosine distance of classifier features",
        "backend": backend.describe(),
        "model": model,
        "batch_size": batch_size,
        "timing": f"sec_per_image: wall clock of generate over every image made (diversity included), "
                  f"batches of {batch_size}, after one untimed warm-up call; latency_batch1: median of "
                  f"{LATENCY_REPEATS} calls with one image; peak_memory_mb: torch's peak CUDA allocation on a "
                  f"GPU, else the process's peak resident set size; {platform.machine()}, "
                  f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads"
                  + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "parser": _instrument_info(parser),
        "classifier": _instrument_info(classifier),
        "attribute_threshold": ATTRIBUTE_THRESHOLD,
        "sketch": {"extractor": SKETCH_EXTRACTOR, "tolerance_px": sketch_tolerance_px(size)},
        "kid": f"polynomial kernel, {KID_SUBSETS} subsets of {KID_SUBSET_SIZE} (one round on all "
               f"images when n <= {KID_SUBSET_SIZE})",
        "inception": inception,
        "versions": {"faceweave": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }


def write_evaluation(evaluation: Evaluation, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """metrics.json, report.html and grid.png into `out`, all at once or not at all
    (io.output_folder: a crash or a full disk never leaves a report without its metrics,
    or metrics of one run beside the report of another)."""
    from .report import report_html, sample_grid

    with io.output_folder(out, overwrite) as tmp:
        text = json.dumps(evaluation.metrics, indent=1, allow_nan=False)
        (tmp / METRICS_FILE).write_text(text + "\n", encoding="utf-8")
        grid = sample_grid(evaluation.samples, evaluation.metrics["protocol"]["given"])
        io.write_png(tmp / GRID_FILE, grid)
        (tmp / REPORT_FILE).write_text(report_html(evaluation.metrics, evaluation.samples), encoding="utf-8")
    return Path(out).expanduser().absolute()


def run_evaluation(out: str | os.PathLike, overwrite: bool = False, **options) -> dict:
    """`faceweave evaluate`: check the output folder, evaluate (options as for `evaluate`), write."""
    io.check_output_folder(out, overwrite)                  # before minutes of work rather than after
    evaluation = evaluate(**options)
    write_evaluation(evaluation, out, overwrite)
    return evaluation.metrics
