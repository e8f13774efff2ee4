"""Training the multiview generator (train/tasks.py says what a task is).

    # FaceSynth: exact poses; every step renders fresh heads at two random yaws each
    faceweave train multiview --preset s --data facesynth --out runs/multiview-64-facesynth
    # real photos: each photo's yaw read off its dlib landmarks (views.estimate_yaw)
    # (faceweave train picks pose=landmarks for any data but FaceSynth; --set pose=... says otherwise)
    faceweave train multiview --preset s --data celebamask1k:64:photos --out runs/multiview-64-real
    # GPUs: accelerate launch --multi_gpu --num_processes 4 -m faceweave.cli train multiview --preset b ...

One step, all in one backward pass (the StyleGAN2 task's scheme, models/stylegan2.py):
- adversarial (EG3D): z and a conditioning camera -> w; the tri-plane generator renders it
  from a camera at a random yaw in [-30, 30]; the dual, pose-conditioned discriminator
  compares [image || raw render] with [real || real at render_size] at the real images' own
  cameras (non-saturating logistic loss, lazy R1). The conditioning camera is the rendering
  camera, swapped for another random yaw with probability `gpc_swap` (EG3D's generator pose
  conditioning swap, so w does not learn to depend on the camera).
- multi-view reconstruction (an extra loss of this implementation, for a CPU-sized run):
  the encoder reads view A of a face and the generator renders its w at A's yaw and at
  view B's yaw; L1 of both the super-resolved image and the raw render against the true
  views, weighted `recon_weight`. On FaceSynth (pose=facesynth) B is the same head rendered at
  another yaw, which teaches the 3D shape directly; on photos (pose=landmarks) B is the
  mirrored photo at the mirrored yaw (a face is nearly symmetric).
Validation (FaceSynth): heads of the val split seen at -20 degrees, rendered at +20, against
the true render: -L1 is the score.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FaceweaveError
from ...train.tasks import TINY_RUN, unwrap
from .networks import PRESETS, YAW_RANGE, MultiviewGAN
from .views import render_at_yaw

POSES = ("facesynth", "landmarks")
# what a multiview call does unless told (MultiviewPipeline.SAMPLING; a checkpoint overrides)
SAMPLING: dict[str, Any] = {"truncation": 0.7, "invert_steps": 150, "invert_lr": 0.03}

_COMMON: dict[str, Any] = {
    "lr": 2e-3, "betas": [0.0, 0.99], "weight_decay": 0.0, "grad_clip": 0.0, "min_lr_ratio": 1.0,
    "pose": "facesynth",          # facesynth: exact poses from the renderer; landmarks: estimated from photos
    "recon_weight": 1.0,          # multi-view reconstruction (encoder -> render at both yaws), L1
    "adv_weight": 0.1,            # the generator's non-saturating loss
    "r1_gamma": 1.0,              # R1 weight (lazy: every r1_every steps, times r1_every)
    "r1_every": 8,
    "gpc_swap": 0.5,              # probability that the conditioning camera is not the rendering one
    "sample_n": 4, "workers": 0,
}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(images, device=None) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def facesynth_views(indices: Iterable[int], yaws: Iterable[float], size: int, split: str = "train") -> torch.Tensor:
    """(N, 3, S, S) FaceSynth heads `indices` of `split` rendered at `yaws`, in [-1, 1]."""
    from ...data.unified import facesynth_seed
    seed = facesynth_seed(split)
    return to_tensor([render_at_yaw(seed, int(i), size, float(y))[0] for i, y in zip(indices, yaws)])


def raw_target(image: torch.Tensor, side: int) -> torch.Tensor:
    """A real image as the discriminator's raw channel sees it: down to the render's side."""
    return F.interpolate(image, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def recon_loss(model: MultiviewGAN, w: torch.Tensor, yaws: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    out = model.synthesize(w, model.camera(yaws))
    return (out.image - target).abs().mean() + (out.raw - raw_target(target, out.raw.shape[-1])).abs().mean()


class MultiviewTask:
    family = "multiview"
    needs = ("image",)
    architectures = PRESETS
    presets: dict[str, dict] = {
        "tiny": {**_COMMON, **TINY_RUN, "arch": "tiny", "sample_n": 2},
        # the CPU model (docs/multiview.md: the measured run, one thread of a 2-core CPU)
        "s": {**_COMMON, "arch": "s", "size": 64, "batch_size": 8, "warmup_steps": 0, "max_steps": 1800,
              "ckpt_every": 100, "eval_every": 250, "log_every": 10, "val_n": 16, "ema_decay": 0.99},
        # GPUs: 64 px rendering, a larger batch
        "b": {**_COMMON, "arch": "b", "size": 64, "batch_size": 32, "max_steps": 100_000, "ckpt_every": 1000,
              "eval_every": 5000, "log_every": 50, "val_n": 256, "ema_decay": 0.999, "workers": 4},
    }

    def __init__(self):
        self._calls = 0

    @staticmethod
    def sampling(cfg: dict) -> dict:
        return dict(SAMPLING)

    def build(self, config: dict) -> nn.Module:
        return MultiviewGAN.from_config(config)

    def init_model(self, cfg: dict) -> nn.Module:
        if cfg["pose"] not in POSES:
            raise FaceweaveError(f"pose must be one of {', '.join(POSES)}, got {cfg['pose']!r}")
        if cfg["model"]["size"] != cfg["size"]:
            raise FaceweaveError(f"the {cfg['arch']} architecture makes {cfg['model']['size']} px faces but the run "
                                 f"trains at {cfg['size']} px; pass --set size={cfg['model']['size']}")
        return self.build(cfg["model"])

    # -- one step ------------------------------------------------------------------------------
    def _views(self, batch: dict, cfg: dict, gen: torch.Generator, device) -> tuple:
        """(view A, yaw A, view B, yaw B) for this step, each (N, ...)."""
        n = batch["image"].shape[0]
        if cfg["pose"] == "facesynth":
            lo, hi = YAW_RANGE
            yaws = torch.rand(2, n, generator=gen) * (hi - lo) + lo
            # a seeded stream of heads: step k draws indices k*n .. k*n+n-1 of the train split
            heads = [(cfg["seed"] * 1_000_003 + self._calls * n + i) % 1_000_000 for i in range(n)]
            a = facesynth_views(heads, yaws[0].tolist(), cfg["size"]).to(device)
            b = facesynth_views(heads, yaws[1].tolist(), cfg["size"]).to(device)
            return a, yaws[0].to(device), b, yaws[1].to(device)
        from .views import estimate_yaw
        a = batch["image"].float()
        yaw = torch.tensor([float(np.clip(estimate_yaw(im), *YAW_RANGE)) for im in to_uint8(a)], device=device)
        return a, yaw, a.flip(3), -yaw

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self._calls += 1
        m = unwrap(model)
        device = batch["image"].device
        gen = torch.Generator().manual_seed(cfg["seed"] * 7919 + self._calls)
        view_a, yaw_a, view_b, yaw_b = self._views(batch, cfg, gen, device)
        n, lo, hi = view_a.shape[0], *YAW_RANGE

        # multi-view reconstruction through the encoder
        w = m.encoder(view_a)
        recon = recon_loss(m, torch.cat([w, w]), torch.cat([yaw_a, yaw_b]), torch.cat([view_a, view_b]))

        # adversarial: random faces at random yaws against the real views at their own yaws
        z = torch.randn(n, m.config.z_dim, generator=gen).to(device)
        render_yaw = (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)
        swap = torch.rand(n, generator=gen).to(device) < cfg["gpc_swap"]
        cond_yaw = torch.where(swap, (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device), render_yaw)
        w_fake = m.mapping(z, m.camera(cond_yaw))
        with torch.no_grad():
            m.w_avg.lerp_(w_fake.mean(0).detach(), 0.005)
        render_cam = m.camera(render_yaw)
        fake = m.synthesize(w_fake, render_cam, generator=gen, jitter=True)
        D = m.discriminator
        real_cam = m.camera(yaw_a)
        r1 = self._calls % cfg["r1_every"] == 0 and cfg["r1_gamma"] > 0
        real = view_a.detach().requires_grad_(r1)
        real_logits = D(real, raw_target(real, m.config.render_size), real_cam)
        fake_logits = D(fake.image.detach(), fake.raw.detach(), render_cam)
        d_loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        frozen = {k: t.detach() for k, t in D.named_parameters()}
        g_logits = torch.func.functional_call(D, frozen, (fake.image, fake.raw, render_cam))
        g_loss = F.softplus(-g_logits).mean()
        total = d_loss + cfg["adv_weight"] * g_loss + cfg["recon_weight"] * recon
        parts = {"recon": float(recon.detach()), "d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())}
        if r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            penalty = grad.square().flatten(1).sum(1).mean()
            total = total + cfg["r1_gamma"] * cfg["r1_every"] / 2 * penalty
            parts["r1"] = float(penalty.detach())
        return total, parts

    # -- validation ----------------------------------------------------------------------------
    @staticmethod
    def _val_heads(cfg: dict) -> list[int]:
        return list(range(min(int(cfg["val_n"]), 16)))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        m = unwrap(model)
        device = m.w_avg.device
        if cfg["pose"] == "landmarks":             # photos: the same view back (no second view is known)
            x = torch.cat([b["image"].float() for b in batches])[:16].to(device)
            l1 = float((m.synthesize(m.encoder(x), m.camera(torch.zeros(len(x)))).image - x).abs().mean())
            return {"score": -l1, "same_view_l1": l1}
        heads = self._val_heads(cfg)
        seen = facesynth_views(heads, [-20.0] * len(heads), cfg["size"], "val").to(device)
        truth = facesynth_views(heads, [20.0] * len(heads), cfg["size"], "val").to(device)
        out = m.synthesize(m.encoder(seen), m.camera(torch.full((len(heads),), 20.0)))
        l1 = float((out.image - truth).abs().mean())
        return {"score": -l1, "novel_view_l1": l1}

    @torch.no_grad()
    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        """Rows: a val head at -30..30 (truth, then the model's render of its yaw-0 view's w);
        then random faces at the same yaws."""
        from ...data.sheet import image_grid
        from ...io import write_png
        m = unwrap(model)
        yaws = [-30.0, -15.0, 0.0, 15.0, 30.0]
        k = int(cfg["sample_n"])
        cells = []
        for head in range(k):
            truth = facesynth_views([head] * 5, yaws, cfg["size"], "val").to(m.w_avg.device)
            w = m.encoder(truth[2:3]).expand(5, -1)
            cells += list(to_uint8(truth)) + list(to_uint8(m.synthesize(w, m.camera(torch.tensor(yaws))).image))
        z = torch.randn(k, m.config.z_dim, generator=torch.Generator().manual_seed(0)).to(m.w_avg.device)
        w = m.mapping(z, m.camera(torch.zeros(k)))
        for i in range(k):
            cells += list(to_uint8(m.synthesize(w[i:i + 1].expand(5, -1), m.camera(torch.tensor(yaws))).image))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(cells, columns=10))


def tiny_checkpoint(root: Path) -> Path:
    """A tiny 32 px multiview model trained 2 steps on FaceSynth (seconds on a CPU): the
    contract tests' and unit tests' model. Returns ROOT/multiview/last."""
    from ...train.loop import train
    root = Path(root)
    train("multiview", "tiny", "facesynth:32", root / "multiview", overrides={"max_steps": 2}, progress=False)
    return root / "multiview" / "last"

