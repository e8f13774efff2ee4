"""Mask and sketch autoencoders: the spatial embeddings MM2Latent's mapper reads.

MM2Latent (Meng, Tzelepis, Patras & Tzimiropoulos, ECCV 2024 workshops) does not feed raw
label maps or line drawings to its mapping network. It first trains one small autoencoder
per spatial modality and hands the mapper the encoders' bottleneck codes: a compact grid
that keeps where things are (unlike a global vector) at a fraction of the pixels. Here:

    MaskAutoencoder    mask (N, H, W) int64 class ids  -> code (N, C, H/f, W/f) -> logits (N, 19, H, W)
    SketchAutoencoder  sketch (N, 1, H, W) in [0, 1]   -> code (N, C, H/f, W/f) -> logits (N, 1, H, W)

f = 2 ** len(channels) (8 for the presets: a 64 px mask becomes an 8 x 8 x code_channels
grid). The sketch follows the repository's convention (faceweave.io, data/unified.py):
lines are 1, paper is 0. Both networks are fully convolutional, so one trained at 64 px
encodes 128 px inputs too (to a 16 x 16 grid).

Encoder: a 3x3 stem, then per level a stride-2 3x3 conv and `blocks` residual blocks
(GroupNorm + SiLU, per-sample, so a row's code never depends on the rest of the batch),
then a 1x1 conv to code_channels and tanh. The tanh keeps codes in (-1, 1), so the mapper
sees inputs of a fixed range whatever scale the autoencoder drifted to during training.
The decoder mirrors it with nearest-neighbour 2x upsampling. Losses are small functions:
cross-entropy for masks, BCE with a positive-class weight for sketches (lines cover a few
per cent of the pixels; unweighted BCE learns to draw nothing).

    ae = MaskAutoencoder.from_config(MASK_PRESETS["s"])
    loss, parts = mask_ae_loss(ae, masks)
    codes = ae.encode(masks)                                # what the mapper reads
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...conditions import NUM_CLASSES
from ...errors import FaceweaveError

KINDS = ("mask", "sketch")


@dataclasses.dataclass
class ModalityAEConfig:
    kind: str = "mask"                              # "mask" (class-id maps) or "sketch" (line maps); picks the class
    channels: tuple[int, ...] = (32, 48, 64)        # encoder width per level; each level halves H and W
    code_channels: int = 8                          # channels of the bottleneck code the mapper reads
    blocks: int = 1                                 # residual blocks per level, in encoder and decoder
    groups: int = 8                                 # GroupNorm groups (capped by the width)
    num_classes: int = NUM_CLASSES                  # mask classes (CelebAMask-HQ's 19); sketches ignore it

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.kind not in KINDS:
            raise FaceweaveError(f"unknown autoencoder kind {self.kind!r}; use 'mask' or 'sketch'")
        if (not self.channels or min(self.channels) < 1 or self.code_channels < 1 or self.blocks < 0
                or self.groups < 1 or self.num_classes < 2):
            raise FaceweaveError(f"bad autoencoder config {dataclasses.asdict(self)}: need >= 1 level, "
                                 "positive widths and code_channels, blocks >= 0, num_classes >= 2")

    @property
    def factor(self) -> int:
        """Downsampling from input to code (input sides must be divisible by it)."""
        return 2 ** len(self.channels)


# Named architectures per kind. `tiny` is for tests (a few thousand weights, 4 x 4 codes at
# 32 px); `s` is the default at 64 px (about 0.39 M weights): an 8 x 8 x 8 code, 512
# numbers for 4096 pixels; at 128 px the same network gives 16 x 16 x 8.
MASK_PRESETS: dict[str, ModalityAEConfig] = {
    "tiny": ModalityAEConfig(kind="mask", channels=(8, 8, 16), code_channels=4, blocks=0, groups=4),
    "s": ModalityAEConfig(kind="mask", channels=(32, 48, 64), code_channels=8, blocks=1),
}
SKETCH_PRESETS: dict[str, ModalityAEConfig] = {
    "tiny": ModalityAEConfig(kind="sketch", channels=(8, 8, 16), code_channels=4, blocks=0, groups=4),
    "s": ModalityAEConfig(kind="sketch", channels=(32, 48, 64), code_channels=8, blocks=1),
}
PRESETS: dict[str, dict[str, ModalityAEConfig]] = {"mask": MASK_PRESETS, "sketch": SKETCH_PRESETS}


class _Res(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        g = math.gcd(groups, ch)
        self.block = nn.Sequential(nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                   nn.GroupNorm(g, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class _ConvAutoencoder(nn.Module):
    """The shared body. A subclass sets `kind` and defines `_channels()` (input and output
    channels: the one-hot classes or the single line channel) and `_prepare(x)` (checks the
    input and turns it into those channels)."""

    kind = ""            # "mask" or "sketch", set by the subclass

    def __init__(self, channels: tuple[int, ...] = ModalityAEConfig.channels,
                 code_channels: int = ModalityAEConfig.code_channels, blocks: int = ModalityAEConfig.blocks,
                 groups: int = ModalityAEConfig.groups, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.config = cfg = ModalityAEConfig(kind=self.kind, channels=tuple(channels), code_channels=code_channels,
                                             blocks=blocks, groups=groups, num_classes=num_classes)
        ch = cfg.channels
        g = cfg.groups
        enc: list[nn.Module] = [nn.Conv2d(self._channels(), ch[0], 3, padding=1)]
        prev = ch[0]
        for c in ch:
            enc += [nn.GroupNorm(math.gcd(g, prev), prev), nn.SiLU(), nn.Conv2d(prev, c, 3, stride=2, padding=1)]
            enc += [_Res(c, g) for _ in range(cfg.blocks)]
            prev = c
        enc += [nn.GroupNorm(math.gcd(g, prev), prev), nn.SiLU(), nn.Conv2d(prev, cfg.code_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_channels, ch[-1], 3, padding=1)]
        for i in reversed(range(len(ch))):
            c_out = ch[i - 1] if i > 0 else ch[0]
            dec += [_Res(ch[i], g) for _ in range(cfg.blocks)]
            dec += [nn.GroupNorm(math.gcd(g, ch[i]), ch[i]), nn.SiLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(ch[i], c_out, 3, padding=1)]
        dec += [nn.GroupNorm(math.gcd(g, ch[0]), ch[0]), nn.SiLU(), nn.Conv2d(ch[0], self._channels(), 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @classmethod
    def from_config(cls, config: ModalityAEConfig | dict) -> _ConvAutoencoder:
        if isinstance(config, dict):
            config = ModalityAEConfig(**config)
        if config.kind != cls.kind:
            raise FaceweaveError(f"{cls.__name__} needs a '{cls.kind}' config, got kind '{config.kind}'")
        args = dataclasses.asdict(config)
        del args["kind"]                                # fixed by the class
        return cls(**args)

    @property
    def factor(self) -> int:
        return self.config.factor

    def code_shape(self, size: int) -> tuple[int, int, int]:
        """(C, h, w) of the code of a size x size input."""
        return (self.config.code_channels, size // self.factor, size // self.factor)

    def _check_sides(self, x: torch.Tensor, what: str) -> None:
        if x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise FaceweaveError(f"the {self.kind} autoencoder takes {what} with H and W divisible by "
                                 f"{self.factor}, got shape {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs -> codes (N, code_channels, H / factor, W / factor) in (-1, 1)."""
        return torch.tanh(self.encoder(self._prepare(x)))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Codes -> logits at factor x the code's side."""
        if code.ndim != 4 or code.shape[1] != self.config.code_channels:
            raise FaceweaveError(f"the {self.kind} decoder takes codes (N, {self.config.code_channels}, h, w), "
                                 f"got shape {tuple(code.shape)}")
        return self.decoder(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class MaskAutoencoder(_ConvAutoencoder):
    """mask (N, H, W) int64 class ids -> one-hot -> code -> logits (N, num_classes, H, W)."""

    kind = "mask"

    def _channels(self) -> int:
        return self.config.num_classes

    def _prepare(self, mask: torch.Tensor) -> torch.Tensor:
        k = self.config.num_classes
        if mask.ndim != 3 or mask.dtype != torch.int64:
            raise FaceweaveError(f"the mask autoencoder takes (N, H, W) int64 class ids, got shape "
                                 f"{tuple(mask.shape)} dtype {mask.dtype}")
        self._check_sides(mask, "(N, H, W) masks")
        if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) >= k):
            raise FaceweaveError(f"mask class ids must lie in 0..{k - 1}, got {int(mask.min())}..{int(mask.max())}")
        dtype = self.encoder[0].weight.dtype
        return F.one_hot(mask, k).permute(0, 3, 1, 2).to(dtype)


