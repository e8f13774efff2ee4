"""The diffusion backend's model families as training tasks (train/tasks.py says what a task is).

    diffusion   faceweave train diffusion --preset s64 --data facesynth:64 --out runs/diffusion64
    vae         faceweave train vae --preset f4 --data facesynth:128 --out runs/vae128
                (the latent autoencoder that 128 px latent diffusion runs in)
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ...models.denoiser import DenoiserConfig
from ...train.tasks import TINY_RUN, unwrap


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
    from ...errors import FaceweaveError
    from ...models.conditioner import MODALITIES
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
        sampling       the checkpoint's sampling defaults over DiffusionPipeline.SAMPLING,
                       e.g. {"layout_prior": false} (config.json "sampling")
    """
    # a model of real faces reads a photo's own conditions with the real-face parser
    # (data.unified.photo_instruments, recorded by the loop as config.json "instruments")
    reads_photos = True

    family = "diffusion"

    @staticmethod
    def sampling(cfg: dict) -> dict:
        """The sampling defaults written into the run's checkpoints (Pipeline.sampling)."""
        from .pipeline import DiffusionPipeline
        return {**DiffusionPipeline.SAMPLING, **(cfg.get("sampling") or {})}

    architectures = {
        "tiny": DenoiserConfig(size=32, unet="tiny", patch=8, pooled=True),
        "s64": DenoiserConfig(size=64, unet="s", patch=8, pooled=True),
        "b64": DenoiserConfig(size=64, unet="b", patch=8, pooled=True),
        "s128": DenoiserConfig(size=32, channels=4, unet="s", patch=4, pooled=True),   # latents of a factor-4 VAE
    }
    needs = ("image", "attributes", "captions", "mask", "sketch")
    unused_parameters = True      # a batch with a modality dropped everywhere leaves its encoder idle
    _DIFFUSION = {"weighting": "edm", "p_mean": -1.2, "p_std": 1.2, "drop": 0.4, "drop_all": 0.1, "attr_keep_min": 0.2,
                  "sample_n": 8, "sample_steps": 20, "vae": None, "modalities": None, "sampling": None}
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
                   "eval_every": 300, "log_every": 10, "val_n": 64, "init": "diffusion-64",
                   "sampling": {"layout_prior": False}},      # FaceSynth layouts are not real layouts
        # GPUs (bf16): the same recipe, a bigger UNet and batch
        "b64": {**_DIFFUSION, "arch": "b64", "size": 64, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000,
                "weight_decay": 0.0, "max_steps": 100_000, "ema_decay": 0.9999, "ckpt_every": 1000,
                "eval_every": 2500, "val_n": 256, "workers": 6},
    }

    def __init__(self):
        self._text = None

    def build(self, config: dict) -> nn.Module:
        from ...models.denoiser import ConditionalDenoiser
        return ConditionalDenoiser(DenoiserConfig(**config))

    def init_model(self, cfg: dict) -> nn.Module:
        """The model for a run: cfg["modalities"] restricts what it reads; with cfg["vae"], the
        VAE's config goes into the model config (latent side and channels follow from it) and
        its trained weights into the model."""
        from ...errors import FaceweaveError
        if cfg.get("modalities"):
            cfg["model"] = {**cfg["model"], "modalities": check_modalities(cfg["modalities"])}
        if not cfg.get("vae"):
            cfg["model"] = {**cfg["model"], "size": cfg["size"]}     # pixels: the model's side is the image's
            return self.build(cfg["model"])
        from ... import checkpoint
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
        from ...errors import FaceweaveError
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
        from ...models.text_encoder import TextEncoder
        if self._text is None or self._text.device != torch.device(device):
            self._text = TextEncoder(device)

    def text(self):
        if self._text is None:
            self.setup({}, "cpu")
        return self._text

    def _conditions(self, batch: dict, cfg: dict, train: bool, generator: torch.Generator | None = None):
        """Condition tensors for the denoiser: one caption per image (random in training,
        the first in validation), attributes partly hidden, modalities dropped per sample."""
        from ...models.conditioner import dropout_masks
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
        from ...models.vae import downsample_conditions
        bare = unwrap(model)
        x0 = bare.space.encode(batch["image"])              # data sets give images in [-1, 1]
        cond["mask"], cond["sketch"] = downsample_conditions(cond["mask"], cond["sketch"], bare.config.size)
        return x0

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ...diffusion.losses import denoising_loss, sample_training_sigmas
        cond = self._conditions(batch, cfg, train=True)
        x0 = self._target(model, batch, cond)
        sigma = sample_training_sigmas(x0.shape[0], cfg["p_mean"], cfg["p_std"]).to(x0.device)
        sd = unwrap(model).config.sigma_data
        loss = denoising_loss(model, x0, sigma, weighting=cfg["weighting"], sigma_data=sd, **cond)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        """Validation denoising error at fixed noise levels and fixed noise (comparable across
        steps and weightings: always EDM-weighted), with all conditions and with none."""
        from ...diffusion.losses import denoising_loss
        sd = unwrap(model).config.sigma_data
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

        from .pipeline import DiffusionPipeline
        from ...conditions import CELEBA_ATTRIBUTES, Conditions, colorize_mask
        from ...data.sheet import image_grid
        from ...io import write_png
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
        from ...models.vae import VAE_PRESETS, VAEConfig
        return {name: VAEConfig(**kw) for name, kw in VAE_PRESETS.items()}

    presets: dict[str, dict] = {
        "tiny": {**TINY_RUN, "arch": "tiny", "lr": 2e-3, "kl_weight": 1e-6},
        "f4": {"arch": "f4", "size": 128, "batch_size": 16, "lr": 5e-4, "max_steps": 20_000, "ckpt_every": 500,
               "eval_every": 1000, "val_n": 64, "kl_weight": 1e-6},
        "f8": {"arch": "f8", "size": 256, "batch_size": 8, "lr": 5e-4, "max_steps": 40_000, "ckpt_every": 500,
               "eval_every": 1000, "val_n": 64, "kl_weight": 1e-6},
    }

    def build(self, config: dict) -> nn.Module:
        from ...models.vae import VAE
        return VAE.from_config(config)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ...models.vae import kl_divergence
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
        unwrap(model).config.scaling_factor = scaling
        return {"score": psnr, "psnr": psnr, "latent_std": std}


def tiny_checkpoint(root: Path) -> Path:
    """A tiny 32 px model reading every condition, trained a few steps on FaceSynth (seconds on a
    CPU): what the contract tests (tests/test_contract.py) and quick experiments run on.
    Returns ROOT/diffusion/last."""
    from ...train.loop import train
    train("diffusion", "tiny", "facesynth:32", Path(root) / "diffusion", overrides={"max_steps": 2}, progress=False)
    return Path(root) / "diffusion" / "last"
