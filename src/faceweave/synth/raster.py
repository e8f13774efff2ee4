"""A tiny antialiased rasteriser with an exact label map, built for speed and bit-reproducibility.

Every layer of a FaceSynth portrait is a set of polygons painted back to front. For each
layer we rasterise its polygons once, at 4 x 4 supersampling inside the layer's bounding
box, and average down: that single coverage map gives both the antialiased image (alpha =
coverage) and the label map (the layer's class wins a pixel when it covers at least half of
it). So the label at a pixel is the class of the top-most surface over most of that pixel:
image and labels can never disagree by more than a partially covered edge pixel.

Reproducibility: the same inputs give the same bytes on any machine. Polygons are snapped
to a 1/16 sub-sample grid and filled with integer arithmetic (cv2.fillPoly), coverage is an
integer box average, noise comes from integer box blurs, and the float work is only IEEE
add/multiply/divide/sqrt (exactly rounded everywhere); no libm transcendental touches an array.
"""
from __future__ import annotations

import functools
import math

import cv2
import numpy as np

SUPERSAMPLE = 4          # sub-samples per pixel side for coverage
_SHIFT = 4               # cv2 fixed-point bits: vertices snapped to 1/16 of a sub-sample
_ONE = 1 << _SHIFT


@functools.lru_cache(maxsize=None)
def unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin of n equally spaced angles, from Python's math (scalar libm, no SIMD variants)."""
    cos = np.array([math.cos(2 * math.pi * k / n) for k in range(n)], dtype=np.float64)
    sin = np.array([math.sin(2 * math.pi * k / n) for k in range(n)], dtype=np.float64)
    return cos, sin


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32, angle: float = 0.0) -> np.ndarray:
    """(n, 2) polygon of an ellipse, optionally rotated by `angle` radians."""
    cos, sin = unit_circle(n)
    x, y = rx * cos, ry * sin
    if angle:
        ca, sa = math.cos(angle), math.sin(angle)
        x, y = x * ca - y * sa, x * sa + y * ca
    return np.stack([cx + x, cy + y], axis=1)


def _box_blur_int(a: np.ndarray, r: int) -> np.ndarray:
    """Integer box blur of radius r with wrap-around (exact, so identical on every machine)."""
    for axis in (0, 1):
        c = np.cumsum(np.concatenate([a.take(range(-r - 1, 0), axis=axis), a,
                                      a.take(range(0, r), axis=axis)], axis=axis), axis=axis)
        n = a.shape[axis]
        a = c.take(range(2 * r + 1, 2 * r + 1 + n), axis=axis) - c.take(range(0, n), axis=axis)
    return a


