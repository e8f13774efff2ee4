"""The GAN backend's model families as training tasks (see tasks.py for what a task is).

    stylegan2   faceweave train stylegan2 --preset s --data facesynth:64 --out runs/stylegan2-64

The StyleGAN2 step is one backward pass through `StyleGAN2.forward` (the discriminator's
logistic loss, the generator's non-saturating loss through a gradient-free copy of the
discriminator, and the lazy regularisers on their intervals), so the generic loop with one
AdamW optimiser trains it. Recipes follow the paper's config F where it matters (Adam
betas (0, 0.99), no weight decay, no gradient clipping, constant learning rate, R1 every 16
steps and path length every 4, an EMA generator), scaled down for 64 px on a CPU.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models import stylegan2 as sg2

_GAN: dict[str, Any] = {
    "lr": 2e-3, "betas": [0.0, 0.99], "weight_decay": 0.0, "grad_clip": 0.0, "warmup_steps": 0,
    "min_lr_ratio": 1.0,          # constant learning rate (StyleGAN2 uses no schedule)
    "r1_gamma": 0.2,              # R1 weight gamma (Karras et al. use 0.0002 * pixels / batch ~ 0.1-1 at 64 px)
    "r1_every": 16,               # lazy R1: every N steps, weighted by N
    "pl_weight": 2.0,             # path length weight (0: off)
    "pl_every": 4,                # lazy path length: every N steps, weighted by N
    "style_mixing": 0.9,          # probability of two latents per batch (mixing regularisation)
    "augment": "off",             # "off", "ada" (adapt p towards ada_target) or a fixed p, e.g. "0.2"
    "ada_target": 0.6,            # ADA's r_t = E[sign(D(real))] target
    "ada_kimg": 100,              # images over which p can move from 0 to 1
    "sample_n": 16,               # the grid drawn at each validation (OUT/samples/)
}


class StyleGAN2Task:
    """StyleGAN2 (Karras et al. 2020) on face images; the score is -fd between EMA-generator
    samples and held-out real faces in the attribute classifier's feature space (the `fd`
    of `faceweave evaluate`)."""

    family = "stylegan2"
    architectures = sg2.PRESETS
    needs = ("image",)
    presets: dict[str, dict] = {
        "tiny": {**_GAN, "size": 32, "batch_size": 4, "max_steps": 20, "ckpt_every": 10, "eval_every": 0,
                 "log_every": 5, "val_n": 8, "workers": 0, "arch": "tiny", "sample_n": 4, "r1_every": 2,
                 "pl_every": 3},
        # the bundled CPU model: 64 px, narrow layers, batch 16
        "s": {**_GAN, "arch": "s", "size": 64, "batch_size": 16, "max_steps": 20_000, "ema_decay": 0.999,
              "ckpt_every": 250, "eval_every": 1000, "log_every": 50, "val_n": 256},
        # GPUs: a wider model and a larger batch
        "b": {**_GAN, "arch": "b", "size": 64, "batch_size": 64, "max_steps": 100_000, "ema_decay": 0.9978,
              "ckpt_every": 1000, "eval_every": 5000, "val_n": 1000, "workers": 6},
        "s128": {**_GAN, "arch": "s128", "size": 128, "batch_size": 32, "max_steps": 100_000,
                 "ema_decay": 0.9978, "ckpt_every": 1000, "eval_every": 5000, "val_n": 1000, "workers": 6},
    }

    def __init__(self):
        self._calls = 0
        self._classifier = None

    def build(self, config: dict) -> nn.Module:
        return sg2.StyleGAN2.from_config(config)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self._calls += 1
        k = self._calls
        r1 = float(cfg["r1_gamma"]) * cfg["r1_every"] if cfg["r1_gamma"] and k % cfg["r1_every"] == 0 else 0.0
        pl = float(cfg["pl_weight"]) * cfg["pl_every"] if cfg["pl_weight"] and k % cfg["pl_every"] == 0 else 0.0
        real = batch["image"].contiguous()
        loss, parts, real_logits = model(real, r1_gamma=r1, pl_weight=pl, style_mixing=float(cfg["style_mixing"]))
        self._adapt_augmentation(_unwrap(model), real_logits, cfg)
        return loss, parts

    @staticmethod
    def _adapt_augmentation(model: nn.Module, real_logits: torch.Tensor, cfg: dict) -> None:
        """ADA (Karras et al. 2020b, sec. 3): raise p while the discriminator is over-confident on
        real images (E sign D(real) > target), lower it otherwise; a fixed p when given."""
        mode = str(cfg["augment"]).strip().lower()
        if mode == "off":
            return
        if mode != "ada":
            model.aug_p.fill_(float(mode))
            return
        sign = float(real_logits.sign().mean())
        step = real_logits.shape[0] / (float(cfg["ada_kimg"]) * 1000)
        model.aug_p.copy_((model.aug_p + np.sign(sign - float(cfg["ada_target"])) * step).clamp(0, 1))

    def _features(self, images: torch.Tensor) -> np.ndarray:
        """The classifier's features (classifier-64 reads every size once resampled to 64 px)."""
        from ..ruler import load_classifier
        if self._classifier is None:
            self._classifier = load_classifier(size=64)
        if images.shape[-1] != 64:
            images = F.interpolate(images.float(), size=(64, 64), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > 64)
        rgb = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return self._classifier.features(rgb)

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
        """n images from fixed latents (z of `seed`, constant noise): comparable across steps."""
        G = _unwrap(model).generator
        z = torch.randn(n, G.config.z_dim, generator=torch.Generator().manual_seed(seed)).to(G.input.device)
        return torch.cat([G([z[i:i + 64]], randomize_noise=False)[0] for i in range(0, n, 64)])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        from ..eval.frechet import fd_from_features
        real = torch.cat([b["image"] for b in batches])
        fake = self.sample(model, real.shape[0], seed=12345)
        with warnings.catch_warnings():                      # a small validation set is expected here
            warnings.simplefilter("ignore")
            fd = fd_from_features(self._features(fake), self._features(real))
        return {"score": -fd, "fd": fd}

    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        from ..data.sheet import image_grid
        from ..io import write_png
        images = self.sample(model, int(cfg["sample_n"]))
        rgb = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(list(rgb), columns=8))


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


GAN_TASKS: dict[str, Any] = {"stylegan2": StyleGAN2Task()}
