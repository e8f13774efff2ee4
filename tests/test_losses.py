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
