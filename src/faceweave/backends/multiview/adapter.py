"""A multiview model seen through the StyleGAN2 generator API, rendered from one camera, so a
method written for a StyleGAN2 (ddgi's mapping from diffusion features to W+) can drive it:

    G = FrontalGenerator.load("runs/multiview-64-facesynth/best")
    image, _ = G([wplus], input_is_latent=True)          # the render at yaw 0

What ddgi reads of a generator is all here: `config.size / z_dim / w_dim`, `num_ws`, `w_avg`,
`get_latent(z)`, `make_noise` (none: this generator has no noise inputs) and the call.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import torch
from torch import nn

from ... import checkpoint
from ...errors import FaceweaveError
from .networks import MultiviewConfig, MultiviewGAN


class FrontalGenerator(nn.Module):
    def __init__(self, model: MultiviewGAN, meta: dict | None = None, yaw: float = 0.0):
        super().__init__()
        self.model = model
        c = model.config
        self.meta = meta if meta is not None else {"config": dataclasses.asdict(c)}
        self.yaw = float(yaw)
        self.config = SimpleNamespace(size=c.size, z_dim=c.z_dim, w_dim=c.w_dim)

    @classmethod
    def load(cls, ref: str | Path) -> "FrontalGenerator":
        """A multiview checkpoint (a training run's last/: its EMA weights), frozen."""
        meta, state = checkpoint.load(ref, "multiview")
        try:
            model = MultiviewGAN(MultiviewConfig(**meta["config"]))
        except (TypeError, ValueError) as exc:
            raise FaceweaveError(f"{meta['path']}: config.json does not describe a multiview model ({exc})") from None
        if (Path(meta["path"]) / "ema.safetensors").exists():
            state = checkpoint.load_tensors(meta["path"], "ema")
        checkpoint.load_into(model, state, where=meta["path"])
        return cls(model.eval().requires_grad_(False), meta)

    def save(self, path: Path, storage: str | None = None) -> Path:
        return checkpoint.save(path, "multiview", dataclasses.asdict(self.model.config), self.model.state_dict(),
                               storage=storage, image_size=self.model.config.size)

    @property
    def num_ws(self) -> int:
        return self.model.num_ws

    @property
    def w_avg(self) -> torch.Tensor:
        return self.model.w_avg

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.mapping(z, self.model.camera(torch.zeros(z.shape[0])))

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        return []

    def forward(self, styles: Sequence[torch.Tensor] | torch.Tensor, input_is_latent: bool = False,
                noise=None, randomize_noise: bool = True, return_latents: bool = False, **_unused):
        s = styles if torch.is_tensor(styles) else styles[0]
        w = s if input_is_latent else self.get_latent(s)
        wplus = self.model.wplus(w)
        out = self.model.synthesize(wplus, self.model.camera(torch.full((wplus.shape[0],), self.yaw)))
        return out.image, (wplus if return_latents else None)
