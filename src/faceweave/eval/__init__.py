"""Evaluation: metric functions (pure, array in, numbers out) used by `faceweave evaluate`.

metrics.py  mask / attribute / sketch consistency, diversity, editing preservation, speed
frechet.py  realism: Fréchet distance and KID on feature sets
"""
from .frechet import (MIN_FD_SAMPLES, SmallSampleWarning, fd_from_features, feature_statistics,
                      frechet_distance, kid)
from .metrics import (Timer, attribute_accuracy, chamfer_distance, confusion_matrix, mask_scores,
                      masked_preservation, measure_latency, pairwise_diversity, peak_memory_mb, psnr,
                      sketch_fscore)

__all__ = [
    "MIN_FD_SAMPLES", "SmallSampleWarning", "Timer", "attribute_accuracy", "chamfer_distance",
    "confusion_matrix", "fd_from_features", "feature_statistics", "frechet_distance", "kid",
    "mask_scores", "masked_preservation", "measure_latency", "pairwise_diversity",
    "peak_memory_mb", "psnr", "sketch_fscore",
]
