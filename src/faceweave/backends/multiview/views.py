"""Poses of faces: FaceSynth heads rendered at chosen yaws (exact pose), and a yaw read off a
photo's five dlib landmarks (estimated pose).

    image, mask = render_at_yaw(seed, index, 64, yaw=20.0)      # one head, any yaw in [-30, 30]
    yaw = estimate_yaw(photo)                                    # degrees, or a FaceweaveError

The estimator: dlib's 5-point model places both corners of each eye and the base of the
nose. Turning a head moves the nose base sideways relative to the middle of the eyes by about
r sin(yaw), where r is how far the nose base stands out from the eyes' plane; dividing by the
distance between the eye centres removes the face's scale. The ratio is mapped to degrees by
yaw = asin(clip(gain * ratio, -1, 1)) in degrees; `gain` (YAW_GAIN) is fitted by least
squares on FaceSynth renders whose yaw is known (`calibrate`), and the measured calibration
error is in docs/multiview.md. The sign follows FaceSynth's: a positive yaw moves the nose
base towards the image's right.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ...errors import FaceweaveError

# sin(yaw) per unit of (nose base offset / eye distance), fitted by `calibrate` on 300 FaceSynth
# test heads at 64 px (the model's size), yaws uniform in [-30, 30]: calibrate(300, 64) -> 1.948
# (benchmarks/multiview_eval.py --calibrate prints the fit and its errors)
YAW_GAIN = 1.948


def render_at_yaw(seed: int, index: int, size: int, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(image (S, S, 3) uint8, 19-class mask (S, S) uint8) of FaceSynth face (seed, index) turned
    to `yaw` degrees: the same head, hair, colours and texture noise as synth.render draws,
    only the yaw replaced (clipped to FaceSynth's [-30, 30])."""
    from ...synth import _rng, sample_params
    from ...synth.face import Painter

    rng = _rng(seed, index)
    params = sample_params(rng)
    params["yaw"] = float(np.clip(yaw, -30.0, 30.0))
    painter = Painter(params, size, rng)
    painter.paint()
    image = painter.cv.to_uint8()
    if params["attributes"]["Blurry"]:                     # as synth.render does
        k = max(3, size // 32) | 1
        image = cv2.blur(cv2.blur(image, (k, k)), (k, k))
    return image, painter.cv.label.copy()


def landmark_ratio(image: np.ndarray, aligned: bool = True) -> float:
    """(nose base x - eye-centres' midpoint x) / eye-centre distance, from dlib's 5 landmarks
    (points 0-1: one eye's corners, 2-3: the other's, 4: the nose base)."""
    from ...eval.faces import _rgb, instruments
    inst = instruments()
    rgb = _rgb(image, "the photo")
    work, rect, _ = inst._locate(rgb, "the photo", aligned)
    shape = inst.landmarks(work, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
    a, b = pts[0:2].mean(0), pts[2:4].mean(0)
    distance = float(np.linalg.norm(a - b))
    if distance < 1e-6:
        raise FaceweaveError("the photo's eye landmarks coincide; no pose can be read from it")
    return float((pts[4, 0] - (a[0] + b[0]) / 2) / distance)


def yaw_from_ratio(ratio: float, gain: float = YAW_GAIN) -> float:
    return math.degrees(math.asin(float(np.clip(gain * ratio, -1.0, 1.0))))


def estimate_yaw(image, aligned: bool = True) -> float:
    """The yaw of the face in `image` (uint8 RGB or a path), in degrees (FaceSynth's sign).
    aligned=True: an aligned face crop (the fixed face box when the detector misses it);
    aligned=False: a face must be detected, else a FaceweaveError saying so."""
    return yaw_from_ratio(landmark_ratio(image, aligned))


def calibrate(n: int = 300, size: int = 128, seed: int = 0) -> dict[str, float]:
    """Fit YAW_GAIN on n FaceSynth test heads at known yaws (uniform in [-30, 30]) and report
    the errors of the fitted mapping on them and on n fresh heads: {"gain", "fit_mae",
    "heldout_mae", "heldout_max", "n"} (degrees)."""
    from ...data.unified import facesynth_seed

    rng = np.random.default_rng(seed)

    def sample(first: int) -> tuple[np.ndarray, np.ndarray]:
        yaws = rng.uniform(-30, 30, n)
        ratios = np.array([landmark_ratio(render_at_yaw(facesynth_seed("test"), first + i, size, y)[0])
                           for i, y in enumerate(yaws)])
        return ratios, yaws

    ratios, yaws = sample(0)
    target = np.sin(np.radians(yaws))
    gain = float((ratios * target).sum() / (ratios * ratios).sum())
    fit = np.abs(np.array([yaw_from_ratio(r, gain) for r in ratios]) - yaws)
    held_r, held_y = sample(n)
    held = np.abs(np.array([yaw_from_ratio(r, gain) for r in held_r]) - held_y)
    return {"gain": gain, "fit_mae": float(fit.mean()), "heldout_mae": float(held.mean()),
            "heldout_max": float(held.max()), "n": n}