@functools.lru_cache(maxsize=8)
def noise_bank(size: int) -> dict[str, np.ndarray]:
    """Fixed noise textures for one image size (2x larger than the image, cropped at random offsets).

    'fine': pixel grain for skin and cloth; 'blotch': soft mottling; 'streak': noise
    stretched vertically, the look of hair strands. Values roughly zero-mean, unit-ish range.
    """
    rng = np.random.Generator(np.random.PCG64(20261121))
    n = 2 * size
    base = rng.integers(0, 256, size=(n, n), dtype=np.int64)
    out = {}
    fine = _box_blur_int(base, max(1, size // 128)).astype(np.float32)
    fine_cnt = float((2 * max(1, size // 128) + 1) ** 2)
    out["fine"] = (fine / fine_cnt - 127.5) / 64.0
    r = max(2, size // 16)
    blotch = _box_blur_int(_box_blur_int(base, r), r).astype(np.float32)
    cnt = float((2 * r + 1) ** 4)
    blotch = blotch / cnt - 127.5
    out["blotch"] = blotch / (np.abs(blotch).max() + 1e-6)
    # Hair streaks: blur along y only, then contrast-stretch.
    ry = max(2, size // 10)
    streak = base.copy()
    c = np.cumsum(np.concatenate([streak[-ry - 1:], streak, streak[:ry]], axis=0), axis=0)
    streak = (c[2 * ry + 1:2 * ry + 1 + n] - c[:n]).astype(np.float32) / float(2 * ry + 1) - 127.5
    out["streak"] = streak / (np.abs(streak).max() + 1e-6)
    return out


class Canvas:
    """An RGB float image in [0, 1] plus a uint8 label map, painted back to front.

    Coordinates are continuous pixels: the pixel (i, j) covers [j, j+1) x [i, i+1).
    """

    def __init__(self, size: int, rng: np.random.Generator):
        self.size = size
        self.img = np.zeros((size, size, 3), np.float32)
        self.label = np.zeros((size, size), np.uint8)
        bank = noise_bank(size)
        ox, oy = (int(v) for v in rng.integers(0, size, size=2))
        self.noise = {k: v[oy:oy + size, ox:ox + size] for k, v in bank.items()}

    # -- coverage -------------------------------------------------------------------------
    def _bbox(self, pts: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        (lo_x, lo_y), (hi_x, hi_y) = pts.min(axis=0).tolist(), pts.max(axis=0).tolist()
        x0 = max(int(math.floor(lo_x - pad)), 0)
        y0 = max(int(math.floor(lo_y - pad)), 0)
        x1 = min(int(math.ceil(hi_x + pad)), self.size)
        y1 = min(int(math.ceil(hi_y + pad)), self.size)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def coverage(self, polys, stroke: float = 0.0, closed: bool = True, roi=None):
        """Rasterise polygons (or polylines of width `stroke` px) -> (roi, uint8 coverage 0..255).

        With `stroke` > 0 the point lists are drawn as thick lines instead of filled.
        Returns (None, None) when nothing falls inside the canvas.
        """
        polys = [np.asarray(p, np.float64) for p in polys if len(p)]
        if not polys:
            return None, None
        if roi is None:
            roi = self._bbox(np.concatenate(polys), pad=stroke / 2 + 1)
            if roi is None:
                return None, None
        x0, y0, x1, y1 = roi
        s = SUPERSAMPLE
        buf = np.zeros(((y1 - y0) * s, (x1 - x0) * s), np.uint8)
        # Sub-sample k's centre sits at (k + 0.5) / s pixels; cv2 puts integer coords at centres.
        pts = [np.round(((p - (x0, y0)) * s - 0.5) * _ONE).astype(np.int32) for p in polys]
        if stroke > 0:
            cv2.polylines(buf, pts, closed, 255, max(1, int(round(stroke * s))), cv2.LINE_8, _SHIFT)
        else:
            cv2.fillPoly(buf, pts, 255, cv2.LINE_8, _SHIFT)
        cov = cv2.resize(buf, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        return roi, cov

    # -- painting -------------------------------------------------------------------------
    def paint(self, roi, cov, color, cls: int | None = None, opacity: float = 1.0,
              label_where=None) -> None:
        """Alpha-composite `color` (RGB triple or an ROI-shaped H x W x 3 field) with alpha = coverage.

        `cls` takes the pixels the layer covers by at least half. `label_where`, an
        ROI-shaped bool array, restricts which pixels the label may take.
        """
        if roi is None:
            return
        x0, y0, x1, y1 = roi
        if cls is not None:
            take = cov >= 128
            if label_where is not None:
                take &= label_where
            self.label[y0:y1, x0:x1][take] = cls
        alpha = cov.astype(np.float32) * np.float32(opacity / 255.0)
        region = self.img[y0:y1, x0:x1]
        region += (np.asarray(color, np.float32) - region) * alpha[..., None]

    def fill(self, polys, color, cls: int | None = None, opacity: float = 1.0, clip=None,
             stroke: float = 0.0, closed: bool = True, label_where=None):
        """Rasterise and paint in one call; `clip` = (roi, cov) of a shape to stay inside.

        `color` may be a callable roi -> colour field. Returns (roi, cov) for reuse as a clip.
        """
        roi, cov = self.coverage(polys, stroke=stroke, closed=closed)
        if roi is None:
            return None, None
        if clip is not None:
            cov = self.intersect(roi, cov, clip)
        if callable(color):
            color = color(roi)
        self.paint(roi, cov, color, cls=cls, opacity=opacity, label_where=label_where)
        return roi, cov

    def intersect(self, roi, cov, clip):
        """Coverage of (roi, cov) limited to the clip shape (product of coverages)."""
        croi, ccov = clip
        if croi is None:
            return np.zeros_like(cov)
        x0, y0, x1, y1 = roi
        out = np.zeros(cov.shape, np.uint16)
        ix0, iy0, ix1, iy1 = max(x0, croi[0]), max(y0, croi[1]), min(x1, croi[2]), min(y1, croi[3])
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = ccov[iy0 - croi[1]:iy1 - croi[1],
                                                             ix0 - croi[0]:ix1 - croi[0]]
        return ((cov.astype(np.uint16) * out + 127) // 255).astype(np.uint8)

    def blob(self, cx: float, cy: float, rx: float, ry: float, color, opacity: float, clip=None):
        """A soft round spot (blush, shadow, highlight): alpha falls off as (1 - d^2)^2.

        Spots under half a pixel across cannot be seen and are skipped (a large share of the
        render time at 64 px).
        """
        if rx < 0.5 and ry < 0.5:
            return
        roi = self._bbox(np.array([[cx - rx, cy - ry], [cx + rx, cy + ry]]), pad=1)
        if roi is None:
            return
        x0, y0, x1, y1 = roi
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / rx
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) / ry
        d2 = ys[:, None] ** 2 + xs[None, :] ** 2
        a = np.clip(1.0 - d2, 0.0, 1.0) ** 2
        cov = np.round(a * 255.0).astype(np.uint8)
        if clip is not None:
            cov = self.intersect(roi, cov, clip)
        self.paint(roi, cov, color, opacity=opacity)

    def field(self, roi, base, shade=None, tex: str | None = None, amount: float = 0.0):
        """Colour field for an ROI: base RGB x shading (H x W) x (1 + amount x texture)."""
        x0, y0, x1, y1 = roi
        f = np.empty((y1 - y0, x1 - x0, 3), np.float32)
        f[:] = np.asarray(base, np.float32)
        m = None
        if shade is not None:
            m = shade[y0:y1, x0:x1]
        if tex is not None and amount:
            t = 1.0 + np.float32(amount) * self.noise[tex][y0:y1, x0:x1]
            m = t if m is None else m * t
        if m is not None:
            f *= m[..., None]
        return f

    def to_uint8(self) -> np.ndarray:
        return np.clip(self.img * 255.0 + 0.5, 0, 255).astype(np.uint8)
