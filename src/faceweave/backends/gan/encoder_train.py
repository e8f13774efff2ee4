"""The GAN inversion encoder (models/gan_encoder.py) as a training task (see tasks.py).

    faceweave train gan_encoder --preset s --data facesynth:64 --out runs/gan-encoder-64 \\
        --set generator=runs/stylegan2-64/best

The StyleGAN2 generator stays frozen; only the encoder learns. Every batch is half
generated, half real, following pSp / e4e (Richardson et al. 2021; Tov et al. 2021):
- generated half: z -> w (with style mixing, so W+ codes that differ per entry are seen
  too) -> G(w) with random noise; the encoder must give back the code: latent MSE, plus
  the image losses below. Here the answer is known, which teaches the encoder the
  generator's latent geometry quickly;
- real half: the batch's photos, whose code nobody knows: only the image losses;
- image losses on G(E(x)) (constant noise, what inference uses): pixel MSE and the face
  parser's FeatureDistance (projector.py; LPIPS's recipe on faceweave's own network);
- e4e's delta regulariser: the mean squared per-entry offset from the shared code, which
  keeps codes close to W, where edits behave.
Validation: PSNR (the score) and feature distance of G(E(x)) on held-out real images.

Recipe keys beyond COMMON_DEFAULTS:
    generator        a stylegan2 checkpoint folder or bundled name (required): a training run's
                     last/ (its EMA weights, ema.safetensors, are used when present) or best/
    latent_weight, pixel_weight, feature_weight, delta_weight   the loss weights above
    real_fraction    share of each batch that stays real photos (the rest is generated)
    style_mixing     probability that a generated image mixes two latents
    sample_n         real | reconstruction pairs drawn at each validation (OUT/samples/)

The saved encoder config carries the generator's StyleGAN2 config under "generator" (the
loop saves only cfg["model"]), so a checkpoint says which generator shape it inverts; the
generator's path is in the run's run.json ("generator").
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import FaceweaveError
from ...models import gan_encoder
from ...train.tasks import TINY_RUN

_ENCODER: dict[str, Any] = {
    "generator": None, "latent_weight": 1.0, "pixel_weight": 1.0, "feature_weight": 0.8, "delta_weight": 2e-4,
    "real_fraction": 0.5, "style_mixing": 0.9, "sample_n": 8, "weight_decay": 0.0,
}


def _generator_ref(cfg: dict) -> str:
    where = cfg.get("generator")
    if not where:
        raise FaceweaveError("gan_encoder training needs a StyleGAN2 checkpoint to invert: "
                             "--set generator=runs/stylegan2-64/best (a folder or bundled name)")
    return str(where)


class GANEncoderTask:
    """pSp/e4e-style inversion encoder for a frozen StyleGAN2; score: validation PSNR of G(E(x))."""

    family = "gan_encoder"
    architectures = gan_encoder.PRESETS
    needs = ("image",)
    presets: dict[str, dict] = {
        # give a tiny (32 px) StyleGAN2 checkpoint: --set generator=DIR
        "tiny": {**_ENCODER, **TINY_RUN, "arch": "tiny", "lr": 1e-3, "sample_n": 4},
        # the CPU recipe for the bundled 64 px generator
        "s": {**_ENCODER, "arch": "s", "size": 64, "batch_size": 16, "lr": 5e-4, "warmup_steps": 200,
              "max_steps": 10_000, "ema_decay": 0.999, "ckpt_every": 250, "eval_every": 1000, "log_every": 50,
              "val_n": 256},
    }

    def __init__(self):
        self._G: nn.Module | None = None
        self._distance = None

    def build(self, config: dict) -> nn.Module:
        return gan_encoder.GANEncoder.from_config(config)

    def init_model(self, cfg: dict) -> nn.Module:
        """Load the frozen generator, fit the encoder config to it (size, W+ shape, its config
        under "generator") and start the encoder at the generator's w_avg."""
        from .train import load_generator
        where = _generator_ref(cfg)
        G, meta = load_generator(where)
        g_config = dict(meta["config"])
        if G.config.size != cfg["size"]:
            raise FaceweaveError(f"generator {where} makes {G.config.size} px images but this run trains at "
                                 f"{cfg['size']} px; use --set size={G.config.size} (and data of that size)")
        cfg["model"] = {**cfg["model"], "size": G.config.size, "num_ws": G.num_ws, "w_dim": G.config.w_dim,
                        "generator": g_config}
        model = self.build(cfg["model"])
        model.w_avg.copy_(G.w_avg)
        self._G = G
        return model

    def setup(self, cfg: dict, device) -> None:
        from ...projector import FeatureDistance
        if self._G is None:                                  # a caller that skipped init_model
            from .train import load_generator
            self._G, _ = load_generator(_generator_ref(cfg))
        self._G.to(device)
        if self._distance is None:
            self._distance = FeatureDistance()
        self._distance.to(device)

    def _reconstruct(self, wplus: torch.Tensor) -> torch.Tensor:
        image, _ = self._G([wplus.float()], input_is_latent=True, randomize_noise=False)
        return image.float()

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        G = self._G
        real = batch["image"]
        n = real.shape[0]
        n_fake = n - max(1, round(n * float(cfg["real_fraction"]))) if n > 1 else 0
        x, w_true = real, None
        if n_fake:
            with torch.no_grad():
                z = torch.randn(n_fake, G.config.z_dim, device=real.device)
                styles = [z]
                if random.random() < float(cfg["style_mixing"]):
                    styles.append(torch.randn_like(z))
                fake, w_true = G(styles, return_latents=True, randomize_noise=True)
            x = torch.cat([fake.to(real.dtype), real[:n - n_fake]]).contiguous()
        wplus, deltas = model(x, return_deltas=True)
        recon = self._reconstruct(wplus)
        target = x.float()
        pixel = (recon - target).square().mean()
        feature = self._distance(recon, target).mean()
        latent = (wplus[:n_fake].float() - w_true.float()).square().mean() if n_fake else pixel.new_zeros(())
        delta = deltas.float().square().mean()
        total = (float(cfg["latent_weight"]) * latent + float(cfg["pixel_weight"]) * pixel
                 + float(cfg["feature_weight"]) * feature + float(cfg["delta_weight"]) * delta)
        return total, {"latent": float(latent.detach()), "pixel": float(pixel.detach()),
                       "feature": float(feature.detach()), "delta": float(delta.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        from ...projector import psnr
        scores, distances = [], []
        for batch in batches:
            x = batch["image"].float()
            recon = self._reconstruct(model(x))
            scores.append(psnr(recon, x).cpu())
            distances.append(self._distance(recon, x).cpu())
        value = float(torch.cat(scores).mean())
        return {"score": value, "psnr": value, "feature_distance": float(torch.cat(distances).mean())}

    @torch.no_grad()
    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        """Pairs real | reconstruction for the first sample_n validation images, four pairs a row."""
        from ...data.sheet import image_grid
        from ...io import write_png
        x = batches[0]["image"][:int(cfg["sample_n"])].float()
        recon = self._reconstruct(model(x))

        def rgb(t: torch.Tensor) -> list[np.ndarray]:
            return list(((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())

        cells = [im for pair in zip(rgb(x), rgb(recon)) for im in pair]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(cells, columns=8))

