"""Metric functions of `faceweave evaluate`: known values, closed forms, edge cases, errors."""
import math

import cv2
import numpy as np
import pytest
import torch

from faceweave import CELEBA_ATTRIBUTES, FaceweaveError
from faceweave.eval import (SmallSampleWarning, Timer, attribute_accuracy, chamfer_distance,
                            fd_from_features, feature_statistics, frechet_distance, kid, mask_scores,
                            masked_preservation, measure_latency, pairwise_diversity, peak_memory_mb,
                            psnr, sketch_fscore)


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


# --- masks ------------------------------------------------------------------------------

def test_mask_scores_identical_and_disjoint():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 19, size=(3, 16, 16))
    same = mask_scores(target, target)
    assert same["miou"] == 1.0 and same["pixel_acc"] == 1.0
    present = set(np.unique(target).tolist())
    assert [i for i, v in enumerate(same["per_class_iou"]) if v is not None] == sorted(present)
    disjoint = mask_scores(np.zeros((2, 4, 4), int), np.ones((2, 4, 4), int))
    assert disjoint["miou"] == 0.0 and disjoint["pixel_acc"] == 0.0
    assert disjoint["per_class_iou"][:3] == [0.0, 0.0, None]


def test_mask_scores_hand_computed_two_classes():
    target = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    # class 0: TP 1, FN 1, FP 0 -> 1/2;  class 1: TP 2, FP 1 -> 2/3
    out = mask_scores(pred, target, num_classes=2)
    assert out["per_class_iou"] == pytest.approx([1 / 2, 2 / 3])
    assert out["miou"] == pytest.approx(7 / 12)
    assert out["pixel_acc"] == pytest.approx(3 / 4)
    assert mask_scores(torch.tensor(pred), torch.tensor(target), num_classes=2)["miou"] == pytest.approx(7 / 12)


def test_mask_scores_dataset_level_vs_per_image():
    target = np.stack([np.zeros((2, 2), int), np.ones((2, 2), int)])
    pred = np.zeros((2, 2, 2), int)  # image 0 perfect, image 1 all wrong
    out = mask_scores(pred, target, num_classes=2, per_image=True)
    assert out["miou"] == pytest.approx((4 / 8 + 0) / 2)  # one confusion matrix for the set
    assert out["per_image_miou"] == [1.0, 0.0]
    assert out["miou_image_mean"] == pytest.approx(0.5)


