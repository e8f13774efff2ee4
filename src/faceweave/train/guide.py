"""A guide parser: a mask loss for generators trained on real faces, through a network that is
not the ruler's.

Training a model to make faces whose parsed mask matches the mask it was given needs a parser
inside the loss. If that parser were one of the ruler's, the model could learn what fools the
ruler rather than the face's layout, and the mIoU it reports would flatter it. So the loss
reads the image with a *guide*: another architecture, trained from scratch on the training
split only (`faceweave train parser --preset guide64 --data celebamask1k:64`); bundled
parsers (the ruler) are refused.

The attribute loss works the same way with a guide classifier (`faceweave train classifier
--preset guide64 --data celebamask1k:64`: its own small network, from scratch, on the
training photos' labels), never a bundled classifier; the ruler reads gender and age with
dlib's networks and the rest off the parsed mask (eval/real.py).
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
        raise FaceweaveError("mask_weight, iou_weight and sampled_n need a guide parser: --set "
                             "guide_parser=runs/NAME/best (made by `faceweave train parser --preset guide64`)")
    name = Path(str(ref)).name
    if (name.startswith("parser-") and name in checkpoint.bundled_models()) or (ruler and str(ref) == str(ruler)):
        raise FaceweaveError(f"guide_parser={ref} is a parser of the ruler; train a guide of its own: "
                             "faceweave train parser --preset guide64")
    loaded = load_parser(ref, device=device)
    return loaded.model.eval().requires_grad_(False), loaded.size


def _at_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images brought to a guide's input side (bilinear; antialiased when shrinking)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size)


def _read(guide: tuple[nn.Module, int], images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The guide's logits (N, C, S, S) for `images` and the class ids `masks` (N, S, S), both
    at the guide's side S."""
    net, size = guide
    target = masks.long()
    if target.shape[-1] != size:
        target = F.interpolate(target[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    return net(_at_size(images, size)).float(), target


def guide_ce(guide: tuple[nn.Module, int], images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy (N,) between the guide's reading of `images` (N, 3, H, W) in
    [-1, 1] and the class ids `masks` (N, H', W'), both brought to the guide's size; gradients
    reach the images, not the guide."""
    logits, target = _read(guide, images, masks)
    return F.cross_entropy(logits, target, reduction="none").mean((1, 2))


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """1 - the soft mean IoU of class probabilities softmax(logits) (N, C, S, S) and the class
    ids `target` (N, S, S), over the whole batch as the ruler's mIoU is over the whole set: per
    class, the sum of p * t over the sum of p + t - p * t, averaged over the classes the
    (weighted) targets hold; `weights` (N,) scale each image's pixels (0: the image owes
    nothing). A pixel cross-entropy is ruled by the large classes (background, skin, hair); in
    mIoU, as here, an eye or a mouth counts as much as the background. 0 when no image counts."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    w = torch.ones(len(target), device=probs.device) if weights is None else weights.to(probs.dtype)
    w = w[:, None, None, None]
    inter = (probs * onehot * w).sum((0, 2, 3))
    union = ((probs + onehot - probs * onehot) * w).sum((0, 2, 3))
    held = (onehot * w).sum((0, 2, 3)) > 0
    if not bool(held.any()):
        return probs.sum() * 0
    return 1 - (inter[held] / union[held].clamp(min=1e-6)).mean()


def guide_mask_losses(guide: tuple[nn.Module, int], images: torch.Tensor, masks: torch.Tensor,
                      weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One reading by the guide, two losses: the weighted mean of the per-image cross-entropy
    (as guide_ce) and soft_iou_loss, each image counting by `weights` (N,)."""
    logits, target = _read(guide, images, masks)
    ce = F.cross_entropy(logits, target, reduction="none").mean((1, 2))
    return (ce * weights).mean(), soft_iou_loss(logits, target, weights)


def load_guide_classifier(ref, device) -> tuple[nn.Module, int]:
    """A guide attribute classifier's frozen network and its input size: the attribute loss of
    a generator trained on real faces. Bundled classifiers are refused, as bundled parsers are
    for the mask loss (the ruler reads attributes with its own instruments: eval/real.py)."""
    from .. import checkpoint
    from ..ruler import load_classifier

    if not ref:
        raise FaceweaveError("attr_weight needs a guide classifier: --set guide_classifier=runs/NAME/best "
                             "(made by `faceweave train classifier --preset guide64 --data celebamask1k:64`)")
    name = Path(str(ref)).name
    if name.startswith("classifier-") and name in checkpoint.bundled_models():
        raise FaceweaveError(f"guide_classifier={ref} is a bundled classifier; train a guide of its own: "
                             "faceweave train classifier --preset guide64 --data celebamask1k:64")
    loaded = load_classifier(ref, device=device)
    return loaded.model.eval().requires_grad_(False), loaded.size


def guide_bce(guide: tuple[nn.Module, int], images: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Per-image binary cross-entropy (N,) between the guide classifier's reading of `images`
    (N, 3, H, W) in [-1, 1] and the labels `attributes` (N, 40) in CelebA order (-1: unknown,
    left out), over the guide's own attributes; 0 for an image with none known. Gradients
    reach the images, not the guide."""
    from ..conditions import ATTRIBUTE_INDEX
    net, size = guide
    images = _at_size(images, size)
    cols = torch.tensor([ATTRIBUTE_INDEX[a] for a in net.attributes], device=attributes.device)
    target = attributes.index_select(1, cols).float()
    known = (target >= 0).float()
    bce = F.binary_cross_entropy_with_logits(net(images).float(), target.clamp(min=0), reduction="none")
    return (bce * known).sum(1) / known.sum(1).clamp(min=1)
