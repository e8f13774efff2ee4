"""Training DDGI's two networks (train/tasks.py says what a task is).

    faceweave train ddgi --preset s --data celebamask1k:64 --out runs/ddgi-64 \
        --set diffusion=diffusion-64-real --set generator=stylegan2-64-real
    # a multiview generator (docs/multiview.md), rendered at yaw 0 during training
    faceweave train ddgi --preset s --data facesynth:64 --out runs/ddgi-64-multiview \
        --set diffusion=diffusion-64 --set generator=runs/multiview-64-facesynth/best

Each step takes training photos with their conditions (one caption, partly hidden attributes,
mask, sketch, each modality dropped per sample as the diffusion model was trained), noises
each photo to a level drawn from `sigmas`, runs the frozen diffusion model once with the tap
on (networks.UNetTap), maps what it read to W+ and renders it with the frozen generator. The
loss pulls the rendering towards `target`:

    denoised   the diffusion model's own estimate D(x_t) from that pass (the paper's first
               stage: reproduce what the diffusion model means)
    photo      the photo itself (the structural and textual signals the conditions carry)

as an L1 distance at the full, half and quarter side, plus `w_reg` times the squared
distance of the code from the generator's average w (keeps it where the generator draws
faces). Validation draws from pure noise at the inference level `sigma`, as generation does,
and scores -L1 to the photos of the same conditions.

Recipe keys beyond COMMON_DEFAULTS:
    diffusion, generator   the frozen parts (checkpoint folders or bundled names; same size)
    sigmas     training noise levels (one drawn per sample); `sigma` the one generation uses
    target     "denoised" or "photo" (above)
    w_reg      weight of the latent regulariser
    mask_weight  weight of the cross-entropy between the photo's mask and what a guide parser
               (`guide_parser`, not a parser of the ruler: train/guide.py) reads off the
               rendering (0: off)
    iou_weight   weight of 1 - the soft mIoU between the same masks and that reading, over the
               batch (train/guide.py soft_iou_loss; 0: off): every class counts alike, as in
               the ruler's mIoU, where the cross-entropy weighs them by area
    attr_weight  weight of the binary cross-entropy between the photo's known attributes and
               what a guide classifier (`guide_classifier`, not a bundled classifier:
               train/guide.py) reads off the rendering (0: off)
    code_weight  weight of the squared distance between the code and the photo's own W+ code
               in a bank made by projecting the training photos into this generator
               (`codes`, scripts/project_codes.py; a mirrored photo has none and owes nothing;
               0: off). An addition to the paper's losses: the bank's codes draw the photo's
               layout closer than the image terms alone teach (docs/ddgi.md)
    drop, drop_all, attr_keep_min   condition dropout, as the diffusion task's
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...train.tasks import TINY_RUN, unwrap
from .networks import DDGIArch, DDGIConfig, DDGINets, UNetTap

_DDGI: dict[str, Any] = {"diffusion": None, "generator": None, "sigmas": [5.0, 10.0, 20.0, 40.0, 80.0],
                         "sigma": 20.0, "target": "photo", "w_reg": 1e-3, "drop": 0.3, "drop_all": 0.05,
                         "attr_keep_min": 0.2, "weight_decay": 0.0, "sample_n": 8, "mask_weight": 0.0,
                         "iou_weight": 0.0, "guide_parser": None, "attr_weight": 0.0, "guide_classifier": None,
                         "code_weight": 0.0, "codes": None}
TARGETS = ("denoised", "photo")


class DDGITask:
    family = "ddgi"
    needs = ("image", "attributes", "captions", "mask", "sketch")
    # a model of real faces reads a photo's own conditions with the real-face parser
    # (data.unified.photo_instruments, recorded by the loop as config.json "instruments")
    reads_photos = True
    # the networks' width and which decoder attention blocks the style modulation reads
    # (0 = the deepest; empty: the mapping network alone)
    architectures = {"tiny": DDGIArch(width=32, blocks=(1,)),
                     "s": DDGIArch(width=128, blocks=(2, 5)),
                     "s_mapping": DDGIArch(width=128, blocks=())}
    presets: dict[str, dict] = {
        "tiny": {**_DDGI, **TINY_RUN, "arch": "tiny", "lr": 1e-3, "sample_n": 4},
        "s": {**_DDGI, "arch": "s", "size": 64, "batch_size": 16, "lr": 5e-4, "warmup_steps": 100,
              "max_steps": 3_000, "ema_decay": 0.995, "ckpt_every": 100, "eval_every": 250, "log_every": 25,
              "val_n": 64, "workers": 0},
    }

    # init= may come from a ddgi model on other parts of the same shapes (e.g. a generator
    # trained further): the two networks carry over, the new parts are recorded
    init_may_differ = ("diffusion", "generator")

    def __init__(self):
        self._parts: dict[str, Any] = {}
        self._calls = 0

    @staticmethod
    def sampling(cfg: dict) -> dict:
        from .pipeline import DDGIPipeline
        return {**DDGIPipeline.SAMPLING, "sigma": float(cfg["sigma"])}

    def build(self, config: dict) -> nn.Module:
        return DDGINets(DDGIConfig(**config["nets"]))

    def init_model(self, cfg: dict) -> nn.Module:
        """Loads the frozen parts named by the recipe (or by a resumed run's model config),
        fits the networks to them and records both, with fingerprints, in the model config."""
        from ...errors import FaceweaveError
        from .pipeline import load_diffusion_part, load_generator_part, nets_config
        model_cfg = cfg["model"]
        if "nets" in model_cfg:                                # a resumed run: its parts are named
            refs = {k: model_cfg[k]["model"] for k in ("diffusion", "generator")}
        else:
            missing = [k for k in ("diffusion", "generator") if not cfg.get(k)]
            if missing:
                raise FaceweaveError(f"faceweave train ddgi needs {' and '.join(missing)}: e.g. --set "
                                     "diffusion=diffusion-64-real --set generator=stylegan2-64-real")
            refs = {k: str(cfg[k]) for k in ("diffusion", "generator")}
        if cfg["target"] not in TARGETS:
            raise FaceweaveError(f"target must be one of {', '.join(TARGETS)}, got {cfg['target']!r}")
        sigmas = [float(s) for s in cfg["sigmas"]]
        if not sigmas or not all(0.01 <= s <= 80 for s in sigmas + [float(cfg["sigma"])]):
            raise FaceweaveError(f"sigmas and sigma must be noise levels from 0.01 to 80, got {cfg['sigmas']} "
                                 f"and {cfg['sigma']}")
        diffusion, dfp = load_diffusion_part(refs["diffusion"])
        G, _, gfp = load_generator_part(refs["generator"])
        sizes = {"the diffusion model": diffusion.size, "the generator": G.config.size, "this run": cfg["size"]}
        if len(set(sizes.values())) != 1:
            raise FaceweaveError("the parts must work at one size: " + ", ".join(f"{k} {v} px" for k, v in sizes.items())
                                 + "; pass --set size= their size, or parts of one size")
        if "nets" in model_cfg:
            nets = DDGIConfig(**model_cfg["nets"])
        else:
            nets = nets_config(diffusion, G, model_cfg["blocks"], model_cfg["width"])
        cfg["model"] = {"nets": dataclasses.asdict(nets),
                        "diffusion": {"model": refs["diffusion"], "fingerprint": dfp},
                        "generator": {"model": refs["generator"], "fingerprint": gfp}}
        self._parts = {"diffusion": diffusion, "generator": G}
        model = self.build(cfg["model"])
        model.mapping.w_avg.copy_(G.w_avg)
        return model

    def setup(self, cfg: dict, device) -> None:
        from ..diffusion.train import DiffusionTask
        self._parts["diffusion"].model.to(device)
        self._parts["generator"].to(device)
        if "conditions" not in self._parts:
            self._parts["conditions"] = DiffusionTask()
        self._parts["conditions"].setup(cfg, device)
        for key in ("guide", "guide_classifier", "codes"):
            self._parts.pop(key, None)
        if float(cfg.get("mask_weight") or 0) > 0 or float(cfg.get("iou_weight") or 0) > 0:
            from ...train.guide import load_guide
            self._parts["guide"] = load_guide(cfg.get("guide_parser"), device)
        if float(cfg.get("attr_weight") or 0) > 0:
            from ...train.guide import load_guide_classifier
            self._parts["guide_classifier"] = load_guide_classifier(cfg.get("guide_classifier"), device)
        if float(cfg.get("code_weight") or 0) > 0:
            from ..gan.codes import codes_for
            self._parts["codes"] = codes_for(cfg.get("codes"), cfg["model"]["generator"]["fingerprint"],
                                             "code_weight")

    def _tapped(self, model: nn.Module, x: torch.Tensor, sigma: torch.Tensor, cond: dict):
        denoiser = self._parts["diffusion"].model
        with torch.no_grad(), UNetTap(denoiser.denoiser.net, unwrap(model).config.decoder_blocks) as tap:
            denoised = denoiser(x, sigma, **cond)
        return tap, denoised

    def _render(self, model: nn.Module, tap) -> tuple[torch.Tensor, torch.Tensor]:
        w = model(tap.bottleneck, tap.features, tap.maps)
        image = self._parts["generator"]([w], input_is_latent=True, randomize_noise=False)[0]
        return w, image

    @staticmethod
    def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """L1 at the full, half and quarter side (the coarse terms weigh the layout)."""
        loss = (a - b).abs().mean()
        for factor in (2, 4):
            loss = loss + (F.avg_pool2d(a, factor) - F.avg_pool2d(b, factor)).abs().mean()
        return loss / 3

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self._calls += 1
        gen = torch.Generator().manual_seed(cfg["seed"] * 7919 + self._calls)
        cond = self._parts["conditions"]._conditions(batch, cfg, train=True, generator=gen)
        x0 = batch["image"].float()
        n, dev = x0.shape[0], x0.device
        levels = torch.tensor([float(s) for s in cfg["sigmas"]])
        sigma = levels[torch.randint(len(levels), (n,), generator=gen)].to(dev)
        x = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, generator=gen).to(dev)
        tap, denoised = self._tapped(model, x, sigma, cond)
        w, image = self._render(model, tap)
        target = x0 if cfg["target"] == "photo" else denoised.float().clamp(-1, 1)
        l1 = self._l1(image.float(), target)
        reg = (w.float() - unwrap(model).mapping.w_avg).square().mean()
        total = l1 + float(cfg["w_reg"]) * reg
        logs = {"l1": float(l1.detach()), "w_reg": float(reg.detach())}
        mask_weight, iou_weight = float(cfg.get("mask_weight") or 0), float(cfg.get("iou_weight") or 0)
        if mask_weight > 0 or iou_weight > 0:
            from ...train.guide import guide_mask_losses
            ce, iou = guide_mask_losses(self._parts["guide"], image, batch["mask"], torch.ones(n, device=dev))
            total = total + mask_weight * ce + iou_weight * iou
            logs["mask_ce"] = float(ce.detach())
            if iou_weight > 0:
                logs["mask_iou_loss"] = float(iou.detach())
        if float(cfg.get("attr_weight") or 0) > 0:
            from ...train.guide import guide_bce
            bce = guide_bce(self._parts["guide_classifier"], image, batch["attributes"]).mean()
            total = total + float(cfg["attr_weight"]) * bce
            logs["attr_bce"] = float(bce.detach())
        if float(cfg.get("code_weight") or 0) > 0:
            code = self._code_term(w, batch)
            total = total + float(cfg["code_weight"]) * code
            logs["code_mse"] = float(code.detach())
        return total, logs

    def _code_term(self, w: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean squared distance of each code to its photo's bank code, over the photos the
        bank holds (unmirrored; a batch without one owes 0)."""
        from ..gan.codes import known as in_bank
        codes = self._parts["codes"]
        known = in_bank(codes, batch)
        if not any(known):
            return w.sum() * 0.0
        rows = torch.tensor([i for i, k in enumerate(known) if k], device=w.device)
        target = torch.stack([codes[f] for f, k in zip(batch["file"], known) if k]).to(w.device)
        return (w.float().index_select(0, rows) - target).square().mean()

    @torch.no_grad()
    def _from_noise(self, model: nn.Module, batch: dict, cfg: dict) -> torch.Tensor:
        """What generation makes of a batch's full conditions: pure noise at `sigma`, fixed."""
        cond = self._parts["conditions"]._conditions(batch, cfg, train=False)
        x0 = batch["image"]
        gen = torch.Generator().manual_seed(12345)
        sigma = torch.full((x0.shape[0],), float(cfg["sigma"]), device=x0.device)
        x = float(cfg["sigma"]) * torch.randn(x0.shape, generator=gen).to(x0.device)
        tap, _ = self._tapped(model, x, sigma, cond)
        return self._render(model, tap)[1].clamp(-1, 1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        total, count = 0.0, 0
        for batch in batches:
            image = self._from_noise(model, batch, cfg)
            total += float(self._l1(image.float(), batch["image"].float())) * image.shape[0]
            count += image.shape[0]
        l1 = total / max(count, 1)
        return {"score": -l1, "l1": l1}

    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        """photo | its mask | DDGI from its conditions, per row."""
        from ...conditions import colorize_mask
        from ...data.sheet import image_grid
        from ...io import write_png
        batch = {k: v[: int(cfg["sample_n"])] for k, v in batches[0].items()}
        made = self._from_noise(model, batch, cfg)
        rgb = (lambda t: ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        photos, outs = rgb(batch["image"]), rgb(made)
        cells = []
        for i in range(len(outs)):
            cells += [photos[i], colorize_mask(batch["mask"][i].cpu().numpy().astype(np.uint8)), outs[i]]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(cells, columns=6))


def tiny_checkpoint(root: Path) -> Path:
    """A tiny 32 px ddgi model on a tiny diffusion model and a tiny StyleGAN2, each trained a
    few steps on FaceSynth (seconds on a CPU): the contract tests' ddgi model.
    Returns ROOT/ddgi/last."""
    from ...train.loop import train
    from ..diffusion.train import tiny_checkpoint as tiny_diffusion
    root = Path(root)
    diffusion = tiny_diffusion(root)
    train("stylegan2", "tiny", "facesynth:32", root / "stylegan2", overrides={"max_steps": 2}, progress=False)
    train("ddgi", "tiny", "facesynth:32", root / "ddgi", progress=False,
          overrides={"max_steps": 4, "diffusion": str(diffusion), "generator": str(root / "stylegan2" / "last")})
    return root / "ddgi" / "last"