def test_mask_scores_errors_and_ignore_index():
    with pytest.raises(FaceweaveError, match="outside 0..18"):
        mask_scores(np.full((4, 4), 19), np.zeros((4, 4), int))
    with pytest.raises(FaceweaveError, match="shape"):
        mask_scores(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(FaceweaveError, match="integer class ids"):
        mask_scores(np.zeros((4, 4)), np.zeros((4, 4), int))
    target = np.array([[0, 255], [1, 255]])
    pred = np.array([[0, 1], [1, 0]])
    assert mask_scores(pred, target, num_classes=2, ignore_index=255)["miou"] == 1.0


# --- attributes -------------------------------------------------------------------------

def test_attribute_accuracy_known_values():
    probs = np.array([[0.9, 0.2, 0.5], [0.4, 0.7, 0.1]])
    requested = np.array([[1, 0, -1], [1, -1, -1]])
    out = attribute_accuracy(probs, requested, names=["Smiling", "Male", "Eyeglasses"])
    assert out["n_requested"] == 3
    assert out["attr_acc"] == pytest.approx(2 / 3)
    assert out["per_attribute"] == {"Smiling": 0.5, "Male": 1.0, "Eyeglasses": None}
    assert out["per_attribute_n"] == {"Smiling": 2, "Male": 1, "Eyeglasses": 0}
    none_asked = attribute_accuracy(np.full((2, 40), 0.5), np.full((2, 40), -1))
    assert none_asked["attr_acc"] is None and none_asked["n_requested"] == 0
    assert list(none_asked["per_attribute"]) == list(CELEBA_ATTRIBUTES)


def test_attribute_accuracy_errors():
    with pytest.raises(FaceweaveError, match="names"):
        attribute_accuracy(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(FaceweaveError, match="probabilities"):
        attribute_accuracy(np.full((1, 1), 3.0), np.ones((1, 1)), names=["Smiling"])
    with pytest.raises(FaceweaveError, match="not requested"):
        attribute_accuracy(np.zeros((1, 1)), np.full((1, 1), 2), names=["Smiling"])
    with pytest.raises(FaceweaveError, match="NaN"):
        attribute_accuracy(np.full((1, 1), np.nan), np.ones((1, 1)), names=["Smiling"])


# --- sketches ---------------------------------------------------------------------------

def line_image(row, size=64):
    img = np.zeros((size, size), np.uint8)
    img[row, 10:54] = 255  # white line on black, the sketch convention
    return img


def test_sketch_fscore_identical_shift_within_and_beyond_tolerance():
    target = line_image(30)
    assert sketch_fscore(target, target) == {"precision": 1.0, "recall": 1.0, "fscore": 1.0}
    assert sketch_fscore(line_image(32), target, tolerance_px=2)["fscore"] == 1.0
    assert sketch_fscore(line_image(35), target, tolerance_px=2)["fscore"] == 0.0
    assert chamfer_distance(target, target) == 0.0
    assert chamfer_distance(line_image(35), target) == pytest.approx(5.0)


def test_sketch_fscore_drops_with_shift():
    circle = np.zeros((64, 64), np.uint8)
    cv2.circle(circle, (32, 32), 20, 255, 1)
    scores = [sketch_fscore(np.roll(circle, s, axis=1), circle, tolerance_px=2)["fscore"] for s in (0, 2, 4, 8)]
    assert scores[0] == scores[1] == 1.0
    assert scores[1] > scores[2] > scores[3]
    bool_batch = np.stack([circle > 0, circle > 0])
    assert sketch_fscore(bool_batch, bool_batch.astype(np.uint8))["fscore"] == 1.0  # 0/1 maps too


def test_sketch_empty_maps():
    empty, line = np.zeros((64, 64), np.uint8), line_image(30)
    assert sketch_fscore(empty, empty)["fscore"] == 1.0
    assert sketch_fscore(empty, line) == {"precision": 1.0, "recall": 0.0, "fscore": 0.0}
    assert chamfer_distance(empty, empty) == 0.0
    assert chamfer_distance(empty, line) == pytest.approx(math.hypot(63, 63))


# --- Fréchet distance and KID ------------------------------------------------------------

def test_frechet_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=32), random_spd(rng, 32)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_closed_forms():
    # 1-D: (0 - 2)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 5
    assert frechet_distance([0.0], [[1.0]], [2.0], [[4.0]]) == pytest.approx(5.0)
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    s1, s2 = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)
    # full covariances that share eigenvectors: the same closed form in a rotated basis
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    fd = frechet_distance(mu1 @ q.T, q @ np.diag(s1) @ q.T, mu2 @ q.T, q @ np.diag(s2) @ q.T)
    assert fd == pytest.approx(expected, rel=1e-9)


def test_frechet_general_and_singular_covariances():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    s1, s2 = random_spd(rng, 12), random_spd(rng, 12, scale=2.0)
    # reference: tr sqrt(S1 S2) = sum of square roots of the (real, positive) eigenvalues of S1 S2
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).real))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ref, rel=1e-9)
    # 5 samples in 64 dimensions: rank-4 covariances, still finite, >= 0 and ~0 against itself
    a, b = rng.normal(size=(5, 64)), rng.normal(size=(5, 64))
    (ma, sa), (mb, sb) = feature_statistics(a), feature_statistics(b)
    assert frechet_distance(ma, sa, ma, sa) == pytest.approx(0.0, abs=1e-6)
    assert 0 < frechet_distance(ma, sa, mb, sb) < 1e3


def test_frechet_rejects_bad_input():
    with pytest.raises(FaceweaveError, match="NaN"):
        frechet_distance([np.nan, 0.0], np.eye(2), [0.0, 0.0], np.eye(2))
    with pytest.raises(FaceweaveError, match="NaN"):
        frechet_distance([0.0, 0.0], np.eye(2), [0.0, 0.0], np.diag([1.0, np.inf]))
    with pytest.raises(FaceweaveError, match="positive semi-definite"):
        frechet_distance([0.0, 0.0], np.diag([1.0, -1.0]), [0.0, 0.0], np.eye(2))
    with pytest.raises(FaceweaveError, match="shape"):
        frechet_distance([0.0, 0.0], np.eye(3), [0.0, 0.0], np.eye(2))
    with pytest.raises(FaceweaveError, match="NaN"):
        fd_from_features(np.full((10, 2), np.nan), np.zeros((10, 2)))


def test_fd_from_samples_of_shifted_gaussians():
    rng = np.random.default_rng(3)
    d = 8
    a, b = rng.normal(size=(4000, d)), rng.normal(loc=1.0, size=(4000, d))
    assert fd_from_features(a, b) == pytest.approx(d, rel=0.05)  # ‖1‖² = D, covariances equal
    assert fd_from_features(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0.0, abs=1e-9)


