"""The autoencoder of latent diffusion (Rombach et al. 2022, sec. 3.1) and the image-space interface.

At 64 px the denoiser works on pixels; from 128 px up it works on the latents of this VAE
(a factor-4 or factor-8 downsampling), which cuts the denoiser's cost by 16-64x. The
sampler never knows which: it sees an `ImageSpace` with `encode` (images in [-1, 1] ->
what the denoiser models) and `decode`.

    encoder   conv stem, per level num_res residual blocks then a stride-2 conv, a middle
              block, a conv to 2 x latent_channels (mean and log-variance)
    decoder   the mirror image, nearest upsampling + conv
    loss      L1 + MSE reconstruction + kl_weight * KL(q(z|x) || N(0, I)) (backends/diffusion/train.py)

`scaling_factor` multiplies the latents so that they have about unit standard deviation
(LDM sec. 4.3.2 / appendix G: sigma_data of the diffusion model then holds for latents
too); the VAE task measures it on validation images and stores it with the weights.

    faceweave train vae --preset f4 --data facesynth:128 --out runs/vae128
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class VAEConfig:
    channels: int = 3                 # image channels
    latent_channels: int = 4          # latent channels
    base: int = 64                    # channels at full resolution
    mults: tuple[int, ...] = (1, 2, 4)   # channel multiplier per level; len(mults) - 1 halvings
    num_res: int = 1                  # residual blocks per level
    groups: int = 16                  # GroupNorm groups
    scaling_factor: float = 1.0       # latents are multiplied by this (unit std; measured in training)

    def __post_init__(self):
        self.mults = tuple(self.mults)

    @property
    def factor(self) -> int:
        return 2 ** (len(self.mults) - 1)


VAE_PRESETS: dict[str, dict] = {
    "tiny": dict(base=16, mults=(1, 2), groups=8),                  # tests: factor 2
    "f4": dict(base=64, mults=(1, 2, 4)),                           # 128 px -> 32 x 32 x 4
    "f8": dict(base=64, mults=(1, 2, 4, 4)),                        # 256 px -> 32 x 32 x 4
}


class _Res(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.block = nn.Sequential(nn.GroupNorm(min(groups, cin), cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                   nn.GroupNorm(min(groups, cout), cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.block(x)


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = cfg = config
        g = cfg.groups
        enc: list[nn.Module] = [nn.Conv2d(cfg.channels, cfg.base, 3, padding=1)]
        ch = cfg.base
        for level, mult in enumerate(cfg.mults):
            for _ in range(cfg.num_res):
                enc.append(_Res(ch, cfg.base * mult, g))
                ch = cfg.base * mult
            if level < len(cfg.mults) - 1:
                enc.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        enc += [_Res(ch, ch, g), nn.GroupNorm(min(g, ch), ch), nn.SiLU(), nn.Conv2d(ch, 2 * cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch, 3, padding=1), _Res(ch, ch, g)]
        for level, mult in reversed(list(enumerate(cfg.mults))):
            for _ in range(cfg.num_res + 1):
                dec.append(_Res(ch, cfg.base * mult, g))
                ch = cfg.base * mult
            if level > 0:
                dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]
        dec += [nn.GroupNorm(min(g, ch), ch), nn.SiLU(), nn.Conv2d(ch, cfg.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @classmethod
    def from_config(cls, config: dict) -> "VAE":
        return cls(VAEConfig(**config))

    @property
    def factor(self) -> int:
        return self.config.factor

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] -> (mean, log-variance) of q(z | x), unscaled."""
        side = x.shape[-1]
        if side % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"VAE input sides must be divisible by {self.factor}, got {tuple(x.shape[-2:])}")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents -> images (about [-1, 1])."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, sample: bool = True):
        mean, logvar = self.encode(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decode(z), mean, logvar


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over latent elements, averaged over the batch."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()


# --- image spaces: what the sampler sees --------------------------------------------------

class PixelSpace(nn.Module):
    """The identity: the denoiser models pixels in [-1, 1]."""

    factor = 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class LatentSpace(nn.Module):
    """A frozen VAE: the denoiser models scaled latents (the posterior mean: deterministic,
    so inversion and editing see one latent per photo)."""

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.factor = vae.factor

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()                     # always frozen, whatever the denoiser does
        return self

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x)[0] * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z / self.vae.config.scaling_factor)


def downsample_conditions(mask: torch.Tensor | None, sketch: torch.Tensor | None, size: int):
    """Label maps (B, H, W) and sketches (B, 1, H, W) at the latent side: nearest for labels,
    max-pooling for lines (a thin line must not vanish)."""
    if mask is not None and mask.shape[-1] != size:
        mask = F.interpolate(mask[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    if sketch is not None and sketch.shape[-1] != size:
        sketch = F.adaptive_max_pool2d(sketch.float(), size)
    return mask, sketch
