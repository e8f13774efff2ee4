"""Samplers on a toy problem with an exact denoiser: data ~ N(mu, s^2) per dimension.

For Gaussian data D(x; sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the probability-flow
ODE has the closed-form solution x(sigma) = mu + (x_T - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2).
So every deterministic sampler can be checked against the exact endpoint of each trajectory.
"""
from __future__ import annotations

import math

import pytest
import torch

from faceweave.diffusion.samplers import SAMPLERS, get_sampler, karras_sigmas, sample_ddim, uniform_sigmas
from faceweave.errors import FaceweaveError

MU, S = 0.7, 0.5


def denoise(x, sigma, step=None):
    return MU + S ** 2 / (S ** 2 + sigma ** 2) * (x - MU)


def exact_endpoint(x_t, sigma_t):
    return MU + (x_t - MU) * S / math.sqrt(S ** 2 + sigma_t ** 2)


def start(n=4096, sigma_max=80.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return MU + torch.randn(n, dtype=torch.float64, generator=g) * math.sqrt(S ** 2 + sigma_max ** 2)


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m", "ddim"])
def test_deterministic_samplers_converge_to_the_exact_ode_solution(name):
    x_t = start()
    target = exact_endpoint(x_t, 80.0)
    errors = []
    for steps in (5, 20, 160):
        out = get_sampler(name)(denoise, x_t.clone(), karras_sigmas(steps))
        errors.append(((out - target).abs() / (target - MU).abs()).max().item())   # relative
    assert errors[2] < errors[1] < errors[0], errors     # more steps, closer
    assert errors[2] < {"euler": 0.03, "ddim": 0.03, "heun": 1e-3, "dpmpp_2m": 1e-3}[name], errors


def test_higher_order_beats_euler_at_equal_steps():
    x_t = start()
    target = exact_endpoint(x_t, 80.0)
    err = {n: (get_sampler(n)(denoise, x_t.clone(), karras_sigmas(10)) - target).abs().mean().item()
           for n in ("euler", "heun", "dpmpp_2m")}
    assert err["heun"] < err["euler"] and err["dpmpp_2m"] < err["euler"], err


@pytest.mark.parametrize("schedule", [karras_sigmas, uniform_sigmas])
def test_schedules_decrease_to_zero(schedule):
    s = schedule(12)
    assert len(s) == 13 and s[-1] == 0 and bool((s[:-1] > s[1:]).all())
    assert abs(float(s[0]) - 80.0) < 1e-9 and abs(float(s[-2]) - 0.002) < 1e-9


def test_ancestral_ddim_samples_the_data_distribution():
    g = torch.Generator().manual_seed(1)
    x_t = start(seed=2)
    out = sample_ddim(denoise, x_t, karras_sigmas(60), eta=1.0,
                      noise=lambda i: torch.randn(x_t.shape, dtype=x_t.dtype, generator=g))
    assert abs(out.mean().item() - MU) < 0.05 and abs(out.std().item() - S) < 0.05
    # the trajectories are not the ODE's: each image ends far from its deterministic endpoint
    assert (out - exact_endpoint(x_t, 80.0)).abs().mean() > 0.3 * S


def test_euler_ancestral_is_ddim_at_eta_1():
    x_t = start(seed=4)
    runs = []
    for name, kw in (("euler_ancestral", {}), ("ddim", {"eta": 1.0})):
        g = torch.Generator().manual_seed(5)
        runs.append(get_sampler(name)(denoise, x_t.clone(), karras_sigmas(12),
                                      noise=lambda i: torch.randn(x_t.shape, dtype=x_t.dtype, generator=g), **kw))
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(FaceweaveError, match="noise"):
        get_sampler("euler_ancestral")(denoise, x_t, karras_sigmas(3))


def test_noise_window_adds_fresh_noise_only_between_s_tmin_and_s_tmax():
    """Karras et al.'s S_tmin/S_tmax: noise is drawn exactly at the steps that start from a
    sigma in the window; a window holding no step is eta 0, the full window is the default."""
    x_t, sigmas = start(seed=6), karras_sigmas(12)
    levels = [float(s) for s in sigmas[:-1]]

    def run(**kw):
        g, drawn = torch.Generator().manual_seed(7), []

        def noise(i):
            drawn.append(i)
            return torch.randn(x_t.shape, dtype=x_t.dtype, generator=g)
        return sample_ddim(denoise, x_t.clone(), sigmas, eta=1.0, noise=noise, **kw), drawn

    full, drawn_full = run()
    assert drawn_full == list(range(11))                   # every step but the last (to sigma 0)
    assert torch.equal(full, run(s_tmin=0.0, s_tmax=math.inf)[0])
    windowed, drawn = run(s_tmin=0.5, s_tmax=20.0)
    assert drawn == [i for i, s in enumerate(levels[:-1]) if 0.5 <= s <= 20.0] and 0 < len(drawn) < 11
    assert not torch.equal(windowed, full)
    none, drawn_none = run(s_tmin=100.0)
    assert drawn_none == [] and torch.equal(none, sample_ddim(denoise, x_t.clone(), sigmas, eta=0.0))
    g = torch.Generator().manual_seed(7)
    ancestral = get_sampler("euler_ancestral")(denoise, x_t.clone(), sigmas, s_tmin=0.5, s_tmax=20.0,
                                               noise=lambda i: torch.randn(x_t.shape, dtype=x_t.dtype, generator=g))
    assert torch.equal(ancestral, windowed)
    for kw, message in (({"s_tmin": -1.0}, "s_tmin must be a noise level"), ({"s_tmax": float("nan")}, "s_tmax"),
                        ({"s_tmin": 2.0, "s_tmax": 1.0}, "must not exceed s_tmax"), ({"s_tmin": True}, "s_tmin")):
        with pytest.raises(FaceweaveError, match=message):
            sample_ddim(denoise, start(4), karras_sigmas(3), **kw)


def test_callback_sees_every_step():
    seen = []
    get_sampler("heun")(denoise, start(16), karras_sigmas(7), callback=lambda i, s, x, d: seen.append(i))
    assert seen == list(range(7))


def test_bad_arguments():
    for bad in (0, 1001, 2.5):
        with pytest.raises(FaceweaveError, match="steps"):
            karras_sigmas(bad)
    with pytest.raises(FaceweaveError, match="eta"):
        sample_ddim(denoise, start(4), karras_sigmas(3), eta=1.5)
    with pytest.raises(FaceweaveError, match="noise"):
        sample_ddim(denoise, start(4), karras_sigmas(3), eta=0.5)
    with pytest.raises(FaceweaveError, match="unknown sampler"):
        get_sampler("plms")
    assert set(SAMPLERS) == {"euler", "heun", "dpmpp_2m", "ddim", "euler_ancestral"}
    from faceweave.cli import SAMPLER_NAMES
    assert set(SAMPLER_NAMES) == set(SAMPLERS)


def test_inversion_round_trip():
    from faceweave.diffusion.inversion import invert
    from faceweave.diffusion.samplers import sample_heun

    g = torch.Generator().manual_seed(3)
    x0 = MU + S * torch.randn(2048, dtype=torch.float64, generator=g)
    sigmas = karras_sigmas(40)
    x_t = invert(denoise, x0, sigmas)
    exact = MU + (x0 - MU) * math.sqrt(S ** 2 + 80.0 ** 2) / S
    assert ((x_t - exact).abs() / (exact - MU).abs()).max() < 0.01
    back = sample_heun(denoise, x_t, sigmas)
    assert (back - x0).abs().max() < 0.01 * S