def test_fd_too_few_samples_and_small_sample_warning():
    with pytest.raises(FaceweaveError, match=r"fd needs at least 2 samples per side, got 1; "):
        fd_from_features(np.zeros((1, 4)), np.zeros((50, 4)))
    with pytest.raises(FaceweaveError, match=r"at least 20 samples per side, got 10"):
        fd_from_features(np.zeros((10, 4)), np.zeros((50, 4)), min_samples=20)
    rng = np.random.default_rng(4)
    with pytest.warns(SmallSampleWarning, match="biased"):
        fd_from_features(rng.normal(size=(6, 16)), rng.normal(size=(6, 16)))


def test_fd_with_fewer_samples_than_dimensions_matches_the_covariance_route():
    # below D samples fd_from_features works in sample space (an SVD of A Bᵀ); same number
    rng = np.random.default_rng(3)
    for n_a, n_b, d in ((3, 3, 64), (10, 7, 50), (99, 120, 128)):
        a, b = rng.normal(size=(n_a, d)), rng.normal(1.0, 1.5, size=(n_b, d))
        with pytest.warns(SmallSampleWarning):
            fast = fd_from_features(a, b)
        assert fast == pytest.approx(frechet_distance(*feature_statistics(a), *feature_statistics(b)), rel=1e-6)


def test_kid_same_vs_shifted():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    shifted = rng.normal(loc=0.5, size=(600, 16))
    same_mean, same_std = kid(a, b, subsets=20, subset_size=200)
    shift_mean, shift_std = kid(a, shifted, subsets=20, subset_size=200)
    assert shift_mean > 10 * max(abs(same_mean), same_std) and shift_mean > 3 * shift_std
    assert kid(a, shifted, subsets=20, subset_size=200) == (shift_mean, shift_std)  # seeded
    assert kid(a[:50], b[:50], subsets=3, subset_size=1000)[1] == pytest.approx(0.0, abs=1e-12)  # capped at n
    with pytest.raises(FaceweaveError, match="at least 2 samples"):
        kid(a[:1], b)


# --- diversity --------------------------------------------------------------------------

def test_pairwise_diversity():
    cond_a = np.array([[0.0, 0.0], [3.0, 4.0]])            # one pair, distance 5
    cond_b = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 2.0]])  # pairs 1, 2, 1
    assert pairwise_diversity([cond_a, cond_b]) == pytest.approx((5 + 4 / 3) / 2)
    assert pairwise_diversity([np.ones((4, 8))]) == 0.0  # seeds ignored: mode collapse
    assert pairwise_diversity([np.eye(2)], metric="cosine") == pytest.approx(1.0)
    with pytest.raises(FaceweaveError, match="S >= 2"):
        pairwise_diversity([np.ones((1, 8))])


# --- editing ----------------------------------------------------------------------------

def test_psnr_known_values():
    zeros = np.zeros((8, 8, 3), np.uint8)
    assert psnr(zeros, zeros + 1) == pytest.approx(20 * math.log10(255))
    assert psnr(zeros, zeros + 255) == pytest.approx(0.0)
    assert psnr(zeros, zeros) == math.inf
    assert psnr(np.zeros(4), np.full(4, 0.5), data_range=1.0) == pytest.approx(10 * math.log10(4))
    with pytest.raises(FaceweaveError, match="NaN"):
        psnr(np.full(4, np.nan), np.zeros(4))


def test_masked_preservation():
    rng = np.random.default_rng(6)
    original = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    region = np.zeros((8, 8), bool)
    region[:, :4] = True
    edited = original.copy()
    edited[:, :4] = 255 - edited[:, :4]  # the edit changes only its region
    out = masked_preservation(original, edited, region)
    assert out == {"psnr_outside": math.inf, "mae_outside": 0.0, "outside_fraction": 0.5}
    edited[0, 7, 0] = original[0, 7, 0] ^ 8  # one value outside changed by 8
    out = masked_preservation(original, edited, region)
    assert out["mae_outside"] == pytest.approx(8 / 96)
    assert out["psnr_outside"] == pytest.approx(10 * math.log10(255 ** 2 / (64 / 96)))
    batch = masked_preservation(np.stack([original] * 2), np.stack([edited] * 2), region)
    assert batch["mae_outside"] == pytest.approx(8 / 96)
    assert masked_preservation(original, edited, np.ones((8, 8)))["psnr_outside"] is None
    with pytest.raises(FaceweaveError, match="does not cover"):
        masked_preservation(original, edited, np.ones((4, 4)))


# --- speed ------------------------------------------------------------------------------

def test_latency_and_memory_helpers():
    calls = []
    out = measure_latency(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and out["repeats"] == 3
    assert 0 <= out["sec_min"] <= out["sec_per_call"] <= out["sec_max"]
    with Timer() as t:
        sum(range(1000))
    assert t.seconds >= 0
    assert peak_memory_mb() > 1
