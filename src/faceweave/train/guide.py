"""A guide parser: a mask loss for generators trained on real faces, through a network that is
not the ruler's.

Training a model to make faces whose parsed mask matches the mask it was given needs a parser
inside the loss. If that parser were one of the ruler's, the model could learn what fools the
ruler rather than the face's layout, and the mIoU it reports would flatter it. So the loss
reads the image with a *guide*: another architecture, trained from scratch on the training
split only (`faceweave train parser --preset guide64 --data celebamask1k:64`); bundled
parsers (the ruler) are refused.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FaceweaveError


def load_guide(ref, device, *, ruler: str | None = None) -> tuple[nn.Module, int]:
    """The guide's frozen network and its input size. `ruler`: a further parser it must not be
    (the run's validation parser)."""
    from .. import checkpoint
    from ..ruler import load_parser

    if not ref:
        raise FaceweaveError("mask_weight needs a guide parser: --set guide_parser=runs/NAME/best "
                             "(made by `faceweave train parser --preset guide64`)")
    name = Path(str(ref)).name
    if (name.startswith("parser-") and name in checkpoint.bundled_models()) or (ruler and str(ref) == str(ruler)):
        raise FaceweaveError(f"guide_parser={ref} is a parser of the ruler; train a guide of its own: "
                             "faceweave train parser --preset guide64")
    loaded = load_parser(ref, device=device)
    return loaded.model.eval().requires_grad_(False), loaded.size


def guide_ce(guide: tuple[nn.Module, int], images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy (N,) between the guide's reading of `images` (N, 3, H, W) in
    [-1, 1] and the class ids `masks` (N, H', W'), both brought to the guide's size; gradients
    reach the images, not the guide."""
    net, size = guide
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > size)
    target = masks.long()
    if target.shape[-1] != size:
        target = F.interpolate(target[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    return F.cross_entropy(net(images).float(), target, reduction="none").mean((1, 2))