class SketchAutoencoder(_ConvAutoencoder):
    """sketch (N, 1, H, W) in [0, 1], lines = 1 -> code -> line logits (N, 1, H, W)."""

    kind = "sketch"

    def _channels(self) -> int:
        return 1

    def _prepare(self, sketch: torch.Tensor) -> torch.Tensor:
        if sketch.ndim != 4 or sketch.shape[1] != 1 or not sketch.is_floating_point():
            raise FaceweaveError(f"the sketch autoencoder takes (N, 1, H, W) float sketches in [0, 1] "
                                 f"(lines = 1), got shape {tuple(sketch.shape)} dtype {sketch.dtype}")
        self._check_sides(sketch, "(N, 1, H, W) sketches")
        # centred input: the stem's bias need not learn to cancel a mostly-zero page
        return sketch.to(self.encoder[0].weight.dtype) * 2 - 1


def build_autoencoder(config: ModalityAEConfig | dict) -> _ConvAutoencoder:
    """A config (or its dict, e.g. from config.json) -> MaskAutoencoder or SketchAutoencoder by `kind`."""
    kind = config["kind"] if isinstance(config, dict) else config.kind
    if kind not in KINDS:
        raise FaceweaveError(f"unknown autoencoder kind {kind!r}; use 'mask' or 'sketch'")
    return (MaskAutoencoder if kind == "mask" else SketchAutoencoder).from_config(config)


