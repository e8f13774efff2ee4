"""InceptionV3 as FID uses it, in plain torch, for standard FID/KID with the user's own weights.

No Inception weights can be downloaded where faceweave is developed, so nothing here fetches
any: `load_inception(FILE)` reads a weights file the user brings, e.g. pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth` (the TensorFlow FID graph ported to PyTorch) or the
same tensors converted to safetensors. A .pth is read only with
`torch.load(weights_only=True)`, which refuses pickled code.

The network is the FID variant (Heusel et al. 2017's TF graph, as pytorch-fid rebuilds it):
torchvision's Inception3 layout, but
  * the average pools inside the A, C and first E blocks leave the zero padding out of the
    mean (`count_include_pad=False`, as TensorFlow pools), and
  * the last E block (Mixed_7c) max-pools in its pool branch.
Parameter names match those files, so they load as they are. Features are the 2048-d
output of the final average pool ("pool3"); images are resized to 299 x 299 bilinearly and
scaled to [-1, 1], as pytorch-fid does (clean-fid and torch-fidelity resize differently, so
FIDs from different tools differ slightly; compare FIDs from one tool only).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FaceweaveError

FEATURE_DIM = 2048
INPUT_SIZE = 299
# Tensors in the weight files that pool3 features do not use: the 1008-way logits of the
# FID graph (1000-way in torchvision's ImageNet weights) and the auxiliary classifier.
_UNUSED_PREFIXES = ("fc.", "AuxLogits.")


class _Conv(nn.Module):
    """Conv (no bias) + BatchNorm (eps 1e-3, TF's) + ReLU: torchvision's BasicConv2d."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool whose mean leaves the zero padding out, as TensorFlow's does."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 5x5 | double 3x3 | pool, at 35 x 35."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = _Conv(c_in, 64, 1)
        self.branch5x5_1 = _Conv(c_in, 48, 1)
        self.branch5x5_2 = _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _BlockB(nn.Module):
    """Mixed_6a: strided reduction 35 -> 17."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = _Conv(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(c_in, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    """Mixed_6b..6e: factorised 7x7 convolutions at 17 x 17."""

    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = _Conv(c_in, 192, 1)
        self.branch7x7_1 = _Conv(c_in, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(c_in, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _BlockD(nn.Module):
    """Mixed_7a: strided reduction 17 -> 8."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = _Conv(c_in, 192, 1)
        self.branch3x3_2 = _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(c_in, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """Mixed_7b/7c: expanded filter banks at 8 x 8. `max_pool`: the FID graph's Mixed_7c
    max-pools in its pool branch (pytorch-fid keeps this quirk; so must we, to match)."""

    def __init__(self, c_in: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(c_in, 320, 1)
        self.branch3x3_1 = _Conv(c_in, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(c_in, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        three = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(three), self.branch3x3_2b(three),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3(nn.Module):
    """The FID InceptionV3 up to pool3: (N, 3, 299, 299) in [-1, 1] -> (N, 2048)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b = _BlockA(192, pool_features=32)
        self.Mixed_5c = _BlockA(256, pool_features=64)
        self.Mixed_5d = _BlockA(288, pool_features=64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b = _BlockC(768, c7=128)
        self.Mixed_6c = _BlockC(768, c7=160)
        self.Mixed_6d = _BlockC(768, c7=160)
        self.Mixed_6e = _BlockC(768, c7=192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))

    @torch.inference_mode()
    def features(self, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) -> (N, 2048) float64 pool3 features, pytorch-fid's preprocessing."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise FaceweaveError(f"Inception features need uint8 RGB images (N, H, W, 3), got "
                                 f"shape {images.shape} dtype {images.dtype}")
        self.eval()
        out = []
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            x = x.permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
            out.append(self(2.0 * x - 1.0).double().numpy())
        return np.concatenate(out)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from .pth/.pt/.bin through torch.load(weights_only=True)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FaceweaveError(f"{path} is not a readable safetensors file ({exc}); "
                                 "pass InceptionV3 FID weights (.safetensors or .pth)") from None
    if suffix in (".pth", ".pt", ".bin"):
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses pickled code with a bare Exception subclass
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FaceweaveError(f"{path} cannot be read as plain tensors ({first[:160]}); pass a "
                                 "state dict of InceptionV3 FID weights (pytorch-fid's .pth) or a "
                                 ".safetensors file") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise FaceweaveError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; "
                                 "pass InceptionV3 FID weights (pytorch-fid's .pth)")
        return state
    raise FaceweaveError(f"{path}: unknown weights format {suffix or '(no suffix)'!r}; "
                         "pass a .safetensors or .pth file of InceptionV3 FID weights")


def load_inception(path: str | os.PathLike) -> tuple[InceptionV3, list[str]]:
    """(network with the weights of `path`, warnings about them). Checks every tensor that pool3
    features use is present with the right shape, and names what is missing otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FaceweaveError(f"Inception weights file {path} does not exist; pass the path of "
                             "pytorch-fid's pt_inception-2015-12-05-6726825d.pth or a .safetensors copy")
    state = _read_tensors(path)
    model = InceptionV3()
    own = model.state_dict()
    needed = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in state]
    if missing:
        blocks = list(dict.fromkeys(k.split(".")[0] for k in missing))
        named = ", ".join(blocks[:4]) + (f" and {len(blocks) - 4} more" if len(blocks) > 4 else "")
        raise FaceweaveError(f"{path} is not InceptionV3 FID weights: {len(missing)} of {len(needed)} "
                             f"tensors are missing, in {named} (e.g. {missing[0]}); pass pytorch-fid's "
                             "pt_inception-2015-12-05-6726825d.pth or a .safetensors copy of it")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in needed
             if state[k].shape != own[k].shape]
    if wrong:
        raise FaceweaveError(f"{path} is not InceptionV3 FID weights: {len(wrong)} tensors have the wrong "
                             f"shape (e.g. {wrong[0]})")
    unexpected = [k for k in state if k not in own and not k.startswith(_UNUSED_PREFIXES)]
    if unexpected:
        raise FaceweaveError(f"{path} holds {len(unexpected)} tensors InceptionV3 does not have "
                             f"(e.g. {', '.join(unexpected[:3])}); is it another network?")
    model.load_state_dict({k: state[k].float() for k in needed}, strict=False)
    notes = []
    logits = state.get("fc.weight")
    if logits is not None and logits.shape[0] != 1008:
        notes.append(f"{path.name} has {logits.shape[0]} output classes, not the 1008 of the FID "
                     "graph: these look like ImageNet classification weights, so its 'fid' is not "
                     "comparable with published FIDs")
    return model.eval(), notes
