"""Deterministic inversion: run the probability-flow ODE backwards, from an image to noise.

Editing a real photo (DDIM inversion, Song et al. 2021 sec. 4.3; EDM's ODE is the same idea)
means finding the noise that the sampler would turn into that photo under its own
conditions, then sampling again from that noise under edited conditions. The ODE solvers in
`samplers.py` integrate in either direction, so inversion is the sampler's own schedule
walked in reverse: `sample_heun(invert(x))` reproduces x up to the discretisation error of
both passes.
"""
from __future__ import annotations

import torch

from .samplers import Denoiser, sample_euler, sample_heun


def invert(denoise: Denoiser, x0: torch.Tensor, sigmas: torch.Tensor, *, heun: bool = True,
           callback=None) -> torch.Tensor:
    """x0 -> the noise at sigmas[0]. `sigmas` is the sampling schedule (decreasing, ending in 0).

    The reverse pass starts at the smallest positive sigma with x = x0 (at sigma_min ~ 0.002
    the image and its slightly noised version are indistinguishable). `denoise` gets each
    sigma's step index in `sigmas` (the sampling schedule), not in the reversed walk.
    """
    up = sigmas.flip(0)[1:]                      # increasing, positive: never the final Euler-to-0 step
    last = len(sigmas) - 2                       # up[j] = sigmas[last - j]

    def backwards(x, sigma, j):
        return denoise(x, sigma, last - j)
    return (sample_heun if heun else sample_euler)(backwards, x0, up, callback=callback)
