"""Classifier-free guidance with one scale per modality and an optional active window.

diffusers' convention: `guidance_scale` is a float (one scale for all conditions together)
or a dict {modality: scale}. With a float s (Ho & Salimans 2022, eq. 6):

    D = D(none) + s (D(all) - D(none))

With a dict, each modality m is guided against the prediction without it (the
"leave-one-out" composition; each scale only pushes along its own condition):

    D = D(all) + sum_m (s_m - 1) (D(all) - D(all minus m))

A scale of 1 means "conditioned, not guided" and costs nothing extra. `window = (start,
end)` limits guidance to that fraction of the sampling steps (0 = first step); outside it
the scale counts as 1 (guidance early sets layout, late guidance mostly oversaturates).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import FaceweaveError

MAX_SCALE = 30.0

# evaluate(x, sigma, subsets) -> one denoised batch per subset of present modalities
Evaluate = Callable[[torch.Tensor, float, list[frozenset]], list[torch.Tensor]]


def check_guidance(scale: float | dict[str, float], given: Iterable[str],
                   window: tuple[float, float] | None = None) -> None:
    """Reject absurd or meaningless settings with a one-line error (before any work starts)."""
    given = set(given)
    items = scale.items() if isinstance(scale, dict) else [("all", scale)]
    for name, value in items:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= MAX_SCALE:
            raise FaceweaveError(f"guidance scale for {name} must be a number from 0 to {MAX_SCALE:g}, "
                                 f"got {value!r} (1 = no guidance; 2-7 is usual)")
        if isinstance(scale, dict) and name not in given:
            raise FaceweaveError(f"guidance scale given for {name!r}, but that condition is not given "
                                 f"(given: {', '.join(sorted(given)) or 'nothing'})")
    if window is not None:
        # numbers only, as for the scales: the sampler compares these very values with its steps
        if isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in window):
            raise FaceweaveError(f"guidance window must be two fractions (start, end), e.g. (0.2, 0.8), "
                                 f"got {window!r}")
        start, end = window
        if not 0.0 <= start < end <= 1.0:
            raise FaceweaveError(f"guidance window must satisfy 0 <= start < end <= 1, got {window}")


def active(step: int, num_steps: int, window: tuple[float, float] | None) -> bool:
    if window is None:
        return True
    t = step / max(num_steps - 1, 1)
    return window[0] <= t <= window[1]


def guide(evaluate: Evaluate, x: torch.Tensor, sigma: float, given: Iterable[str],
          scale: float | dict[str, float], is_active: bool = True) -> torch.Tensor:
    """One guided denoiser evaluation (see module docstring). Subsets are evaluated in one call
    so the backend can batch them."""
    every = frozenset(given)
    if not is_active or not every:
        return evaluate(x, sigma, [every])[0]
    if not isinstance(scale, dict):
        if scale == 1:
            return evaluate(x, sigma, [every])[0]
        cond, uncond = evaluate(x, sigma, [every, frozenset()])
        return uncond + scale * (cond - uncond)
    guided = [m for m, s in scale.items() if s != 1 and m in every]
    outs = evaluate(x, sigma, [every] + [every - {m} for m in guided])
    cond = outs[0]
    result = cond
    for m, without in zip(guided, outs[1:]):
        result = result + (scale[m] - 1) * (cond - without)
    return result
