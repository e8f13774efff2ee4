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
A new family (diffusion, vae, stylegan2) adds one class and one entry in TASKS; the loop,
checkpoints, resume and logging stay as they are. Every key of a preset can be overridden
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
from ..models.denoiser import DenoiserConfig

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
    }

    def build(self, config: dict) -> nn.Module:
        return classifier_models.AttributeClassifier.from_config(config)

    def _targets(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """The model's attribute columns of the (N, 40) CelebA-order label vector."""
        cols = torch.tensor([ATTRIBUTE_INDEX[a] for a in model.attributes], device=batch["attributes"].device)
        return batch["attributes"].index_select(1, cols)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["image"]).float()
        target = self._targets(_unwrap(model), batch)
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
            targets.append(self._targets(_unwrap(model), batch).cpu().numpy())
        scores = attribute_accuracy(np.concatenate(probs), np.concatenate(targets),
                                    names=list(_unwrap(model).attributes))
        known = [v for v in scores["per_attribute"].values() if v is not None]
        mean = float(np.mean(known)) if known else float("nan")
        return {"score": mean, "mean_attr_acc": mean, "attr_acc": scores["attr_acc"]}


def _input_layout(model_cfg: dict) -> list[tuple[str, int]]:
    """The UNet's input channels of a denoiser config: image channels, then the mask's one-hot
    and the sketch when they enter spatially (the conditioner's order)."""
    mods = model_cfg.get("modalities") or []
    layout = [("x", i) for i in range(model_cfg["channels"])]
    if "mask" in mods and model_cfg.get("mask_mode", "both") != "tokens":
        layout += [("mask", i) for i in range(19)]
    if "sketch" in mods and model_cfg.get("sketch_mode", "spatial") != "tokens":
        layout += [("sketch", 0)]
    return layout


def check_modalities(names) -> list[str]:
    """A list of conditioner modalities ("prompt" is accepted for "text"), in canonical order."""
    from ..errors import FaceweaveError
    from ..models.conditioner import MODALITIES
    if isinstance(names, str):
        names = names.split(",")
    wanted = {{"prompt": "text"}.get(str(n).strip().lower(), str(n).strip().lower()) for n in names}
    wanted.discard("")
    unknown = sorted(wanted - set(MODALITIES))
    if unknown or not wanted:
        raise FaceweaveError(f"unknown modalities {unknown or names!r}; choose from {', '.join(MODALITIES)} "
                             "(comma-separated, e.g. --modalities text)")
    return [m for m in MODALITIES if m in wanted]


