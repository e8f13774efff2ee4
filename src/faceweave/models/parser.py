"""FaceParser: a small UNet that labels every pixel with one of the 19 CelebAMask-HQ classes.

The parser is one of faceweave's measuring instruments ("the ruler"): the mask
consistency of a generated image is the agreement between the mask that was asked for and
the mask this network reads off the image. It is trained by `faceweave train parser`
(FaceSynth by default, a unified folder such as CelebAMask-HQ when given) and used through
`faceweave.ruler.load_parser`.

    x (N, 3, H, W) in [-1, 1]  ->  logits (N, 19, H, W)

An encoder of `len(channels)` levels (two 3x3 conv + BatchNorm + ReLU each, 2x max-pool
between levels), a decoder that upsamples bilinearly and concatenates the encoder's skip
features (Ronneberger et al. 2015, "U-Net"), and a 1x1 classifier at full resolution. Fully
convolutional: H and W need only be divisible by 2 ** (levels - 1); the checkpoint records
the resolution it was trained at and `ruler.Parser` resizes inputs to it.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..conditions import NUM_CLASSES
from ..errors import FaceweaveError


@dataclasses.dataclass
class ParserConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256)   # feature width per level; each level halves H and W
    blocks: int = 2                                    # 3x3 conv layers per level, in encoder and decoder
    num_classes: int = NUM_CLASSES                     # output classes (CelebAMask-HQ's 19)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 2 or min(self.channels) < 1 or self.blocks < 1 or self.num_classes < 2:
            raise FaceweaveError(f"bad parser config {dataclasses.asdict(self)}: need >= 2 levels, "
                                 "positive widths, blocks >= 1 and num_classes >= 2")


# Named architectures. `tiny` is for tests (a few thousand weights); `s` is the shipped
# default at 64 px; `s128`, the 128 px default, adds a level (the same receptive field in
# face units) and narrows the full-resolution one (about 1.5x the cost per image of `s`).
# `g` is a guide, not a ruler: half the width of `s`, trained from scratch on real photos to
# give the GAN mapper a mask loss through a network the ruler does not share.
PRESETS: dict[str, ParserConfig] = {
    "tiny": ParserConfig(channels=(8, 16), blocks=1),
    "s": ParserConfig(channels=(32, 64, 128, 256), blocks=2),
    "s128": ParserConfig(channels=(16, 32, 64, 128, 256), blocks=2),
    "g": ParserConfig(channels=(16, 32, 64, 128), blocks=2),
}


def _conv_stack(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(blocks):
        layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class FaceParser(nn.Module):
    """UNet face parser; `FaceParser(**dataclasses.asdict(config))` or `FaceParser.from_config`."""

    def __init__(self, channels: tuple[int, ...] = ParserConfig.channels,
                 blocks: int = ParserConfig.blocks, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.config = ParserConfig(channels=tuple(channels), blocks=blocks, num_classes=num_classes)
        ch = self.config.channels
        self.down = nn.ModuleList([_conv_stack(3 if i == 0 else ch[i - 1], c, blocks)
                                   for i, c in enumerate(ch)])
        # decoder level i takes the upsampled level i+1 output concatenated with skip i
        self.up = nn.ModuleList([_conv_stack(ch[i + 1] + ch[i], ch[i], blocks)
                                 for i in range(len(ch) - 1)])
        self.head = nn.Conv2d(ch[0], num_classes, 1)

    @classmethod
    def from_config(cls, config: ParserConfig | dict) -> "FaceParser":
        if isinstance(config, dict):
            config = ParserConfig(**config)
        return cls(**dataclasses.asdict(config))

    @property
    def multiple(self) -> int:
        """Input sides must be divisible by this."""
        return 2 ** (len(self.config.channels) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise FaceweaveError(f"the parser takes (N, 3, H, W) images with H and W divisible by "
                                 f"{self.multiple}, got shape {tuple(x.shape)}")
        skips = []
        for i, stage in enumerate(self.down):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        return self.head(x)
