"""Noise schedules and samplers as plain functions (the EDM / k-diffusion formulation).

Everything works on the probability-flow ODE of Karras et al. 2022 ("EDM"), eq. 1:
    dx/dsigma = (x - D(x; sigma)) / sigma
where D is the denoiser (a network's estimate of the clean image). Every sampler has the
same signature

    sampler(denoise, x, sigmas, *, noise=None, callback=None) -> x0

`denoise(x, sigma, step)` returns D(x; sigma) for a batch (sigma a float; step the index in
`sigmas` of that sigma, so a guidance window knows where it is: Heun's second evaluation of a
step, at the next sigma, is the next step's), `x` is the starting
noise already scaled by sigmas[0], `sigmas` is a decreasing 1-D tensor ending in 0 (from a
schedule function below), `noise(i)` supplies fresh noise for stochastic samplers (so the
caller decides which generator each image uses: image i depends only on seed i), and
`callback(i, sigma, x, denoised)` is called once per step (progress bars, previews).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import FaceweaveError

Denoiser = Callable[[torch.Tensor, float, int], torch.Tensor]


# -- schedules ----------------------------------------------------------------------------
def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: sigmas evenly spaced in sigma^(1/rho), then a final 0. n = number of steps."""
    _check_steps(n)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def uniform_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """Sigmas evenly spaced in log-sigma (a 'uniform' schedule in noise level), then 0."""
    _check_steps(n)
    sigmas = torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64))
    return torch.cat([sigmas, sigmas.new_zeros(1)])


SCHEDULES = {"karras": karras_sigmas, "uniform": uniform_sigmas}


def _check_steps(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
        raise FaceweaveError(f"number of steps must be a whole number from 1 to 1000, got {n!r}")


# -- samplers -----------------------------------------------------------------------------
def _d(x, denoised, sigma):
    """dx/dsigma of the probability-flow ODE (EDM eq. 1 with s(t) = 1, sigma(t) = t)."""
    return (x - denoised) / sigma


@torch.no_grad()
def sample_euler(denoise: Denoiser, x, sigmas, *, noise=None, callback=None):
    """First-order Euler steps of the ODE (EDM Alg. 1 without the Heun correction)."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, s, i)
        if callback is not None:
            callback(i, s, x, denoised)
        x = x + _d(x, denoised, s) * (s_next - s)
    return x


@torch.no_grad()
def sample_heun(denoise: Denoiser, x, sigmas, *, noise=None, callback=None):
    """EDM Alg. 1 (deterministic Heun, 2nd order); the last step, to sigma = 0, is Euler."""
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, s, i)
        if callback is not None:
            callback(i, s, x, denoised)
        d = _d(x, denoised, s)
        x_next = x + d * (s_next - s)
        if s_next > 0:
            d_next = _d(x_next, denoise(x_next, s_next, i + 1), s_next)
            x_next = x + (d + d_next) / 2 * (s_next - s)
        x = x_next
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoiser, x, sigmas, *, noise=None, callback=None):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in log-sigma time, t = -log(sigma)."""
    old = None
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, s, i)
        if callback is not None:
            callback(i, s, x, denoised)
        if s_next == 0:
            x = denoised
            break
        t, t_next = -math.log(s), -math.log(s_next)
        h = t_next - t
        if old is None:
            d = denoised
        else:
            h_last = t - (-math.log(float(sigmas[i - 1])))
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
        x = (s_next / s) * x - math.expm1(-h) * d
        old = denoised
    return x


@torch.no_grad()
def sample_ddim(denoise: Denoiser, x, sigmas, *, eta: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                noise=None, callback=None):
    """DDIM (Song et al. 2021, eq. 12) written in sigma. eta = 0 is deterministic (in this
    variance-exploding parametrisation it takes the same steps as Euler); eta = 1 is
    ancestral sampling, DDPM-like. eta > 0 needs `noise`. s_tmin, s_tmax (the names of
    Karras et al. 2022's S_tmin, S_tmax): fresh noise only at the steps that start from a
    sigma in [s_tmin, s_tmax]; the other steps are deterministic (eta 0)."""
    if not 0.0 <= eta <= 1.0:
        raise FaceweaveError(f"DDIM eta must lie in [0, 1], got {eta}")
    check_noise_window(s_tmin, s_tmax)
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, s, i)
        if callback is not None:
            callback(i, s, x, denoised)
        if s_next == 0:
            x = denoised
            continue
        # Variance-exploding form of DDIM: split the step's noise into a fresh and a kept part.
        fresh = eta if s_tmin <= s <= s_tmax else 0.0
        sigma_up = fresh * math.sqrt(max(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2, 0.0))
        sigma_keep = math.sqrt(max(s_next ** 2 - sigma_up ** 2, 0.0))
        x = denoised + (x - denoised) * (sigma_keep / s)
        if sigma_up > 0:
            if noise is None:
                raise FaceweaveError("DDIM with eta > 0 needs a noise source (pass noise=...)")
            x = x + noise(i) * sigma_up
    return x


@torch.no_grad()
def sample_euler_ancestral(denoise: Denoiser, x, sigmas, *, s_tmin: float = 0.0, s_tmax: float = math.inf,
                           noise=None, callback=None):
    """Euler ancestral (k-diffusion's `sample_euler_ancestral` at eta 1): an Euler step down to
    sigma_down, then fresh noise back up to the next sigma. In this variance-exploding form
    that is exactly DDIM with eta = 1, so it is written as that (s_tmin, s_tmax as there).
    Needs `noise`."""
    return sample_ddim(denoise, x, sigmas, eta=1.0, s_tmin=s_tmin, s_tmax=s_tmax, noise=noise, callback=callback)


def check_noise_window(s_tmin, s_tmax) -> None:
    """s_tmin <= s_tmax, both numbers >= 0 (s_tmax may be inf)."""
    for name, value in (("s_tmin", s_tmin), ("s_tmax", s_tmax)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
            raise FaceweaveError(f"{name} must be a noise level (a number >= 0), got {value!r}")
    if s_tmin > s_tmax:
        raise FaceweaveError(f"s_tmin ({s_tmin}) must not exceed s_tmax ({s_tmax}): fresh noise is added at the "
                             "steps whose sigma lies between them")


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m, "ddim": sample_ddim,
            "euler_ancestral": sample_euler_ancestral}
STOCHASTIC = {"euler_ancestral"}       # always draw fresh noise (ddim does when eta > 0)


def get_sampler(name: str):
    try:
        return SAMPLERS[name]
    except KeyError:
        raise FaceweaveError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}") from None
