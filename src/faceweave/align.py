"""Face alignment for real photos: find the face, cut it out upright, and put the edit back.

The GAN backend edits real photos by inverting a crop of the face, so the crop must be framed
the way the training faces were. Three steps:

1. **Detect** the face and five landmarks with MTCNN (Zhang et al., "Joint Face Detection and
   Alignment using Multi-task Cascaded Convolutional Networks", IEEE SPL 2016). MTCNN is a
   cascade of three tiny CNNs. P-Net is fully convolutional: slid over an image pyramid it
   scores every 12x12 window and proposes boxes. R-Net (24x24 input) rejects most of those
   and refines the survivors. O-Net (48x48) gives the final score, box and five landmarks.
   Between stages, boxes are regressed, made square and pruned with non-maximum
   suppression. The networks are re-declared here in plain PyTorch. The pretrained weights
   are the state dicts that ship in the `facenet-pytorch` wheel (data/pnet.pt, rnet.pt,
   onet.pt). That package is never imported: its __init__ imports torchvision, which this
   project must not depend on. Only its data files are read.
2. **Align** with the recipe used to build FFHQ (Karras et al., "A Style-Based Generator
   Architecture for Generative Adversarial Networks", CVPR 2019). Only the eye centre and
   the mouth centre matter. The crop's "up" axis is the eye-to-mouth direction, tilted by
   the eye line. Its half-side is the larger of 2x the eye distance and 1.8x the eye-to-mouth
   distance. Its centre sits a tenth of the eye-to-mouth vector below the eye centre. The
   result is an oriented square (a quad) in the photo, warped to `size` x `size`. `scale`
   and `shift` change the framing: the defaults frame real photos like FaceSynth faces (see
   FACESYNTH_SCALE).
3. **Paste back**: warp the edited crop back with the inverse transform and blend it in
   with a feathered elliptical mask of the face. Every photo pixel where the mask is zero
   (everything outside the ellipse, and so everything outside the quad) keeps its exact
   bytes.

Coordinates are OpenCV's: x to the right, y down, and the centre of the top-left pixel at
(0, 0). "Left" and "right" landmarks are the image's left and right (the viewer's), so
"left eye" is the person's right eye in an ordinary, unmirrored photo.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .errors import FaceweaveError
from .io import MIN_PHOTO_SIDE    # below it no face has enough pixels for P-Net's 12 px window plus context

__all__ = [
    "FACESYNTH_SCALE",
    "FACESYNTH_SHIFT",
    "Aligned",
    "Face",
    "align_face",
    "detect_faces",
    "face_mask",
    "ffhq_quad",
    "nms",
    "paste_back",
    "quad_to_matrix",
]

DETECTOR_PACKAGE = "facenet-pytorch==2.6.0"
_INSTALL_HINT = f"pip install --no-deps {DETECTOR_PACKAGE}"

# Photos are scaled down to this longest side for detection only. At this size MTCNN
# still finds faces down to ~2% of the frame, and larger pyramids only cost time.
DETECT_MAX_SIDE = 1024

# Framing that puts real faces where FaceSynth draws them. Measured on the bundled data:
#   FaceSynth, exact label maps (200 renders): eye distance 0.230 of the side, eyes at 0.476
#     of the height, face region (skin + features) 0.272 of the area.
#   Real CelebAMask-HQ pairs with FFHQ framing, their exact label maps: eye distance 0.238,
#     eyes at 0.478, face region 0.302. The mouth sits lower (0.734 against 0.700): real
#     faces are longer from eyes to mouth, and no similarity transform can change that.
#   MTCNN landmarks, FFHQ framing: eye distance 0.250 on 32 real photos, 0.220 on FaceSynth.
# The eye height already matches, so the shift stays FFHQ's 0.1. The size ratios asked for
# by the measures are 1.04 (eye distance, masks), 1.05 (face area, masks), 1.07 (face area,
# bundled parser on real crops) and 1.14 (eye distance, MTCNN). Their geometric mean, 1.07,
# makes the quad 7% larger than FFHQ's, so the face fills a little less of the crop.
FACESYNTH_SCALE = 1.07
FACESYNTH_SHIFT = 0.1

# MTCNN's usual settings: per-stage score thresholds, pyramid step (~sqrt(0.5), so each
# level halves the area) and the NMS overlaps from the original release.
_THRESHOLDS = (0.6, 0.7, 0.7)
_PYRAMID_FACTOR = 0.709


# ---------------------------------------------------------------------------------------
# The three networks. Parameter names match the state dicts in the facenet-pytorch wheel.
# ---------------------------------------------------------------------------------------

def _flatten_wh(x: torch.Tensor) -> torch.Tensor:
    # The original MTCNN was trained in MATLAB/Caffe on transposed (column-major) images.
    # The converted convolution kernels were transposed to work on row-major images, but the
    # dense layers still expect features flattened in (width, height, channel) order.
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class _PNet(nn.Module):
    """Proposal net: fully convolutional, one 12x12 window per output cell (stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)   # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)   # box offsets

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class _RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu4(self.dense4(_flatten_wh(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class _ONet(nn.Module):
    """Output net on 48x48 crops: score, box offsets and five landmarks."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)   # x of the 5 points, then y of the 5 points

    def forward(self, x):
        x = nn.functional.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu5(self.dense5(_flatten_wh(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def _weights_dir() -> Path:
    """The folder of MTCNN weights inside the installed facenet-pytorch, without importing it."""
    # find_spec on a top-level name only locates the package; it does not run its __init__.
    spec = importlib.util.find_spec("facenet_pytorch")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        data = Path(folder) / "data"
        if all((data / f"{n}.pt").is_file() for n in ("pnet", "rnet", "onet")):
            return data
    if folders:
        raise FaceweaveError(f"facenet-pytorch is installed but has no MTCNN weights in "
                             f"{folders[0]}/data; reinstall it: {_INSTALL_HINT}")
    raise FaceweaveError(f"face alignment needs the MTCNN weights from facenet-pytorch, which "
                         f"is not installed; install it with: {_INSTALL_HINT}")


@functools.lru_cache(maxsize=1)
def _mtcnn() -> tuple[_PNet, _RNet, _ONet]:
    data = _weights_dir()
    nets = (_PNet(), _RNet(), _ONet())
    for net, name in zip(nets, ("pnet", "rnet", "onet")):
        # weights_only: these are plain state dicts from a pinned wheel; never unpickle code.
        state = torch.load(data / f"{name}.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval().requires_grad_(False)
    return nets


# ---------------------------------------------------------------------------------------
# Box utilities
# ---------------------------------------------------------------------------------------

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    boxes are N x 4 (x1, y1, x2, y2). A box is dropped when its overlap with an already kept,
    higher-scoring box exceeds `threshold`. The overlap is intersection over union
    ("union"), or intersection over the smaller box ("min"). O-Net uses "min" to remove a
    small box that sits inside a bigger box of the same face.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    x1, y1, x2, y2 = boxes.T
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        overlap = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each box edge by its predicted offset, given in units of the box width/height."""
    wh = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2]] * 2, axis=1)
    return boxes + offsets * wh


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre; the next stage's input is square."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _to_input(patches: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W in [-1, 1), MTCNN's normalisation."""
    x = torch.from_numpy(np.ascontiguousarray(patches)).permute(0, 3, 1, 2).float()
    return (x - 127.5) / 128.0


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut each box out of img (zero outside the image, as MTCNN was trained) at size x size."""
    h, w = img.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(np.int64)):
        bw, bh = max(int(x2 - x1), 1), max(int(y2 - y1), 1)
        patch = np.zeros((bh, bw, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = img[sy1:sy2, sx1:sx2]
        interp = cv2.INTER_AREA if bw > size else cv2.INTER_LINEAR
        out[k] = cv2.resize(patch, (size, size), interpolation=interp)
    return out


def _batched(net: nn.Module, x: torch.Tensor, batch: int = 256):
    outs = [net(x[i:i + batch]) for i in range(0, len(x), batch)]
    return [torch.cat(parts).numpy().astype(np.float64) for parts in zip(*outs)]


# ---------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Face:
    """One detected face, in the pixel coordinates of the photo it was found in.

    box: (x1, y1, x2, y2). score: O-Net's face probability. landmarks: 5 x 2 (x, y), in the order
    left eye, right eye, nose tip, left mouth corner, right mouth corner. Left and right
    are the image's (the viewer's), not the person's.
    """
    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


def _check_rgb(rgb, what: str = "photo", min_side: int = MIN_PHOTO_SIDE) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise FaceweaveError(f"{what} must be a numpy array (H x W x 3 uint8 RGB), got "
                             f"{type(rgb).__name__}; read files with faceweave.io.read_image")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FaceweaveError(f"{what} must be H x W x 3 RGB, got shape {rgb.shape}; read files "
                             f"with faceweave.io.read_image, which converts grey/alpha/CMYK to RGB")
    if rgb.dtype != np.uint8:
        raise FaceweaveError(f"{what} must be uint8 (0..255), got {rgb.dtype}; convert it, e.g. "
                             f"np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1]")
    if min(rgb.shape[:2]) < min_side:
        raise FaceweaveError(f"{what} is too small ({rgb.shape[1]}x{rgb.shape[0]} px) to find a "
                             f"face in; use a photo at least {min_side} px on each side")
    return np.ascontiguousarray(rgb)   # cv2 refuses flipped (negative-stride) views


def detect_faces(rgb: np.ndarray, min_face_size: int = 20, thresholds=_THRESHOLDS,
                 max_side: int = DETECT_MAX_SIDE) -> list[Face]:
    """All faces MTCNN finds in an H x W x 3 uint8 RGB photo, highest score first.

    min_face_size is in pixels of the (possibly downscaled) detection image. Photos with a
    side above max_side are detected at a smaller size and the results mapped back.
    """
    rgb = _check_rgb(rgb)
    pnet, rnet, onet = _mtcnn()
    h0, w0 = rgb.shape[:2]
    ratio = min(1.0, max_side / max(h0, w0))
    img = rgb
    if ratio < 1.0:
        img = cv2.resize(rgb, (max(1, round(w0 * ratio)), max(1, round(h0 * ratio))),
                         interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    t_p, t_r, t_o = thresholds

    with torch.inference_mode():
        # Stage 1: P-Net over a pyramid. Level s shows faces of 12/s px as 12 px windows.
        proposals = []
        scale = 12.0 / min_face_size
        while min(h, w) * scale >= 12:
            sw, sh = math.ceil(w * scale), math.ceil(h * scale)
            level = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            reg, prob = pnet(_to_input(level[None]))
            prob, reg = prob[0].numpy(), reg[0].numpy()
            ys, xs = np.nonzero(prob >= t_p)
            if len(ys):
                # Output cell (i, j) sees the 12x12 window at (2j, 2i) of this level.
                x1, y1 = 2.0 * xs / scale, 2.0 * ys / scale
                boxes = np.stack([x1, y1, x1 + 12 / scale, y1 + 12 / scale], axis=1)
                cand = np.concatenate([boxes, prob[ys, xs, None], reg[:, ys, xs].T], axis=1)
                proposals.append(cand[nms(cand[:, :4], cand[:, 4], 0.5)])
            scale *= _PYRAMID_FACTOR
        if not proposals:
            return []
        cand = np.concatenate(proposals)
        cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
        boxes = _square(_regress(cand[:, :4], cand[:, 5:9]))

        # Stage 2: R-Net rejects most proposals and refines the rest.
        offsets, prob = _batched(rnet, _to_input(_crops(img, boxes, 24)))
        ok = prob > t_r
        boxes, prob, offsets = boxes[ok], prob[ok], offsets[ok]
        if not len(boxes):
            return []
        keep = nms(boxes, prob, 0.7)
        boxes = _square(_regress(boxes[keep], offsets[keep]))

        # Stage 3: O-Net gives the final score, box and landmarks.
        offsets, points, prob = _batched(onet, _to_input(_crops(img, boxes, 48)))
        ok = prob > t_o
        boxes, prob, offsets, points = boxes[ok], prob[ok], offsets[ok], points[ok]
        if not len(boxes):
            return []
        # Landmarks are fractions of the box O-Net saw (before its own regression).
        wh = boxes[:, 2:4] - boxes[:, 0:2]
        marks = np.stack([boxes[:, None, 0] + points[:, :5] * wh[:, None, 0],
                          boxes[:, None, 1] + points[:, 5:] * wh[:, None, 1]], axis=2)
        boxes = _regress(boxes, offsets)
        keep = nms(boxes, prob, 0.7, mode="min")

    # Back to the original photo's pixels (pixel centres scale about the -0.5 edge).
    def back(v):
        return (v + 0.5) / ratio - 0.5 if ratio < 1.0 else v

    return [Face(box=back(boxes[k]), score=float(prob[k]), landmarks=back(marks[k]))
            for k in keep]


# ---------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------

def ffhq_quad(landmarks: np.ndarray, scale: float = 1.0, shift: float = 0.1) -> np.ndarray:
    """The oriented square to crop, from 5 landmarks: corners top-left, top-right,
    bottom-right, bottom-left (4 x 2, photo pixels).

    FFHQ's recipe: the eye centre and mouth centre give the face's axes. The crop's x axis
    is the eye-to-eye vector, averaged with the eye-to-mouth vector turned by 90 degrees, so
    a tilted eye line and a tilted face outline both count. The half-side is
    max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|) * scale. The centre is
    eye_centre + shift * eye_to_mouth. scale=1, shift=0.1 is FFHQ exactly.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_l, eye_r, _, mouth_l, mouth_r = lm
    eye_c = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = (mouth_l + mouth_r) / 2 - eye_c
    # (x, y) -> (y, -x) turns the downward eye-to-mouth vector to point right, along eye_to_eye.
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    norm = np.hypot(*x)
    if norm < 1e-6:
        raise FaceweaveError("the face landmarks are degenerate (eyes and mouth coincide); use "
                             "a photo with a clearly visible face")
    x = x / norm * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth)) * scale
    y = np.array([-x[1], x[0]])            # x turned 90 degrees: down the face
    c = eye_c + eye_to_mouth * shift
    return np.stack([c - x - y, c + x - y, c + x + y, c - x + y])


def quad_to_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """3 x 3 similarity taking the quad's corners to the corners of a size x size crop.

    Corners are pixel edges: the quad's top-left corner lands on (-0.5, -0.5), the outer edge
    of the crop's first pixel.
    """
    src = np.asarray(quad, dtype=np.float64)[:3].astype(np.float32)
    dst = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5]], np.float32)
    m = np.eye(3)
    m[:2] = cv2.getAffineTransform(src, dst)
    return m


@dataclasses.dataclass
class Aligned:
    """An aligned face crop and everything needed to put an edit of it back.

    image: size x size x 3 uint8 crop. matrix: 3 x 3 transform from photo pixels to crop
    pixels (apply to (x, y, 1)). quad: the crop's corners in the photo (top-left, top-right,
    bottom-right, bottom-left). face: the detection used. photo_shape: (H, W) of the photo.
    warning: empty, or one line on something the caller may want to tell the user (several
    faces, face cut by the photo border).
    """
    image: np.ndarray
    matrix: np.ndarray
    quad: np.ndarray
    face: Face
    photo_shape: tuple[int, int]
    faces_found: int = 1
    warning: str = ""

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates (N x 2) -> crop pixel coordinates."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return p @ self.matrix[:2, :2].T + self.matrix[:2, 2]


def _warp_crop(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp photo -> crop with anti-aliasing when the crop is much smaller than the quad."""
    zoom = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))     # crop px per photo px
    if zoom < 0.5:
        # Bilinear warping a big quad down to 64 px would alias. Area-shrink the photo first
        # so the last warp scales by at most ~2, and fold the shrink into the matrix.
        f = 2.0 * zoom
        small = cv2.resize(rgb, (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / rgb.shape[1], small.shape[0] / rgb.shape[0]
        # small pixel = (photo pixel + 0.5) * s - 0.5
        shrink = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        rgb, matrix = small, matrix @ np.linalg.inv(shrink)
    # Reflect the photo beyond its border, as FFHQ pads, so a face near the edge still gives
    # the inverter a natural-looking crop. paste_back never writes those pixels anyway.
    return cv2.warpAffine(rgb, matrix[:2], (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def align_face(rgb: np.ndarray, size: int = 128, scale: float = FACESYNTH_SCALE,
               shift: float = FACESYNTH_SHIFT, name: str = "the photo",
               min_face_size: int = 20) -> Aligned:
    """Detect the largest face in an H x W x 3 uint8 photo and return it aligned at size x size.

    scale/shift set the framing (see ffhq_quad). The defaults match FaceSynth, which our models
    are trained on. scale=1, shift=0.1 gives FFHQ's framing. `name` is used in error messages.
    """
    rgb = _check_rgb(rgb, what=name)
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise FaceweaveError(f"aligned size must be an integer of at least 8 px, got {size!r}")
    faces = detect_faces(rgb, min_face_size=min_face_size)
    if not faces:
        raise FaceweaveError(f"no face found in {name} ({rgb.shape[1]}x{rgb.shape[0]} px); use "
                             f"a photo where the face is clearly visible, roughly frontal and "
                             f"at least ~40 px across")
    face = max(faces, key=lambda f: f.area)
    notes = []
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found in {name}; aligned the largest "
                     f"(box {np.round(face.box).astype(int).tolist()})")
    quad = ffhq_quad(face.landmarks, scale=scale, shift=shift)
    matrix = quad_to_matrix(quad, int(size))
    image = _warp_crop(rgb, matrix, int(size))
    # How much of the crop lies outside the photo (filled by reflection).
    h, w = rgb.shape[:2]
    inside = cv2.fillConvexPoly(np.zeros((h, w), np.uint8), np.round(quad).astype(np.int32), 1)
    side = np.hypot(*(quad[1] - quad[0]))
    outside = 1.0 - float(inside.sum()) / max(side * side, 1.0)
    if outside > 0.1:
        notes.append(f"the face is close to the border of {name}: {outside:.0%} of the crop is "
                     f"mirrored padding")
    return Aligned(image=image, matrix=matrix, quad=quad, face=face, photo_shape=(h, w),
                   faces_found=len(faces), warning="; ".join(notes))


# ---------------------------------------------------------------------------------------
# Paste back
# ---------------------------------------------------------------------------------------

# The blended face region in crop coordinates (fractions of the side): an ellipse around
# where FaceSynth-framed faces sit (eyes ~0.48, mouth ~0.70-0.72 of the height, face region
# ~0.25..0.75 wide). It runs from the forehead to just under the chin and takes in a little
# hair and cheek for the feather. It stays well off the crop's border, so the blend never
# reaches the quad's edge.
_MASK_CENTRE = (0.5, 0.54)
_MASK_RADII = (0.32, 0.40)


def face_mask(size: int, feather: float = 0.25) -> np.ndarray:
    """size x size float32 blend weights: 1 inside the face ellipse, then a smooth ramp of
    width `feather` (a fraction of the ellipse radius) down to exactly 0 at the ellipse."""
    feather = float(np.clip(feather, 1e-3, 1.0))
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    dx = (c[None, :] - _MASK_CENTRE[0]) / _MASK_RADII[0]
    dy = (c[:, None] - _MASK_CENTRE[1]) / _MASK_RADII[1]
    r = np.sqrt(dx * dx + dy * dy)                  # 1 on the ellipse
    t = np.clip((1.0 - r) / feather, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no kink at either end


def _custom_mask(mask, size: int, feather: float) -> np.ndarray:
    """A caller's crop-space mask made safe to blend: resized, softened, zero near the border."""
    m = np.asarray(mask, dtype=np.float32)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise FaceweaveError(f"paste mask must be a square 2-D array of weights in [0, 1], got "
                             f"shape {m.shape}; pass e.g. (parser_mask > 0) as float")
    if m.shape[0] != size:
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    m = np.clip(m, 0.0, 1.0)
    sigma = max(feather, 1e-3) * size / 6
    m = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    # Force zero on a 2 px frame: a bilinear inverse warp then reads only zeros for any photo
    # pixel outside the quad, which is what keeps those pixels bitwise unchanged.
    m[:2], m[-2:], m[:, :2], m[:, -2:] = 0, 0, 0, 0
    return m


def paste_back(photo: np.ndarray, aligned: Aligned, edited_crop: np.ndarray,
               feather: float = 0.25, mask: np.ndarray | None = None) -> np.ndarray:
    """The photo with `edited_crop` (an edit of aligned.image) blended back into the face.

    edited_crop may be any square size: it is resized to the aligned crop's size. The blend
    weights are face_mask(size, feather), or, when given, `mask`: square crop-space weights in
    [0, 1] (e.g. the parsed face region), Gaussian-blurred with sigma = feather * size / 6. Pixels where the
    weight is zero are returned bitwise unchanged. That includes every pixel outside the crop
    quad.
    """
    photo = _check_rgb(photo, what="photo", min_side=1)
    if tuple(photo.shape[:2]) != tuple(aligned.photo_shape):
        raise FaceweaveError(f"paste_back got a {photo.shape[1]}x{photo.shape[0]} photo but the "
                             f"face was aligned in a {aligned.photo_shape[1]}x"
                             f"{aligned.photo_shape[0]} one; paste into the photo you aligned")
    edited = _check_rgb(edited_crop, what="edited crop", min_side=1)
    if edited.shape[0] != edited.shape[1]:
        raise FaceweaveError(f"edited crop must be square, got {edited.shape[1]}x{edited.shape[0]}; "
                             f"pass the generator's output for the aligned crop")
    size = aligned.size
    if edited.shape[0] != size:
        edited = cv2.resize(edited, (size, size), interpolation=cv2.INTER_AREA
                            if edited.shape[0] > size else cv2.INTER_CUBIC)
    weights = face_mask(size, feather) if mask is None else _custom_mask(mask, size, feather)

    # Work only on the quad's bounding box in the photo; elsewhere nothing can change.
    h, w = photo.shape[:2]
    x0, y0 = np.floor(aligned.quad.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(aligned.quad.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # Photo ROI pixel -> crop pixel: shift the ROI origin, then the alignment matrix.
    to_crop = aligned.matrix @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    roi_size = (int(x1 - x0), int(y1 - y0))
    alpha = cv2.warpAffine(weights, to_crop[:2], roi_size, flags=flags,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    face = cv2.warpAffine(edited.astype(np.float32), to_crop[:2], roi_size, flags=flags,
                          borderMode=cv2.BORDER_REPLICATE)
    roi = out[y0:y1, x0:x1]
    a = alpha[..., None]
    blended = np.clip(np.rint(roi.astype(np.float32) * (1 - a) + face * a), 0, 255).astype(np.uint8)
    # Write only where the weight is positive, so zero-weight pixels keep their exact bytes
    # (no float round trip).
    touch = alpha > 0
    roi[touch] = blended[touch]
    return out
