"""Evaluation: metric functions (pure, array in, numbers out) used by `faceweave evaluate`.

metrics.py  mask / attribute / sketch consistency, diversity, editing preservation, speed
frechet.py  realism: Fréchet distance and KID on feature sets
inception.py  the FID variant of InceptionV3 (pure torch), for standard FID with a user's weights
evaluate.py   `faceweave evaluate`: the protocol, a backend vs the held-out ceiling, metrics.json
report.py     report.html and grid.png of an evaluation
"""
from .frechet import (MIN_FD_SAMPLES, SmallSampleWarning, fd_from_features, feature_statistics,
                      frechet_distance, kid)
from .metrics import (Timer, attribute_accuracy, chamfer_distance, confusion_matrix, edge_match_counts,
                      fscore_from_counts, mask_scores, mask_scores_from_confusion, masked_preservation,
                      measure_latency, pairwise_diversity, peak_memory_mb, psnr, sketch_fscore,
                      sketch_tolerance_px)

__all__ = [
    "MIN_FD_SAMPLES", "SmallSampleWarning", "Timer", "attribute_accuracy", "chamfer_distance",
    "confusion_matrix", "edge_match_counts", "fd_from_features", "feature_statistics",
    "frechet_distance", "fscore_from_counts", "kid", "mask_scores", "mask_scores_from_confusion",
    "masked_preservation", "measure_latency", "pairwise_diversity", "peak_memory_mb", "psnr",
    "sketch_fscore", "sketch_tolerance_px",
]
