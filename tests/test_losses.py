"""Loss weightings: closed-form values and the orderings that define them."""
from __future__ import annotations

import pytest
import torch

from faceweave.diffusion.losses import WEIGHTINGS, denoising_loss, loss_weight, sample_training_sigmas
from faceweave.errors import FaceweaveError


def test_values_at_sigma_data():
    s = torch.tensor([0.5])
    assert float(loss_weight("edm", s)) == pytest.approx(8.0)        # (0.25 + 0.25) / 0.0625
    assert float(loss_weight("uniform", s)) == pytest.approx(4.0)
    assert float(loss_weight("p2", s)) == pytest.approx(2.0)         # 1 / (0.25 * 2)
    assert float(loss_weight("min_snr", s)) == pytest.approx(4.0)    # SNR 1 / 0.25


def test_orderings():
    sig = torch.logspace(-2, 1.5, 20)
    for kind in WEIGHTINGS:
        w = loss_weight(kind, sig)
        assert torch.all(w[1:] <= w[:-1] + 1e-9), kind               # less weight at more noise
    # min-SNR caps the weight of nearly clean images; uniform does not.
    assert float(loss_weight("min_snr", torch.tensor([0.01]))) == pytest.approx(5 / 0.25)
    assert float(loss_weight("uniform", torch.tensor([0.01]))) == pytest.approx(1e4)


def test_loss_of_the_perfect_denoiser_is_zero():
    x0 = torch.randn(4, 3, 8, 8)
    sigma = sample_training_sigmas(4, generator=torch.Generator().manual_seed(0))
    assert float(denoising_loss(lambda x, s: x0, x0, sigma, "min_snr")) == 0.0
    assert float(denoising_loss(lambda x, s: x0 * 0, x0, sigma, "edm")) > 0.0


def test_unknown_weighting():
    with pytest.raises(FaceweaveError, match="unknown loss weighting"):
        loss_weight("lpips", torch.tensor([1.0]))


def _logits_of(target: torch.Tensor, classes: int, sure: float = 20.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float() * sure


def test_soft_iou_loss_is_zero_when_right_and_weighs_a_small_class_like_a_large_one():
    from faceweave.train.guide import soft_iou_loss
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:6, 4:6] = 2                                   # a class of 4 pixels per face
    target[:, 8:, :] = 1
    assert float(soft_iou_loss(_logits_of(target, 3), target)) == pytest.approx(0.0, abs=1e-6)
    # the small class read as class 1: 8 of 512 pixels wrong; the cross-entropy barely moves,
    # the soft mIoU loses a third of its classes' worth (class 2 at IoU 0)
    wrong = target.clone()
    wrong[target == 2] = 1
    logits = _logits_of(wrong, 3)
    ce = torch.nn.functional.cross_entropy(logits, target)
    iou = soft_iou_loss(logits, target)
    assert float(ce) * 512 / 8 == pytest.approx(20.0, rel=1e-3)    # only the 8 wrong pixels pay
    assert 0.33 < float(iou) < 0.36


def test_soft_iou_loss_counts_only_weighted_faces_and_passes_gradients():
    from faceweave.train.guide import soft_iou_loss
    target = torch.randint(0, 4, (3, 8, 8))
    logits = _logits_of(target, 4)
    logits[2] = torch.randn(4, 8, 8)                         # the third face is read badly ...
    loose = soft_iou_loss(logits, target)
    weights = torch.tensor([1.0, 1.0, 0.0])                  # ... but owes nothing
    assert float(soft_iou_loss(logits, target, weights)) == pytest.approx(0.0, abs=1e-6)
    assert float(loose) > 0.05
    assert float(soft_iou_loss(logits, target, torch.zeros(3))) == 0.0
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    soft_iou_loss(x, target).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
