"""Deterministic inversion: run the probability-flow ODE backwards, from an image to noise.

Editing a real photo (DDIM inversion, Song et al. 2021 sec. 4.3; EDM's ODE is the same idea)
means finding the noise that the sampler would turn into that photo under its own
conditions, then sampling again from that noise under edited conditions. `invert` walks the
sampler's own sigma schedule in reverse with Heun (or Euler) steps, so `sample_heun(invert(x))`
reproduces x up to the discretisation error of both passes.
"""
from __future__ import annotations

import torch

from .samplers import Denoiser


@torch.no_grad()
def invert(denoise: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *, heun: bool = True,
           callback=None) -> torch.Tensor:
    """x0 -> the noise at sigmas[0]. `sigmas` is the sampling schedule (decreasing, ending in 0).

    The first reverse step starts at the smallest positive sigma with x = x0 (at sigma_min
    ~ 0.002 the image and its slightly noised version are indistinguishable).
    """
    up = sigmas.flip(0)[1:]                      # increasing, positive
    x = x0
    for i in range(len(up) - 1):
        a, b = float(up[i]), float(up[i + 1])
        denoised = denoise(x, a)
        if callback is not None:
            callback(i, a, x, denoised)
        d = (x - denoised) / a
        x_next = x + d * (b - a)
        if heun:
            d_next = (x_next - denoise(x_next, b)) / b
            x_next = x + (d + d_next) / 2 * (b - a)
        x = x_next
    return x
