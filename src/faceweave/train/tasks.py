"""Model families as data: what `train/loop.py` needs to know about each one.

A task is a small object with
    family          the checkpoint family name ("parser", ...)
    architectures   named model configs (the family's PRESETS in models/)
    presets         named training recipes: {name: {"arch": ..., "size": ..., "lr": ..., ...}}
    build(config)   model config dict -> nn.Module
    loss(model, batch, cfg)        -> (scalar loss, {name: float} to log)
    evaluate(model, batches, cfg)  -> {name: float}; `score` (higher is better) picks `best/`
    needs           sample keys the data set must provide
    unused_parameters  (optional, default False) True when a step may leave some parameters
                    without a gradient; multi-process (DDP) training then looks for them
A new family adds one class (beside its method: backends/<method>/train.py) and one line in
train/registry.py; the loop, checkpoints, resume and logging stay as they are. Every key of a preset can be overridden
(`train(..., overrides={...})`, the CLI's --batch-size/--lr/--max-steps).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..conditions import ATTRIBUTE_INDEX
from ..eval.metrics import attribute_accuracy, mask_scores
from ..models import classifier as classifier_models
from ..models import parser as parser_models

# What every recipe has; a family's presets override these.
COMMON_DEFAULTS: dict[str, Any] = {
    "batch_size": 32,         # images per optimizer step (all processes together)
    "lr": 1e-3,               # peak AdamW learning rate, reached after warmup_steps
    "min_lr_ratio": 0.05,     # cosine decay from lr to lr * min_lr_ratio at max_steps
    "weight_decay": 1e-4,     # AdamW decoupled weight decay
    "betas": [0.9, 0.999],    # AdamW betas
    "warmup_steps": 200,      # linear warmup from 0
    "max_steps": 10_000,      # total optimizer steps (a resumed run continues up to this)
    "grad_clip": 1.0,         # max global gradient norm (0: off)
    "grad_accum": 1,          # micro-batches per optimizer step (batch_size / grad_accum images each)
    "ema_decay": 0.0,         # weight EMA (0: off); validation, best/ and exports use the average
    "ckpt_every": 500,        # write OUT/last every N steps (and at the end)
    "eval_every": 500,        # validate every N steps (and at the end); 0: only at the end
    "log_every": 50,          # one metrics.jsonl line every N steps
    "val_n": 256,             # validation images (FaceSynth val split, or a folder's "val" split)
    "init": None,             # start from this checkpoint's weights (same family and architecture;
                              # e.g. a model trained at a lower resolution); optimizer starts fresh
    "workers": 1,             # DataLoader worker processes (1: render while the main process trains)
    "seed": 0,                # weight init and data order
    "channels_last": True,    # NHWC memory layout: faster convolutions on CPUs and tensor cores
    "mixed_precision": "auto",  # "auto": bf16 on CUDA, fp32 on CPU; or "no" / "bf16" / "fp16"
}

# The `tiny` recipe every family has: a few steps on 32 px images, for tests.
TINY_RUN: dict[str, Any] = {"size": 32, "batch_size": 4, "warmup_steps": 0, "max_steps": 20, "ckpt_every": 10,
                            "eval_every": 0, "log_every": 5, "val_n": 8, "workers": 0}


class ParserTask:
    """19-class face parsing: cross-entropy + soft Dice (Milletari et al. 2016, V-Net eq. 1)."""

    family = "parser"
    architectures = parser_models.PRESETS
    needs = ("image", "mask")
    presets: dict[str, dict] = {
        "tiny": {**TINY_RUN, "arch": "tiny", "lr": 3e-3, "dice_weight": 0.5},
        "s64": {"arch": "s", "size": 64, "batch_size": 32, "lr": 2e-3, "max_steps": 6_000,
                "dice_weight": 0.5},
        "s128": {"arch": "s128", "size": 128, "batch_size": 16, "lr": 1.5e-3, "max_steps": 6_000,
                 "dice_weight": 0.5},
        # the 64 px network is fully convolutional: fine-tuned at 128 px from the bundled
        # parser-64 it needs a fraction of a from-scratch run (the CPU recipe of parser-128)
        "s128ft": {"arch": "s", "size": 128, "batch_size": 16, "lr": 5e-4, "warmup_steps": 50,
                   "max_steps": 1_500, "dice_weight": 0.5, "init": "parser-64"},
        # real photos (--data celebamask1k:SIZE): the FaceSynth parser of the same size
        # learns real skin, hair and clothes from the 777 training pairs, flipped at random
        "real64": {"arch": "s", "size": 64, "batch_size": 16, "lr": 1e-3, "warmup_steps": 50,
                   "max_steps": 1_200, "dice_weight": 0.5, "init": "parser-64", "eval_every": 200,
                   "ckpt_every": 200, "val_n": 512},
        "real128": {"arch": "s", "size": 128, "batch_size": 16, "lr": 1e-3, "warmup_steps": 50,
                    "max_steps": 1_200, "dice_weight": 0.5, "init": "parser-128", "eval_every": 200,
                    "ckpt_every": 200, "val_n": 512},
        # a guide for training other models on real faces (the GAN mapper's mask loss), kept
        # apart from the ruler: another architecture, no FaceSynth start, training pairs only
        "guide64": {"arch": "g", "size": 64, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                    "max_steps": 2_000, "dice_weight": 0.5, "eval_every": 250, "ckpt_every": 250,
                    "val_n": 512},
    }

    def build(self, config: dict) -> nn.Module:
        return parser_models.FaceParser.from_config(config)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["image"]).float()
        target = batch["mask"]
        ce = F.cross_entropy(logits, target)
        # soft Dice over the classes present in the batch (absent ones would only add noise)
        probs = logits.softmax(1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
        inter = (probs * onehot).sum((0, 2, 3))
        total = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
        present = onehot.sum((0, 2, 3)) > 0
        dice = 1.0 - (2 * inter[present] + 1.0) / (total[present] + 1.0)
        dice = dice.mean()
        w = float(cfg.get("dice_weight", 0.0))
        return ce + w * dice, {"ce": float(ce.detach()), "dice": float(dice.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        preds, targets = [], []
        for batch in batches:
            preds.append(model(batch["image"]).argmax(1).cpu().numpy().astype(np.uint8))
            targets.append(batch["mask"].cpu().numpy().astype(np.uint8))
        scores = mask_scores(np.concatenate(preds), np.concatenate(targets))
        return {"score": scores["miou"], "miou": scores["miou"], "pixel_acc": scores["pixel_acc"]}


class ClassifierTask:
    """Multi-label attributes: binary cross-entropy over the known labels (-1 = unknown is masked)."""

    family = "classifier"
    architectures = classifier_models.PRESETS
    needs = ("image", "attributes")
    presets: dict[str, dict] = {
        "tiny": {**TINY_RUN, "arch": "tiny", "lr": 3e-3},
        "s64": {"arch": "s", "size": 64, "batch_size": 64, "lr": 2e-3, "weight_decay": 5e-4,
                "max_steps": 3_000},
        # a guide for training generators on real faces (an attribute loss; train/guide.py),
        # kept apart from the ruler: its own architecture, from scratch, training photos only
        "guide64": {"arch": "g", "size": 64, "batch_size": 32, "lr": 2e-3, "weight_decay": 5e-4,
                    "warmup_steps": 50, "max_steps": 1_500, "eval_every": 250, "ckpt_every": 250,
                    "val_n": 512},
    }

    def build(self, config: dict) -> nn.Module:
        return classifier_models.AttributeClassifier.from_config(config)

    def _targets(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The model's attribute columns of the (N, 40) CelebA-order label vector."""
        cols = torch.tensor([ATTRIBUTE_INDEX[a] for a in model.attributes], device=batch["attributes"].device)
        return batch["attributes"].index_select(1, cols)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["image"]).float()
        target = self._targets(unwrap(model), batch)
        known = (target >= 0).float()
        bce = F.binary_cross_entropy_with_logits(logits, target.clamp(min=0), weight=known,
                                                 reduction="sum") / known.sum().clamp(min=1)
        acc = (((logits > 0).float() == target) * known).sum() / known.sum().clamp(min=1)
        return bce, {"bce": float(bce.detach()), "acc": float(acc)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        probs, targets = [], []
        for batch in batches:
            probs.append(torch.sigmoid(model(batch["image"]).float()).cpu().numpy())
            targets.append(self._targets(unwrap(model), batch).cpu().numpy())
        scores = attribute_accuracy(np.concatenate(probs), np.concatenate(targets),
                                    names=list(unwrap(model).attributes))
        known = [v for v in scores["per_attribute"].values() if v is not None]
        mean = float(np.mean(known)) if known else float("nan")
        return {"score": mean, "mean_attr_acc": mean, "attr_acc": scores["attr_acc"]}


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / compiled wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


def model_config(task, arch: str | dict) -> dict:
    """An architecture name (or an explicit dict) -> the constructor arguments as a plain dict."""
    if isinstance(arch, dict):
        return dict(arch)
    return dataclasses.asdict(task.architectures[arch])
