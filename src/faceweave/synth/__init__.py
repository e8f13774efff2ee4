"""FaceSynth: procedural face portraits with exact labels, an endless data set we render ourselves.

`render(seed, index, size)` returns the image, the exact 19-class label map, a line sketch,
the attributes (CelebA names -> 0/1), paraphrased captions and the render parameters. The
same (seed, index, size) gives identical bytes on every machine.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from ..conditions import check_size
from ..errors import FaceweaveError
from .face import Painter
from .params import FACESYNTH_ATTRIBUTES, sample_params

__all__ = ["FaceSample", "render", "FACESYNTH_ATTRIBUTES", "sample_params"]


@dataclasses.dataclass
class FaceSample:
    image: np.ndarray          # H x W x 3 uint8 RGB
    mask: np.ndarray           # H x W uint8 class ids (CelebAMask-HQ order)
    sketch: np.ndarray         # H x W uint8, lines 255 on 0
    attributes: dict           # CelebA name -> 0/1, for every attribute FaceSynth renders
    captions: list             # paraphrased MM-CelebA-HQ-style captions
    params: dict               # everything the render drew (JSON-able)


def _rng(seed: int, index: int) -> np.random.Generator:
    if seed < 0 or index < 0:
        raise FaceweaveError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index)])))


def _sketch(painter: Painter) -> np.ndarray:
    """Part boundaries of the label map plus the detail lines that lie on visible parts."""
    from ..io import sketch_from_mask

    label = painter.cv.label
    sketch = sketch_from_mask(label)
    S = label.shape[0]
    width = max(1, S // 128)
    for pts, cls, closed in painter.sketch_lines:
        buf = np.zeros_like(sketch)
        cv2.polylines(buf, [np.round(pts * 16 - 8).astype(np.int32)], closed, 255, width, cv2.LINE_8, 4)
        if cls is not None:
            buf[label != cls] = 0
        np.maximum(sketch, buf, out=sketch)
    return sketch


def render(seed: int, index: int, size: int = 128, captions: int = 5) -> FaceSample:
    """Render sample `index` of the FaceSynth stream `seed` at `size` x `size` pixels."""
    size = check_size(size)
    rng = _rng(seed, index)
    params = sample_params(rng)
    painter = Painter(params, size, rng)
    painter.paint()
    image = painter.cv.to_uint8()
    if params["attributes"]["Blurry"]:
        k = max(3, size // 32) | 1
        image = cv2.blur(cv2.blur(image, (k, k)), (k, k))
    extras = {"hair_color": params["hair_color"], "eye_color": params["eye_color"],
              "skin_tone": params["skin_tone_name"], "hat_style": params["hat_style"],
              "cloth_color": params["cloth_color"]}
    attrs = dict(params["attributes"])
    texts = []
    if captions:
        from ..text import captions_from_attributes
        texts = captions_from_attributes(attrs, rng, n=captions, extras=extras)
    return FaceSample(image=image, mask=painter.cv.label.copy(), sketch=_sketch(painter),
                      attributes=attrs, captions=texts, params=params)