class DiffusionTask:
    """The conditional denoiser (Giambi & Lisanti 2023 + text and sketch): EDM denoising loss
    with a configurable weighting, every modality dropped per sample so one model learns
    every subset of conditions (and the unconditional model guidance needs).

    Recipe keys beyond COMMON_DEFAULTS:
        weighting      loss weighting: edm | uniform | p2 | min_snr (diffusion/losses.py)
        p_mean, p_std  EDM log-normal training noise levels (ln sigma ~ N(p_mean, p_std^2));
                       raising them trains more of the high levels where text and attributes
                       act (the bundled model's last run: -0.4, 1.4; docs/diffusion.md)
        drop           probability of dropping each modality, independently per sample (0.4:
                       every subset of the four is seen, prompt-only in ~3.5 % of samples)
        drop_all       probability of dropping all of them (the unconditional model that a
                       single guidance scale needs)
        attr_keep_min  a sample keeps each known attribute with probability q ~ U(attr_keep_min, 1),
                       so a handful of named attributes at inference is in distribution
        sample_n, sample_steps   the grid drawn at each validation (OUT/samples/)
        vae            None (pixels) or a VAE checkpoint (`faceweave train vae`): latent diffusion;
                       the VAE's weights are copied into the model, so its checkpoints stand alone
        modalities     None (all four) or a list, e.g. ["text"]: a model that reads only those
                       (Collaborative Diffusion's uni-modal models; preset uni64 suits one)
    """

    family = "diffusion"
    architectures = {
        "tiny": DenoiserConfig(size=32, unet="tiny", patch=8, pooled=True),
        "s64": DenoiserConfig(size=64, unet="s", patch=8, pooled=True),
        "b64": DenoiserConfig(size=64, unet="b", patch=8, pooled=True),
        "s128": DenoiserConfig(size=32, channels=4, unet="s", patch=4, pooled=True),   # latents of a factor-4 VAE
    }
    needs = ("image", "attributes", "captions", "mask", "sketch")
    unused_parameters = True      # a batch with a modality dropped everywhere leaves its encoder idle
    _DIFFUSION = {"weighting": "edm", "p_mean": -1.2, "p_std": 1.2, "drop": 0.4, "drop_all": 0.1, "attr_keep_min": 0.2,
                  "sample_n": 8, "sample_steps": 20, "vae": None, "modalities": None}
    presets: dict[str, dict] = {
        "tiny": {**_DIFFUSION, **TINY_RUN, "arch": "tiny", "lr": 1e-3, "val_n": 4, "sample_n": 4,
                 "sample_steps": 3, "ema_decay": 0.9},
        # the bundled CPU model: ~2 s per step on 2 cores
        "s64": {**_DIFFUSION, "arch": "s64", "size": 64, "batch_size": 32, "lr": 4e-4, "warmup_steps": 300,
                "weight_decay": 0.0, "max_steps": 12_000, "ema_decay": 0.999, "ckpt_every": 200,
                "eval_every": 500, "log_every": 25, "val_n": 64},
        # 128 px latent diffusion: give a factor-4 VAE, e.g. --set vae=runs/vae128/best
        "s128": {**_DIFFUSION, "arch": "s128", "size": 128, "batch_size": 32, "lr": 4e-4, "warmup_steps": 300,
                 "weight_decay": 0.0, "max_steps": 20_000, "ema_decay": 0.999, "ckpt_every": 500,
                 "eval_every": 1000, "val_n": 64},
        # a uni-modal model (give --modalities): its one condition dropped in 15 % of samples
        # (the unconditional prediction guidance needs), never all four at once
        "uni64": {**_DIFFUSION, "arch": "s64", "size": 64, "batch_size": 32, "lr": 4e-4, "warmup_steps": 300,
                  "weight_decay": 0.0, "max_steps": 12_000, "ema_decay": 0.999, "ckpt_every": 200,
                  "eval_every": 500, "log_every": 25, "val_n": 64, "drop": 0.15, "drop_all": 0.0},
        # the CPU recipe of the bundled collaborators: a uni-modal model warm-started from the
        # joint diffusion-64 (the parts its modality uses), then trained on that modality alone
        "uni64ft": {**_DIFFUSION, "arch": "s64", "size": 64, "batch_size": 32, "lr": 1e-4, "warmup_steps": 50,
                    "weight_decay": 0.0, "max_steps": 400, "ema_decay": 0.995, "ckpt_every": 100,
                    "eval_every": 200, "log_every": 25, "val_n": 64, "drop": 0.15, "drop_all": 0.0,
                    "init": "diffusion-64"},
        # real photos (--data celebamask1k:64): diffusion-64 fine-tuned on the 777 training pairs;
        # the bundled diffusion-64-real is this recipe (1200 steps, ~100 min on 2 CPU cores)
        "real64": {**_DIFFUSION, "arch": "s64", "size": 64, "batch_size": 32, "lr": 4e-4, "warmup_steps": 50,
                   "weight_decay": 0.0, "max_steps": 1200, "ema_decay": 0.999, "ckpt_every": 50,
                   "eval_every": 300, "log_every": 10, "val_n": 64, "init": "diffusion-64"},
        # GPUs (bf16): the same recipe, a bigger UNet and batch
        "b64": {**_DIFFUSION, "arch": "b64", "size": 64, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000,
                "weight_decay": 0.0, "max_steps": 100_000, "ema_decay": 0.9999, "ckpt_every": 1000,
                "eval_every": 2500, "val_n": 256, "workers": 6},
    }

    def __init__(self):
        self._text = None

    def build(self, config: dict) -> nn.Module:
        from ..models.denoiser import ConditionalDenoiser
        return ConditionalDenoiser(DenoiserConfig(**config))

    def init_model(self, cfg: dict) -> nn.Module:
        """The model for a run: cfg["modalities"] restricts what it reads; with cfg["vae"], the
        VAE's config goes into the model config (latent side and channels follow from it) and
        its trained weights into the model."""
        from ..errors import FaceweaveError
        if cfg.get("modalities"):
            cfg["model"] = {**cfg["model"], "modalities": check_modalities(cfg["modalities"])}
        if not cfg.get("vae"):
            cfg["model"] = {**cfg["model"], "size": cfg["size"]}     # pixels: the model's side is the image's
            return self.build(cfg["model"])
        from .. import checkpoint
        meta, state = checkpoint.load(cfg["vae"], "vae")
        vae_cfg = meta["config"]
        factor = 2 ** (len(vae_cfg["mults"]) - 1)
        if cfg["size"] % factor:
            raise FaceweaveError(f"image size {cfg['size']} is not divisible by the VAE's factor {factor}")
        cfg["model"] = {**cfg["model"], "vae": vae_cfg, "channels": vae_cfg["latent_channels"],
                        "size": cfg["size"] // factor}
        model = self.build(cfg["model"])
        checkpoint.load_into(model.space.vae, state, where=str(cfg["vae"]))
        return model

    # `init` may come from a model reading more modalities, or one without the pooled path
    # (whose new layers then start at zero, so the warm start begins as that model)
    init_may_differ = ("modalities", "pooled")

    def adapt_init(self, model: nn.Module, state: dict, theirs: dict, ours: dict, where: str) -> dict:
        """cfg["init"] from a model reading more modalities (a uni-modal model warm-started from
        the joint one): the encoders of the other modalities are left out and the UNet's first
        convolution keeps the input channels it still gets. From a model without the pooled
        path, that path keeps this model's initialisation (its last layer is zero)."""
        from ..errors import FaceweaveError
        lacking = sorted(set(ours["modalities"]) - set(theirs["modalities"]))
        if lacking:
            raise FaceweaveError(f"init={where} does not read {', '.join(lacking)}; "
                                 "start from a model that reads every modality of this run")
        keep = [i for i, name in enumerate(_input_layout(theirs)) if name in _input_layout(ours)]
        picked = {}
        for key, value in model.state_dict().items():
            if key not in state and ours.get("pooled") and not theirs.get("pooled"):
                picked[key] = value                           # the pooled path: this model's own init
                continue
            w = state[key]
            if w.shape != value.shape and w.dim() == 4 and len(keep) == value.shape[1]:
                w = w[:, keep]                                # the stem: drop unused input channels
            picked[key] = w
        return picked

    def setup(self, cfg: dict, device) -> None:
        from ..models.text_encoder import TextEncoder
        if self._text is None or self._text.device != torch.device(device):
            self._text = TextEncoder(device)

    def text(self):
        if self._text is None:
            self.setup({}, "cpu")
        return self._text

    def _conditions(self, batch: dict, cfg: dict, train: bool, generator: torch.Generator | None = None):
        """Condition tensors for the denoiser: one caption per image (random in training,
        the first in validation), attributes partly hidden, modalities dropped per sample."""
        from ..models.conditioner import dropout_masks
        n, device = batch["image"].shape[0], batch["image"].device
        captions = batch.get("captions") or [[] for _ in range(n)]
        if train:
            present = dropout_masks(n, float(cfg["drop"]), generator=generator)
            keep_any = torch.rand(n, generator=generator) >= float(cfg["drop_all"])
            present = {m: p & keep_any for m, p in present.items()}
            picks = torch.randint(0, 1 << 30, (n,), generator=generator).tolist()
        else:
            present = {m: torch.ones(n, dtype=torch.bool) for m in ("text", "attributes", "mask", "sketch")}
            picks = [0] * n
        prompts = [c[p % len(c)] if c and present["text"][i] else None
                   for i, (c, p) in enumerate(zip(captions, picks))]
        present["text"] &= torch.tensor([p is not None for p in prompts])
        enc = self.text().encode(prompts, batched=train)
        attributes = batch["attributes"]
        if train:
            q = torch.rand(n, 1, generator=generator) * (1 - cfg["attr_keep_min"]) + cfg["attr_keep_min"]
            hide = (torch.rand(attributes.shape, generator=generator) >= q).to(device)
            attributes = attributes.masked_fill(hide, -1.0)
        present["attributes"] &= (attributes >= 0).any(1).cpu()
        return {"text": enc.tokens.to(device), "text_mask": enc.mask.to(device), "attributes": attributes,
                "mask": batch["mask"], "sketch": batch["sketch"],
                "present": {m: p.to(device) for m, p in present.items()}}

    @staticmethod
    def _target(model: nn.Module, batch: dict, cond: dict) -> torch.Tensor:
        """What the denoiser models: pixels in [-1, 1] or the VAE's scaled latents (and the
        spatial conditions at that side)."""
        from ..models.vae import downsample_conditions
        bare = _unwrap(model)
        x0 = bare.space.encode(batch["image"])              # data sets give images in [-1, 1]
        cond["mask"], cond["sketch"] = downsample_conditions(cond["mask"], cond["sketch"], bare.config.size)
        return x0

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ..diffusion.losses import denoising_loss, sample_training_sigmas
        cond = self._conditions(batch, cfg, train=True)
        x0 = self._target(model, batch, cond)
        sigma = sample_training_sigmas(x0.shape[0], cfg["p_mean"], cfg["p_std"]).to(x0.device)
        sd = _unwrap(model).config.sigma_data
        loss = denoising_loss(model, x0, sigma, weighting=cfg["weighting"], sigma_data=sd, **cond)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        """Validation denoising error at fixed noise levels and fixed noise (comparable across
        steps and weightings: always EDM-weighted), with all conditions and with none."""
        from ..diffusion.losses import denoising_loss
        sd = _unwrap(model).config.sigma_data
        levels = torch.tensor([0.05, 0.2, 0.5, 1.0, 2.0, 5.0])
        total = {"cond": 0.0, "uncond": 0.0}
        count = 0
        for b, batch in enumerate(batches):
            cond = self._conditions(batch, cfg, train=False)
            x0 = self._target(model, batch, cond)
            n = x0.shape[0]
            none = {**cond, "present": {m: torch.zeros_like(p) for m, p in cond["present"].items()}}
            for j, level in enumerate(levels):
                g = torch.Generator().manual_seed(1000 * b + j)
                noise = torch.randn(x0.shape, generator=g).to(x0.device)
                sigma = torch.full((n,), float(level), device=x0.device)
                for key, c in (("cond", cond), ("uncond", none)):
                    total[key] += float(denoising_loss(model, x0, sigma, "edm", sd, noise=noise, **c)) * n
            count += n * len(levels)
        cond_loss, uncond_loss = total["cond"] / count, total["uncond"] / count
        return {"score": -cond_loss, "val_loss": cond_loss, "val_loss_uncond": uncond_loss}

    @torch.no_grad()
    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        """A grid of samples for the first validation conditions: mask | sketch | real | sample."""
        from pathlib import Path

        from ..backends.diffusion import DiffusionPipeline
        from ..conditions import CELEBA_ATTRIBUTES, Conditions, colorize_mask
        from ..data.sheet import image_grid
        from ..io import write_png
        batch = batches[0]
        n = min(int(cfg["sample_n"]), batch["image"].shape[0])
        conds = []
        for i in range(n):
            attrs = {a: int(v) for a, v in zip(CELEBA_ATTRIBUTES, batch["attributes"][i].tolist()) if v >= 0}
            caps = batch.get("captions")
            conds.append(Conditions(prompt=caps[i][0] if caps and caps[i] else None, attributes=attrs,
                                    mask=batch["mask"][i].cpu().numpy().astype(np.uint8),
                                    sketch=(batch["sketch"][i, 0].cpu().numpy() * 255).astype(np.uint8)))
        pipe = DiffusionPipeline(model, text_encoder=self.text(), device=batch["image"].device)
        # a uni-modal model is given only its own condition
        images = pipe(conditions=[c.only(pipe.modalities) for c in conds], seeds=list(range(n)),
                      num_inference_steps=int(cfg["sample_steps"]),
                      guidance_scale=1.0, progress=False).images
        model.eval()
        rows = []
        for i in range(n):
            real = ((batch["image"][i].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
            sketch = np.repeat(conds[i].sketch[..., None], 3, 2)
            rows += [colorize_mask(conds[i].mask), sketch, real, images[i]]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(rows, columns=8))


class VAETask:
    """The latent-diffusion autoencoder: L1 + MSE reconstruction + a small KL term.

    Validation reports PSNR of the posterior-mean reconstruction (the score) and measures
    the latents' standard deviation; 1 / std becomes the model config's scaling_factor, so
    the exported VAE hands the denoiser unit-variance latents.
    """

    family = "vae"
    needs = ("image",)

    @property
    def architectures(self):
        from ..models.vae import VAE_PRESETS, VAEConfig
        return {name: VAEConfig(**kw) for name, kw in VAE_PRESETS.items()}

    presets: dict[str, dict] = {
        "tiny": {**TINY_RUN, "arch": "tiny", "lr": 2e-3, "kl_weight": 1e-6},
        "f4": {"arch": "f4", "size": 128, "batch_size": 16, "lr": 5e-4, "max_steps": 20_000, "ckpt_every": 500,
               "eval_every": 1000, "val_n": 64, "kl_weight": 1e-6},
        "f8": {"arch": "f8", "size": 256, "batch_size": 8, "lr": 5e-4, "max_steps": 40_000, "ckpt_every": 500,
               "eval_every": 1000, "val_n": 64, "kl_weight": 1e-6},
    }

    def build(self, config: dict) -> nn.Module:
        from ..models.vae import VAE
        return VAE.from_config(config)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ..models.vae import kl_divergence
        x = batch["image"]                                  # [-1, 1]
        recon, mean, logvar = model(x)
        l1 = (recon.float() - x).abs().mean()
        mse = (recon.float() - x).square().mean()
        kl = kl_divergence(mean.float(), logvar.float())
        return l1 + mse + float(cfg["kl_weight"]) * kl, {"l1": float(l1.detach()), "kl": float(kl.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        errors, latents = [], []
        for batch in batches:
            x = batch["image"]                                  # [-1, 1]
            mean, _ = model.encode(x)
            recon = model.decode(mean).float().clamp(-1, 1)
            errors.append(((recon - x) / 2).square().flatten(1).mean(1).cpu())
            latents.append(mean.float().flatten().cpu())
        mse = torch.cat(errors)
        psnr = float((10 * torch.log10(1.0 / mse.clamp(min=1e-10))).mean())
        std = float(torch.cat(latents).std())
        scaling = 1.0 / max(std, 1e-6)
        cfg["model"]["scaling_factor"] = scaling       # saved with best/ and last/ from here on
        _unwrap(model).config.scaling_factor = scaling
        return {"score": psnr, "psnr": psnr, "latent_std": std}


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / compiled wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


@dataclasses.dataclass
class InfluenceArch:
    width: int = 32                # influence network width (models/diffuser.py)
    emb_dim: int = 64              # its noise-level / vector-condition embedding


def parse_collaborators(spec) -> dict[str, str]:
    """"text=DIR,mask=DIR" or {"text": DIR, ...} -> {name: checkpoint}, with one-line errors."""
    from ..errors import FaceweaveError
    if isinstance(spec, dict):
        pairs = list(spec.items())
    else:
        pairs = []
        for item in str(spec or "").split(","):
            name, sep, ref = item.partition("=")
            if not item.strip():
                continue
            if not sep or not name.strip() or not ref.strip():
                raise FaceweaveError(f"bad collaborator {item!r}; write NAME=CHECKPOINT, e.g. "
                                     "--collaborators text=runs/uni-text/best,mask=runs/uni-mask/best")
            pairs.append((name.strip(), ref.strip()))
    names = [n for n, _ in pairs]
    if len(pairs) < 2 or len(set(names)) != len(names):
        raise FaceweaveError("faceweave train collab needs two or more collaborators with distinct names: "
                             "--collaborators text=runs/uni-text/best,mask=runs/uni-mask/best")
    return {str(n): str(r) for n, r in pairs}


class CollabTask:
    """The dynamic diffuser of Collaborative Diffusion (Huang et al. 2023): the uni-modal
    collaborators stay frozen; only the influence networks learn, with the denoising loss of
    the mixed prediction on samples that carry every modality (EDM noise levels).

    Recipe keys beyond COMMON_DEFAULTS:
        collaborators   {name: checkpoint} of `faceweave train diffusion --modalities ...` models
                        (the CLI's --collaborators text=DIR,mask=DIR)
        weighting, p_mean, p_std, attr_keep_min   as for the diffusion task
        drop            probability of leaving a collaborator out of a sample's mixing (at least
                        one stays): the influence maps learn every subset, as used at inference
        sample_n, sample_steps   samples and an influence picture at each validation
    """

    family = "collab"
    architectures = {"tiny": InfluenceArch(width=8, emb_dim=16), "s": InfluenceArch(width=32, emb_dim=64)}
    needs = ("image", "attributes", "captions", "mask", "sketch")
    _COLLAB = {"collaborators": None, "weighting": "edm", "p_mean": -1.2, "p_std": 1.2, "attr_keep_min": 0.2,
               "drop": 0.0, "sample_n": 4, "sample_steps": 20}
    presets: dict[str, dict] = {
        "tiny": {**_COLLAB, **TINY_RUN, "arch": "tiny", "lr": 1e-3, "val_n": 4, "sample_n": 2, "sample_steps": 3},
        "s64": {**_COLLAB, "arch": "s", "size": 64, "batch_size": 32, "lr": 1e-3, "warmup_steps": 100,
                "max_steps": 2_000, "ema_decay": 0.998, "ckpt_every": 100, "eval_every": 250, "log_every": 25,
                "val_n": 64, "drop": 0.3},
    }

    def __init__(self):
        self._pipes: dict = {}
        self._helper = DiffusionTask()       # conditions (captions, attribute hiding) and the text encoder

    def init_model(self, cfg: dict) -> nn.Module:
        from ..backends.collab import check_compatible, load_collaborator
        from ..errors import FaceweaveError
        from ..models.diffuser import DiffuserConfig, DynamicDiffuser
        refs = parse_collaborators(cfg.get("collaborators"))
        before = {c["name"]: c.get("fingerprint") for c in cfg["model"].get("collaborators", [])}
        pipes, specs = {}, []
        for name, ref in refs.items():
            pipe, fp = load_collaborator(ref)
            if before.get(name) and before[name] != fp:
                raise FaceweaveError(f"collaborator {name!r} ({ref}) changed since this run started "
                                     f"(weights {fp}, the run used {before[name]}); start a new run")
            pipes[name] = pipe
            specs.append({"name": name, "modalities": list(pipe.model.config.modalities), "model": ref,
                          "fingerprint": fp})
        check_compatible(pipes)
        first = next(iter(pipes.values()))
        if first.size != cfg["size"]:
            raise FaceweaveError(f"the collaborators make {first.size} px images but this run trains at "
                                 f"{cfg['size']} px; use --data facesynth:{first.size} (or a {first.size} px folder)")
        self._pipes = pipes
        cfg["model"] = {**{k: v for k, v in cfg["model"].items() if k in ("width", "emb_dim")},
                        "collaborators": specs, "channels": first.model.config.channels,
                        "size": first.model.config.size, "sigma_data": first.model.config.sigma_data}
        return DynamicDiffuser(DiffuserConfig(**cfg["model"]))

    def build(self, config: dict) -> nn.Module:
        from ..models.diffuser import DynamicDiffuser
        return DynamicDiffuser.from_config(config)

    def setup(self, cfg: dict, device) -> None:
        self._helper.setup(cfg, device)
        for pipe in self._pipes.values():
            pipe.model.to(device).eval()
            pipe.device = torch.device(device)

    def _mixed(self, model: nn.Module, batch: dict, cfg: dict, train: bool, sigma: torch.Tensor,
               noise: torch.Tensor | None = None):
        """(x0, the mixed prediction, each collaborator's prediction) at noise levels sigma."""
        from ..models.diffuser import active_collaborators
        cond = self._helper._conditions(batch, {**cfg, "drop": 0.0, "drop_all": 0.0}, train=train)
        first = next(iter(self._pipes.values()))
        x0 = DiffusionTask._target(first.model, batch, cond)
        noise = torch.randn_like(x0) if noise is None else noise
        x = x0 + sigma.reshape(-1, 1, 1, 1) * noise
        preds = []
        with torch.no_grad():
            for pipe in self._pipes.values():
                own = pipe.model.config.modalities
                mine = {**cond, "present": {m: p if m in own else torch.zeros_like(p)
                                            for m, p in cond["present"].items()}}
                preds.append(pipe.model(x, sigma, **mine).float())
        active = active_collaborators(_unwrap(model).config, cond["present"])
        if train and cfg.get("drop", 0.0) > 0:
            keep = torch.rand(active.shape) >= float(cfg["drop"])
            alone = ~keep.any(1)
            keep[alone, torch.randint(0, active.shape[1], (int(alone.sum()),))] = True
            active = active & keep.to(active.device)
        return x0, model(x, sigma, cond, preds, active), preds

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ..diffusion.losses import loss_weight, sample_training_sigmas
        n = batch["image"].shape[0]
        sigma = sample_training_sigmas(n, cfg["p_mean"], cfg["p_std"]).to(batch["image"].device)
        x0, mixed, _ = self._mixed(model, batch, cfg, True, sigma)
        per_image = (mixed - x0).square().flatten(1).mean(1)
        sd = _unwrap(model).config.sigma_data
        return (loss_weight(cfg["weighting"], sigma, sd) * per_image).mean(), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        """EDM-weighted validation error at fixed noise levels and noise: the learned mixing,
        the naive average (the paper's ablation) and each collaborator alone."""
        from ..diffusion.losses import loss_weight
        bare = _unwrap(model)
        names = bare.config.names
        levels = torch.tensor([0.05, 0.2, 0.5, 1.0, 2.0, 5.0])
        total = {k: 0.0 for k in ["learned", "average", *names]}
        count = 0
        for b, batch in enumerate(batches):
            n = batch["image"].shape[0]
            for j, level in enumerate(levels):
                sigma = torch.full((n,), float(level), device=batch["image"].device)
                g = torch.Generator().manual_seed(1000 * b + j)
                first = next(iter(self._pipes.values())).model.config
                noise = torch.randn(n, first.channels, first.size, first.size, generator=g).to(sigma.device)
                x0, mixed, preds = self._mixed(model, batch, cfg, False, sigma, noise)
                w = loss_weight("edm", sigma, bare.config.sigma_data)
                err = lambda d: float((w * (d - x0).square().flatten(1).mean(1)).sum())   # noqa: E731
                total["learned"] += err(mixed)
                total["average"] += err(sum(preds) / len(preds))
                for name, p in zip(names, preds):
                    total[name] += err(p)
            count += n * len(levels)
        out = {"val_loss": total["learned"] / count, "val_loss_average": total["average"] / count,
               **{f"val_loss_{k}": total[k] / count for k in names}}
        return {"score": -out["val_loss"], **out}

    @torch.no_grad()
    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        """Samples for the first validation conditions (mask | real | learned | average) and the
        influence picture of the first one (OUT/samples/step_N.png and step_N_influence.png)."""
        from pathlib import Path

        from ..backends.collab import CollabPipeline, influence_picture
        from ..conditions import CELEBA_ATTRIBUTES, Conditions, colorize_mask
        from ..data.sheet import image_grid
        from ..io import write_png
        batch = batches[0]
        n = min(int(cfg["sample_n"]), batch["image"].shape[0])
        caps = batch.get("captions")
        conds = [Conditions(prompt=caps[i][0] if caps and caps[i] else None,
                            attributes={a: int(v) for a, v in zip(CELEBA_ATTRIBUTES, batch["attributes"][i].tolist())
                                        if v >= 0},
                            mask=batch["mask"][i].cpu().numpy().astype(np.uint8),
                            sketch=(batch["sketch"][i, 0].cpu().numpy() * 255).astype(np.uint8))
                 for i in range(n)]
        bare = _unwrap(model)
        for pipe in self._pipes.values():
            pipe._text_encoder = self._helper.text()
        pipe = CollabPipeline(dict(self._pipes), bare, device=batch["image"].device)
        conds = [c.only(pipe.modalities) for c in conds]
        kw = {"conditions": conds, "seeds": list(range(n)), "num_inference_steps": int(cfg["sample_steps"]),
              "progress": False}
        learned = pipe(**kw, return_influence=True)
        average = pipe(**kw, mixing="average").images
        rows = []
        for i in range(n):
            real = ((batch["image"][i].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
            rows += [colorize_mask(batch["mask"][i].cpu().numpy().astype(np.uint8)), real,
                     learned.images[i], average[i]]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(rows, columns=8))
        write_png(Path(path).with_name(Path(path).stem + "_influence.png"),
                  influence_picture(learned.influence[0], pipe.names, learned.images[0]))


TASKS: dict[str, Any] = {"parser": ParserTask(), "classifier": ClassifierTask(), "diffusion": DiffusionTask(),
                         "vae": VAETask(), "collab": CollabTask()}


def _gan_tasks() -> dict[str, Any]:
    from .gan_tasks import GAN_TASKS
    return GAN_TASKS


TASKS.update(_gan_tasks())


def model_config(task, arch: str | dict) -> dict:
    """An architecture name (or an explicit dict) -> the constructor arguments as a plain dict."""
    if isinstance(arch, dict):
        return dict(arch)
    return dataclasses.asdict(task.architectures[arch])
