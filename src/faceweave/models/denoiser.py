"""The conditional denoiser of the `diffusion` backend: Conditioner + UNet + EDM preconditioning.

One model conditioned on text, attributes, mask and sketch at once (Giambi & Lisanti 2023),
any subset of them present per sample. It works on pixels (64 px) or on the latents of a
frozen VAE (128 px and up, `DenoiserConfig.vae`); `model.space` encodes and decodes, and
masks and sketches are given at the model's own (latent) side. `DenoiserConfig` holds every constructor argument
(what checkpoint config.json stores); `DENOISER_PRESETS` names the sizes.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..diffusion.precond import EDMPrecond
from .conditioner import MODALITIES, Conditioner, ConditionerConfig
from .unet import UNET_PRESETS, UNet, UNetConfig
from .vae import VAE, LatentSpace, PixelSpace, VAEConfig


@dataclasses.dataclass
class DenoiserConfig:
    size: int = 64                         # image side (pixels, or latent side with a VAE)
    channels: int = 3                      # image (or latent) channels
    unet: str = "s"                        # UNet preset name (models/unet.py)
    context_dim: int | None = None         # token width; None = the preset's
    patch: int = 8                         # mask/sketch token patch size
    mask_mode: str = "both"                # mask as "tokens", "spatial" or "both"
    sketch_mode: str = "spatial"           # sketch as "tokens", "spatial" or "both"
    modalities: tuple[str, ...] = MODALITIES   # conditions this model accepts
    sigma_data: float = 0.5                # EDM's data standard deviation (images in [-1, 1])
    vae: dict | None = None                # VAEConfig of a frozen autoencoder: latent diffusion
                                           # (size and channels are then the latent's)
    pooled: bool = False                   # a global path: pooled text + attributes added to the
                                           # noise embedding (models/conditioner.py); off for
                                           # checkpoints that predate it (an early diffusion-64)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)


DENOISER_PRESETS = {name: {"unet": name} for name in UNET_PRESETS}


class ConditionalDenoiser(nn.Module):
    """D(x; sigma | conditions): call with the noisy batch, sigma and the condition tensors."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        self.config = cfg = config
        unet_kw = dict(UNET_PRESETS[cfg.unet])
        if cfg.context_dim is not None:
            unet_kw["context_dim"] = cfg.context_dim
        self.conditioner = Conditioner(ConditionerConfig(
            context_dim=unet_kw["context_dim"], size=cfg.size, patch=cfg.patch, mask_mode=cfg.mask_mode,
            sketch_mode=cfg.sketch_mode, modalities=cfg.modalities, pooled=cfg.pooled))
        unet = UNet(UNetConfig(in_channels=cfg.channels, out_channels=cfg.channels, pooled=cfg.pooled,
                               spatial_channels=self.conditioner.config.spatial_channels, **unet_kw))
        self.denoiser = EDMPrecond(unet, cfg.sigma_data)
        # Where the denoiser works: pixels, or the latents of a frozen VAE (saved with the model,
        # so a checkpoint is self-contained).
        if cfg.vae is not None:
            vae = VAE(VAEConfig(**cfg.vae))
            if vae.config.latent_channels != cfg.channels:
                raise ValueError(f"channels ({cfg.channels}) must equal the VAE's latent_channels "
                                 f"({vae.config.latent_channels})")
            self.space = LatentSpace(vae)
        else:
            self.space = PixelSpace()

    @property
    def image_size(self) -> int:
        """The side of the images this model makes (config.size times the VAE's factor)."""
        return self.config.size * self.space.factor

    def forward(self, x: torch.Tensor, sigma, text=None, text_mask=None, attributes=None, mask=None,
                sketch=None, present: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if all(t is None for t in (text, attributes, mask, sketch)):
            context = context_mask = spatial = None
            if self.conditioner.config.spatial_channels:
                spatial = x.new_zeros(x.shape[0], self.conditioner.config.spatial_channels, *x.shape[2:])
        else:
            context, context_mask, spatial = self.conditioner(text, text_mask, attributes, mask, sketch, present)
        return self.denoiser(x, sigma, context=context, context_mask=context_mask, spatial=spatial)
