"""GANEncoder: a feed-forward GAN inversion encoder, image -> StyleGAN2 W+ code.

    E = GANEncoder.from_config(PRESETS["s"])     # built by `faceweave train gan_encoder`
    wplus = E(images)                             # (N, 3, S, S) in [-1, 1] -> (N, num_ws, w_dim)
    recon, _ = G([wplus], input_is_latent=True, randomize_noise=False)

The design follows the two encoders most inversion work builds on, scaled down for 64 px
faces on a CPU:
- pSp (Richardson et al. 2021, "Encoding in Style"): a strided residual backbone whose
  last three levels form a feature pyramid, merged top-down (coarse features upsampled and
  added to the finer ones, as in a feature pyramid network), and one small "map-to-style"
  head per W+ entry: strided convolutions down to 1x1, then a linear layer. Each W+ entry
  reads the pyramid level that matches the resolution it controls in the generator:
  entries at the generator's full resolution read the finest map, those at 1/2 and 1/4 of
  it the middle one, coarser ones the deepest map.
- e4e (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation"): the code
  is one shared w plus per-entry offsets, w_i = w_avg + base + delta_i. The shared part
  comes from its own head on the deepest map; the deltas can then be kept small with an
  L2 penalty (the task's `delta_weight`), which keeps codes near W, where editing works,
  while still letting each entry move when reconstruction needs it.
Every head's final linear layer starts at zero, so an untrained encoder returns w_avg (the
generator's average face) for every input: training starts from the best constant guess.
w_avg is a buffer copied from the generator when training starts, saved with the weights.

Layers are plain convolutions with GroupNorm (per image: an image's code never depends on
the rest of the batch) and leaky ReLU; no equalized learning rate is needed for a network
trained with Adam from a standard initialisation.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FaceweaveError


@dataclasses.dataclass
class GANEncoderConfig:
    size: int = 64                                     # input side = the generator's resolution (power of two)
    num_ws: int = 10                                   # W+ entries of the generator (2 log2(size) - 2)
    w_dim: int = 256                                   # the generator's latent width
    channels: tuple[int, ...] = (32, 64, 96, 128, 160)  # full-resolution stem, then one stride-2 level each
    blocks: int = 1                                    # residual blocks per level (the first one strides)
    fpn_width: int = 128                               # width of the three pyramid maps after the top-down merge
    head_width: int = 64                               # width of the map-to-style heads' strided convolutions
    generator: dict | None = None                      # the StyleGAN2 config it inverts (recorded by training)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        levels = len(self.channels) - 1
        log = math.log2(self.size) if self.size > 0 else 0.5
        if len(self.channels) < 4 or min(self.channels) < 1:
            raise FaceweaveError(f"bad encoder channels {self.channels}: need a stem and >= 3 levels of positive width")
        if log != int(log) or self.size < 2 ** levels:
            raise FaceweaveError(f"encoder size must be a power of two >= {2 ** levels} (one halving per level), "
                                 f"got {self.size}")
        if self.num_ws < 4 or self.num_ws % 2:
            raise FaceweaveError(f"num_ws must be an even number >= 4 (a StyleGAN2 W+ length), got {self.num_ws}")
        if min(self.w_dim, self.blocks, self.fpn_width, self.head_width) < 1:
            raise FaceweaveError(f"bad encoder config {dataclasses.asdict(self)}: sizes must be positive")

    def style_levels(self) -> list[int]:
        """Which pyramid map each W+ entry reads: 0 fine, 1 medium, 2 coarse.

        Entry j feeds the generator's layers at 4 * 2**ceil(j / 2) px (the last entry only
        the final toRGB, at full resolution)."""
        top = (self.num_ws - 2) // 2
        res = [min((j + 1) // 2, top) for j in range(self.num_ws)]     # log2(resolution / 4)
        return [0 if r == top else 1 if r >= top - 2 else 2 for r in res]


# `tiny` is for tests; `s` inverts the bundled 64 px StyleGAN2 (about 2.5 M weights).
PRESETS: dict[str, GANEncoderConfig] = {
    "tiny": GANEncoderConfig(size=32, num_ws=8, w_dim=32, channels=(8, 16, 16, 32), fpn_width=16, head_width=16),
    "s": GANEncoderConfig(size=64, num_ws=10, w_dim=256, channels=(32, 64, 96, 128, 160), fpn_width=128,
                          head_width=64),
}


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class ResidualBlock(nn.Module):
    """conv-norm-act-conv-norm + shortcut (average-pooled and 1x1-projected when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _norm(cout),
                                    nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _norm(cout))
        self.shortcut = nn.Sequential(*([nn.AvgPool2d(stride)] if stride > 1 else []),
                                      *([nn.Conv2d(cin, cout, 1, bias=False)] if cin != cout else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.branch(x) + self.shortcut(x), 0.2)


class MapToStyle(nn.Module):
    """A pyramid map (N, C, side, side) -> one latent (N, w_dim): log2(side) stride-2 convs to
    1x1, then a linear layer that starts at zero (so the encoder starts at w_avg)."""

    def __init__(self, cin: int, width: int, w_dim: int, side: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(max(0, int(math.log2(side)))):
            layers += [nn.Conv2d(cin if i == 0 else width, width, 3, 2, 1), nn.LeakyReLU(0.2)]
        if not layers:                                   # a 1x1 map: only a channel projection
            layers = [nn.Conv2d(cin, width, 1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(width, w_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).mean((2, 3)))


class GANEncoder(nn.Module):
    """Image -> W+ = w_avg + shared base + per-entry deltas; see the module docstring."""

    def __init__(self, config: GANEncoderConfig):
        super().__init__()
        self.config = c = config
        ch = c.channels
        self.stem = nn.Sequential(nn.Conv2d(3, ch[0], 3, 1, 1, bias=False), _norm(ch[0]), nn.LeakyReLU(0.2))
        self.levels = nn.ModuleList(
            nn.Sequential(*[ResidualBlock(ch[i] if b == 0 else ch[i + 1], ch[i + 1], 2 if b == 0 else 1)
                            for b in range(c.blocks)])
            for i in range(len(ch) - 1))
        # the pyramid is the output of the last three levels: fine, medium, coarse
        self.lateral = nn.ModuleList(nn.Conv2d(ch[-3 + k], c.fpn_width, 1) for k in range(3))
        sides = [c.size // 2 ** (len(ch) - 3 + k) for k in range(3)]
        self.heads = nn.ModuleList(MapToStyle(c.fpn_width, c.head_width, c.w_dim, sides[level])
                                   for level in c.style_levels())
        self.base = MapToStyle(c.fpn_width, c.head_width, c.w_dim, sides[2])
        self.register_buffer("w_avg", torch.zeros(c.w_dim))     # copied from the generator at build

    @classmethod
    def from_config(cls, config: dict | GANEncoderConfig) -> GANEncoder:
        return cls(config if isinstance(config, GANEncoderConfig) else GANEncoderConfig(**config))

    def pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(fine, medium, coarse) maps of fpn_width channels, merged top-down."""
        x = self.stem(x)
        outs = []
        for level in self.levels:
            x = level(x)
            outs.append(x)
        fine, medium, coarse = (lat(o) for lat, o in zip(self.lateral, outs[-3:]))
        medium = medium + F.interpolate(coarse, size=medium.shape[-2:], mode="bilinear", align_corners=False)
        fine = fine + F.interpolate(medium, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return [fine, medium, coarse]

    def forward(self, images: torch.Tensor, return_deltas: bool = False):
        """(N, 3, size, size) in [-1, 1] -> W+ (N, num_ws, w_dim); with return_deltas, also the
        per-entry offsets from the shared code (N, num_ws, w_dim), what e4e's L2 term shrinks."""
        c = self.config
        if images.ndim != 4 or images.shape[1:] != (3, c.size, c.size):
            raise FaceweaveError(f"the GAN encoder takes (N, 3, {c.size}, {c.size}) images in [-1, 1], "
                                 f"got shape {tuple(images.shape)}; resize them to {c.size} px first")
        maps = self.pyramid(images)
        base = self.base(maps[2])                                                  # (N, w_dim)
        deltas = torch.stack([head(maps[level]) for head, level in zip(self.heads, c.style_levels())], 1)
        wplus = self.w_avg.to(base.dtype) + base[:, None] + deltas
        return (wplus, deltas) if return_deltas else wplus