# --- losses and metrics -------------------------------------------------------------------

def mask_ae_loss(model: MaskAutoencoder, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-pixel cross-entropy of the reconstruction; parts: ce, pixel_acc."""
    logits = model(mask).float()
    ce = F.cross_entropy(logits, mask)
    acc = (logits.argmax(1) == mask).float().mean()
    return ce, {"ce": float(ce.detach()), "pixel_acc": float(acc)}


def sketch_ae_loss(model: SketchAutoencoder, sketch: torch.Tensor,
                   pos_weight: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE with logits against the line map (> 0.5 is a line); parts: bce, pos_weight, line_frac.

    pos_weight multiplies the loss of line pixels. None measures it on the batch as
    sqrt(paper / line pixels): the full ratio balances the classes but teaches the decoder
    to draw thick lines to be safe; its square root keeps thin lines and still stops the
    all-paper solution (about 3.5 for FaceSynth's 64 px sketches, where ~7 % are lines).
    """
    logits = model(sketch).float()
    target = (sketch > 0.5).float()
    if pos_weight is None:
        lines = float(target.sum())
        pos_weight = math.sqrt((target.numel() - lines) / lines) if lines else 1.0
        pos_weight = min(max(pos_weight, 1.0), 30.0)
    bce = F.binary_cross_entropy_with_logits(logits, target,
                                             pos_weight=torch.tensor(pos_weight, device=logits.device))
    return bce, {"bce": float(bce.detach()), "pos_weight": float(pos_weight), "line_frac": float(target.mean())}


@torch.no_grad()
def mask_ae_scores(model: MaskAutoencoder, mask: torch.Tensor) -> dict[str, float]:
    """Reconstruction agreement (eval.metrics.mask_scores): miou, pixel_acc."""
    from ...eval.metrics import mask_scores

    pred = model(mask).argmax(1)
    scores = mask_scores(pred.cpu().numpy().astype(np.uint8), mask.cpu().numpy().astype(np.uint8),
                         num_classes=model.config.num_classes)
    return {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"]}


@torch.no_grad()
def sketch_ae_scores(model: SketchAutoencoder, sketch: torch.Tensor,
                     tolerance_px: float | None = None) -> dict[str, float]:
    """Reconstructed lines (logit > 0) against the input's (> 0.5): the tolerant edge F-score
    of eval.metrics (tolerance: sketch_tolerance_px of the input size unless given) and the
    strict pixel IoU of the two line sets."""
    from ...eval.metrics import sketch_fscore, sketch_tolerance_px

    pred = (model(sketch) > 0)[:, 0].cpu().numpy()
    target = (sketch > 0.5)[:, 0].cpu().numpy()
    if tolerance_px is None:
        tolerance_px = sketch_tolerance_px(sketch.shape[-1])
    scores = sketch_fscore(pred, target, tolerance_px)
    union = int((pred | target).sum())
    iou = float((pred & target).sum() / union) if union else 1.0
    return {"fscore": scores["fscore"], "precision": scores["precision"], "recall": scores["recall"], "iou": iou}
