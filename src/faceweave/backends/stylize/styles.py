"""Named looks made offline from real photos: the (styled image, description) pairs the joint
image-text space learns from, and the artistic domains stage 2 can fine-tune the decoder on.

No CLIP exists offline, so the stylizer builds its own image-text space: a small image
encoder is trained contrastively against the frozen MiniLM sentence encoder on pairs made
here. Each pair applies one named filter, with random parameters, to a photo and, half the
time, a colour treatment on top, and says what it did in words:

    styled, text = stylize_photo(photo, rng)       # e.g. "a watercolor painting in warm colors"

The filters are OpenCV's non-photorealistic renderers (`cv2.stylization`,
`cv2.pencilSketch`, `cv2.edgePreservingFilter`), k-means colour quantisation, a cartoon
(flat colours with dark edges) and FaceSynth's own flat cartoon faces; the colour
treatments are tints and hue shifts. `DESCRIPTIONS` lists every sentence a pair can carry.
"""
from __future__ import annotations

import itertools
from typing import Callable

import cv2
import numpy as np

WORK = 128          # filters run at this side (upsampled from 64 px), then shrink back


def _work(photo: np.ndarray) -> np.ndarray:
    return cv2.resize(photo, (WORK, WORK), interpolation=cv2.INTER_CUBIC) if photo.shape[0] < WORK else photo


def _back(image: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA) if image.shape[0] != side else image


def _pencil(photo, rng, colour: bool):
    grey, coloured = cv2.pencilSketch(photo, sigma_s=float(rng.uniform(20, 60)), sigma_r=float(rng.uniform(0.05, 0.12)),
                                      shade_factor=float(rng.uniform(0.02, 0.06)))
    return coloured if colour else np.repeat(grey[..., None], 3, 2)


def _quantise(photo, k: int, rng) -> np.ndarray:
    data = photo.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    cv2.setRNGSeed(int(rng.integers(1 << 30)))
    _, labels, centres = cv2.kmeans(data, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres.astype(np.uint8)[labels.ravel()].reshape(photo.shape)


def _cartoon(photo, rng):
    smooth = photo
    for _ in range(int(rng.integers(2, 4))):
        smooth = cv2.bilateralFilter(smooth, 7, float(rng.uniform(40, 90)), 7)
    flat = _quantise(smooth, int(rng.integers(5, 9)), rng)
    grey = cv2.medianBlur(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), 5)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9,
                                  float(rng.uniform(3, 7)))
    return np.where(edges[..., None] > 0, flat, (flat * 0.15).astype(np.uint8))


def _poster(photo, rng):
    return _quantise(cv2.GaussianBlur(photo, (0, 0), 1.0), int(rng.integers(3, 6)), rng)


def _watercolor(photo, rng):
    return cv2.stylization(photo, sigma_s=float(rng.uniform(30, 90)), sigma_r=float(rng.uniform(0.3, 0.6)))


def _oil(photo, rng):
    smooth = cv2.edgePreservingFilter(photo, flags=cv2.RECURS_FILTER, sigma_s=float(rng.uniform(40, 100)),
                                      sigma_r=float(rng.uniform(0.3, 0.6)))
    return cv2.detailEnhance(smooth, sigma_s=10, sigma_r=0.15)


def _mono(photo, rng):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    grey = cv2.convertScaleAbs(grey, alpha=float(rng.uniform(1.1, 1.5)), beta=float(rng.uniform(-40, -10)))
    return np.repeat(grey[..., None], 3, 2)


# name -> filter(photo at WORK px, rng) -> styled RGB uint8
FILTERS: dict[str, Callable] = {
    "pencil sketch": lambda p, r: _pencil(p, r, colour=False),
    "coloured pencil drawing": lambda p, r: _pencil(p, r, colour=True),
    "watercolor painting": _watercolor,
    "oil painting": _oil,
    "poster with flat colors": _poster,
    "cartoon with dark outlines": _cartoon,
    "black and white photo": _mono,
}


