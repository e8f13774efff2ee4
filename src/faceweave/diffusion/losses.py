"""The denoising objective and the loss weightings the Giambi & Lisanti paper compares.

Training draws a noise level per image from EDM's log-normal (Karras et al. 2022, sec. 5:
ln sigma ~ N(P_mean, P_std^2)) and minimises lambda(sigma) ||D(x + sigma n; sigma) - x||^2.
The weighting lambda is a config field; each is written here for the x0 error of an EDM
denoiser (SNR = sigma_data^2 / sigma^2):

    edm        (sigma^2 + sd^2) / (sigma sd)^2        unit weight on the network's own target
    uniform    1 / sigma^2                            = DDPM's "simple" epsilon loss
    p2         1 / (sigma^2 (k + SNR)^gamma)          Choi et al. 2022, perception prioritised
    min_snr    min(SNR, gamma) / sd^2                 Hang et al. 2023, epsilon weight min(SNR, g)/SNR

(p2 with k = 1, gamma = 1 and min_snr with gamma = 5 are the papers' defaults.)
"""
from __future__ import annotations

import torch

from ..errors import FaceweaveError

WEIGHTINGS = ("edm", "uniform", "p2", "min_snr")


def loss_weight(kind: str, sigma: torch.Tensor, sigma_data: float = 0.5, gamma: float | None = None,
                k: float = 1.0) -> torch.Tensor:
    snr = sigma_data ** 2 / sigma ** 2
    if kind == "edm":
        return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    if kind == "uniform":
        return 1 / sigma ** 2
    if kind == "p2":
        return 1 / (sigma ** 2 * (k + snr) ** (1.0 if gamma is None else gamma))
    if kind == "min_snr":
        return snr.clamp(max=5.0 if gamma is None else gamma) / sigma_data ** 2
    raise FaceweaveError(f"unknown loss weighting {kind!r}; choose one of {', '.join(WEIGHTINGS)}")


def sample_training_sigmas(batch: int, p_mean: float = -1.2, p_std: float = 1.2,
                           generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """EDM's training noise levels: log-normal, concentrated where denoising is hardest."""
    return (torch.randn(batch, generator=generator, device=device) * p_std + p_mean).exp()


def denoising_loss(denoise, x0: torch.Tensor, sigma: torch.Tensor, weighting: str = "edm",
                   sigma_data: float = 0.5, noise: torch.Tensor | None = None, **conditions) -> torch.Tensor:
    """Mean weighted x0 error of `denoise(x_noisy, sigma, **conditions)` over a batch."""
    noise = torch.randn_like(x0) if noise is None else noise
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    denoised = denoise(x0 + s * noise, sigma, **conditions)
    per_image = (denoised - x0).square().flatten(1).mean(1)
    return (loss_weight(weighting, sigma, sigma_data) * per_image).mean()
