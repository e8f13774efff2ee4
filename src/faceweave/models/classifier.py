"""AttributeClassifier: a small ResNet that reads face attributes off an image (multi-label).

The second measuring instrument of the ruler: attribute / text consistency is the accuracy of
this network on generated images against the attributes that were asked for, and its
penultimate embedding (`features`) is the feature space of faceweave's Fréchet distance
(`fd`, never called FID), KID and diversity. Trained by `faceweave train classifier`, used
through `faceweave.ruler.load_classifier`.

    x (N, 3, H, W) in [-1, 1]  ->  logits (N, A), one per name in `attributes`
                               ->  features (N, D), D = channels[-1], before the linear head

A 3x3 stem, then one stage per entry of `channels` (the first at full resolution, every
later one halving it with a strided residual block), each of `blocks` pre-activation
basic blocks (He et al. 2016, "Identity Mappings in Deep Residual Networks"), then
BatchNorm + ReLU + global average pooling. Any input size works; the checkpoint records
the resolution it was trained at and `ruler.Classifier` resizes inputs to it.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FaceweaveError
from ..synth.params import FACESYNTH_ATTRIBUTES


@dataclasses.dataclass
class ClassifierConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256)                 # width per stage; stages after the first halve H, W
    blocks: int = 2                                                # residual blocks per stage
    attributes: tuple[str, ...] = FACESYNTH_ATTRIBUTES             # output names (CelebA attribute names)
    dropout: float = 0.0                                           # dropout on the pooled features while training

    def __post_init__(self) -> None:
        from ..conditions import canonical_attribute

        self.channels = tuple(int(c) for c in self.channels)
        self.attributes = tuple(canonical_attribute(a) for a in self.attributes)
        if not self.channels or min(self.channels) < 1 or self.blocks < 1 or not self.attributes:
            raise FaceweaveError(f"bad classifier config {dataclasses.asdict(self)}: need >= 1 stage, "
                                 "positive widths, blocks >= 1 and at least one attribute")
        if len(set(self.attributes)) != len(self.attributes):
            raise FaceweaveError("classifier attributes must not repeat")
        if not 0.0 <= self.dropout < 1.0:
            raise FaceweaveError(f"dropout must lie in [0, 1), got {self.dropout}")


# `tiny` is for tests; `s` is the shipped default at 64 px.
PRESETS: dict[str, ClassifierConfig] = {
    "tiny": ClassifierConfig(channels=(8, 16), blocks=1),
    "s": ClassifierConfig(channels=(32, 64, 128, 256), blocks=2, dropout=0.1),
    # a guide for training generators on real faces (train/guide.py): half the width, the
    # attributes real photos carry labels for (data.celebamask1k.DERIVED_ATTRIBUTES)
    "g": ClassifierConfig(channels=(16, 32, 64, 128), blocks=1, dropout=0.2,
                          attributes=("Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses",
                                      "Gray_Hair", "Male", "Mouth_Slightly_Open", "Wearing_Earrings",
                                      "Wearing_Hat", "Wearing_Necklace", "Young")),
}


class _Block(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(h)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h)))
        return h + skip


class AttributeClassifier(nn.Module):
    """Multi-label attribute classifier; `AttributeClassifier.from_config(PRESETS["s"])`."""

    def __init__(self, channels: tuple[int, ...] = ClassifierConfig.channels,
                 blocks: int = ClassifierConfig.blocks,
                 attributes: tuple[str, ...] = FACESYNTH_ATTRIBUTES, dropout: float = 0.0):
        super().__init__()
        self.config = ClassifierConfig(channels=tuple(channels), blocks=blocks,
                                       attributes=tuple(attributes), dropout=dropout)
        ch = self.config.channels
        self.stem = nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        layers = []
        for i, c in enumerate(ch):
            for j in range(blocks):
                c_in = (ch[0] if i == 0 else ch[i - 1]) if j == 0 else c
                layers.append(_Block(c_in, c, stride=2 if (i > 0 and j == 0) else 1))
        self.body = nn.Sequential(*layers)
        self.norm = nn.BatchNorm2d(ch[-1])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(ch[-1], len(self.config.attributes))

    @classmethod
    def from_config(cls, config: ClassifierConfig | dict) -> "AttributeClassifier":
        if isinstance(config, dict):
            config = ClassifierConfig(**config)
        return cls(**dataclasses.asdict(config))

    @property
    def attributes(self) -> tuple[str, ...]:
        return self.config.attributes

    @property
    def feature_dim(self) -> int:
        return self.config.channels[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, D) pooled penultimate features."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise FaceweaveError(f"the classifier takes (N, 3, H, W) images, got shape {tuple(x.shape)}")
        h = self.body(self.stem(x))
        return F.relu(self.norm(h)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> (N, A) logits (sigmoid gives probabilities)."""
        return self.head(self.dropout(self.features(x)))
