"""The collab backend's training task: the dynamic diffuser over frozen collaborators
(train/tasks.py says what a task is).

    faceweave train collab --preset s64 --data facesynth:64 --out runs/collab64 \
        --collaborators text=runs/uni-text/best,mask=runs/uni-mask/best
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ...train.tasks import TINY_RUN, unwrap
from ..diffusion.train import DiffusionTask


@dataclasses.dataclass
class InfluenceArch:
    width: int = 32                # influence network width (diffuser.py)
    emb_dim: int = 64              # its noise-level / vector-condition embedding


def parse_collaborators(spec) -> dict[str, str]:
    """"text=DIR,mask=DIR" or {"text": DIR, ...} -> {name: checkpoint}, with one-line errors."""
    from ...errors import FaceweaveError
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
                        (the CLI's --collaborators text=DIR,mask=DIR), or views of one multi-modal
                        model trained with modality dropout, each reading some of its modalities
                        (text=diffusion-64-real@text+attributes,mask=diffusion-64-real@mask)
        weighting, p_mean, p_std, attr_keep_min   as for the diffusion task
        drop            probability of leaving a collaborator out of a sample's mixing (at least
                        one stays): the influence maps learn every subset, as used at inference
        sample_n, sample_steps   samples and an influence picture at each validation
    """
    # a model of real faces reads a photo's own conditions with the real-face parser
    # (data.unified.photo_instruments, recorded by the loop as config.json "instruments")
    reads_photos = True

    family = "collab"

    @staticmethod
    def sampling(cfg: dict) -> dict:
        """The sampling defaults written into the run's checkpoints (Pipeline.sampling)."""
        from .pipeline import CollabPipeline
        return dict(CollabPipeline.SAMPLING)

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
        from .pipeline import check_compatible, load_collaborator, reads, split_view
        from ...errors import FaceweaveError
        from .diffuser import DiffuserConfig, DynamicDiffuser
        refs = parse_collaborators(cfg.get("collaborators"))
        before = {c["name"]: c.get("fingerprint") for c in cfg["model"].get("collaborators", [])}
        pipes, specs = {}, []
        for name, ref in refs.items():
            pipe, fp = load_collaborator(ref)
            ref, _ = split_view(ref)
            if before.get(name) and before[name] != fp:
                raise FaceweaveError(f"collaborator {name!r} ({ref}) changed since this run started "
                                     f"(weights {fp}, the run used {before[name]}); start a new run")
            pipes[name] = pipe
            specs.append({"name": name, "modalities": list(reads(pipe)), "model": ref,
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
        from .diffuser import DynamicDiffuser
        return DynamicDiffuser.from_config(config)

    def setup(self, cfg: dict, device) -> None:
        self._helper.setup(cfg, device)
        for pipe in self._pipes.values():
            pipe.model.to(device).eval()
            pipe.device = torch.device(device)

    def _mixed(self, model: nn.Module, batch: dict, cfg: dict, train: bool, sigma: torch.Tensor,
               noise: torch.Tensor | None = None):
        """(x0, the mixed prediction, each collaborator's prediction) at noise levels sigma."""
        from .diffuser import active_collaborators
        from .pipeline import reads
        cond = self._helper._conditions(batch, {**cfg, "drop": 0.0, "drop_all": 0.0}, train=train)
        first = next(iter(self._pipes.values()))
        x0 = DiffusionTask._target(first.model, batch, cond)
        noise = torch.randn_like(x0) if noise is None else noise
        x = x0 + sigma.reshape(-1, 1, 1, 1) * noise
        preds = []
        with torch.no_grad():
            for pipe in self._pipes.values():
                own = reads(pipe)
                mine = {**cond, "present": {m: p if m in own else torch.zeros_like(p)
                                            for m, p in cond["present"].items()}}
                preds.append(pipe.model(x, sigma, **mine).float())
        active = active_collaborators(unwrap(model).config, cond["present"])
        if train and cfg.get("drop", 0.0) > 0:
            keep = torch.rand(active.shape) >= float(cfg["drop"])
            alone = ~keep.any(1)
            keep[alone, torch.randint(0, active.shape[1], (int(alone.sum()),))] = True
            active = active & keep.to(active.device)
        return x0, model(x, sigma, cond, preds, active), preds

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ...diffusion.losses import loss_weight, sample_training_sigmas
        n = batch["image"].shape[0]
        sigma = sample_training_sigmas(n, cfg["p_mean"], cfg["p_std"]).to(batch["image"].device)
        x0, mixed, _ = self._mixed(model, batch, cfg, True, sigma)
        per_image = (mixed - x0).square().flatten(1).mean(1)
        sd = unwrap(model).config.sigma_data
        return (loss_weight(cfg["weighting"], sigma, sd) * per_image).mean(), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        """EDM-weighted validation error at fixed noise levels and noise: the learned mixing,
        the naive average (the paper's ablation) and each collaborator alone."""
        from ...diffusion.losses import loss_weight
        bare = unwrap(model)
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

        from .pipeline import CollabPipeline, influence_picture
        from ...conditions import CELEBA_ATTRIBUTES, Conditions, colorize_mask
        from ...data.sheet import image_grid
        from ...io import write_png
        batch = batches[0]
        n = min(int(cfg["sample_n"]), batch["image"].shape[0])
        caps = batch.get("captions")
        conds = [Conditions(prompt=caps[i][0] if caps and caps[i] else None,
                            attributes={a: int(v) for a, v in zip(CELEBA_ATTRIBUTES, batch["attributes"][i].tolist())
                                        if v >= 0},
                            mask=batch["mask"][i].cpu().numpy().astype(np.uint8),
                            sketch=(batch["sketch"][i, 0].cpu().numpy() * 255).astype(np.uint8))
                 for i in range(n)]
        bare = unwrap(model)
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


def tiny_checkpoint(root: Path) -> Path:
    """Two tiny uni-modal collaborators (text, mask; ROOT/text, ROOT/mask) and an influence
    network trained a few steps on them: the contract tests' collab model. Returns
    ROOT/collab/last."""
    from ...train.loop import train
    root = Path(root)
    for m in ("text", "mask"):
        train("diffusion", "tiny", "facesynth:32", root / m, overrides={"max_steps": 2, "modalities": [m]},
              progress=False)
    refs = {"text": str(root / "text" / "last"), "mask": str(root / "mask" / "last")}
    train("collab", "tiny", "facesynth:32", root / "collab", overrides={"max_steps": 4, "lr": 3e-2, "collaborators": refs},
          progress=False)
    return root / "collab" / "last"