def _tint(image: np.ndarray, rgb: tuple[int, int, int], amount: float) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None] / 255.0
    toned = grey * np.asarray(rgb, np.float32)[None, None] * 1.15
    return np.clip((1 - amount) * image + amount * toned, 0, 255).astype(np.uint8)


def _hue(image: np.ndarray, shift: int) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + shift) % 180
    hsv[..., 1] = np.clip(hsv[..., 1].astype(np.int32) * 1.4 + 30, 0, 255)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# phrase -> treatment(image, rng); "" is none
COLOURS: dict[str, Callable] = {
    "": lambda im, r: im,
    " in warm colors": lambda im, r: _tint(im, (255, 170, 90), float(r.uniform(0.45, 0.7))),
    " in cool blue tones": lambda im, r: _tint(im, (90, 150, 255), float(r.uniform(0.45, 0.7))),
    " in sepia": lambda im, r: _tint(im, (200, 160, 110), float(r.uniform(0.7, 0.9))),
    " in green tones": lambda im, r: _tint(im, (110, 220, 120), float(r.uniform(0.45, 0.7))),
    " in pink and purple": lambda im, r: _hue(im, int(r.integers(120, 160))),
}

TEMPLATES = ("a {}", "a face as a {}", "a portrait, {}")
FACESYNTH = "flat cartoon face"                # FaceSynth's own look (not a filter of a photo)
NEUTRAL = "a photo of a face"                  # the direction's origin in the zero-shot loss

DESCRIPTIONS: list[str] = sorted({t.format(f + c) for t, f, c in itertools.product(TEMPLATES, [*FILTERS, FACESYNTH],
                                                                                       COLOURS)})


def apply(photo: np.ndarray, style: str, colour: str, rng: np.random.Generator) -> np.ndarray:
    """`photo` (H x H x 3 uint8) through the named filter and colour treatment, at its own side."""
    side = photo.shape[0]
    styled = FILTERS[style](_work(photo), rng)
    return _back(COLOURS[colour](styled, rng), side)


def facesynth_face(rng: np.random.Generator, side: int) -> np.ndarray:
    from ...synth import render
    return render(seed=int(rng.integers(1 << 20)), index=int(rng.integers(1000)), size=side, captions=0).image


def stylize_photo(photo: np.ndarray, rng: np.random.Generator, facesynth_share: float = 0.08) -> tuple[np.ndarray, str]:
    """One (styled image, description) pair from a photo: a random filter with random
    parameters, a colour treatment half the time, a random phrasing; now and then a
    FaceSynth cartoon face instead of the photo."""
    colour = str(rng.choice(list(COLOURS))) if rng.random() < 0.5 else ""
    template = str(rng.choice(TEMPLATES))
    if rng.random() < facesynth_share:
        image = _back(COLOURS[colour](_work(facesynth_face(rng, photo.shape[0])), rng), photo.shape[0])
        return image, template.format(FACESYNTH + colour)
    style = str(rng.choice(list(FILTERS)))
    return apply(photo, style, colour, rng), template.format(style + colour)


def parse_domain(spec: str) -> tuple[str, str]:
    """A named artistic domain "FILTER" or "FILTER+COLOUR" (e.g. "cartoon with dark
    outlines+ in warm colors" or, shorter, "cartoon+warm") -> (filter, colour phrase)."""
    from ...errors import FaceweaveError
    name, _, colour = spec.partition("+")
    filt = [f for f in FILTERS if f.startswith(name.strip().lower())]
    col = [c for c in COLOURS if c and colour.strip().lower() in c] if colour.strip() else [""]
    if len(filt) != 1 or len(col) != 1:
        raise FaceweaveError(f"unknown style domain {spec!r}; name a folder of style images or one of "
                             f"{', '.join(FILTERS)} (optionally +warm, +blue, +sepia, +green, +pink)")
    return filt[0], col[0]
