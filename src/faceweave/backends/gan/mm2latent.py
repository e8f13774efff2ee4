"""MM2Latent as one module: the frozen StyleGAN2 generator, the mask and sketch autoencoders,
the multimodal mapper and (optionally) the inversion encoder: what a `gan` checkpoint holds.

    model = MM2Latent.from_config(meta["config"])             # {"generator": ..., "mapper": ..., ...}
    w = model.map(text=pooled, mask=masks, sketch=sketches)   # (N, num_ws, w_dim)
    images, _ = model.generator([w], input_is_latent=True, randomize_noise=False)

Only the mapper learns in `faceweave train gan`; the generator comes from `faceweave train
stylegan2`, the autoencoders from `faceweave train mask_ae` / `sketch_ae`, the encoder from
`faceweave train gan_encoder`, and all of them are copied in, so a gan checkpoint stands
alone (the backend needs nothing else but the text encoder).
"""
from __future__ import annotations

import torch
from torch import nn

from ...errors import FaceweaveError
from .mapper import Mapper, MapperConfig
from .modality_ae import build_autoencoder
from ...models.stylegan2 import Generator, StyleGAN2Config

PARTS = ("generator", "mask_ae", "sketch_ae", "mapper", "encoder")


class MM2Latent(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        missing = [k for k in PARTS[:4] if not config.get(k)]
        if missing:
            raise FaceweaveError(f"a gan model config needs {', '.join(missing)}; re-export the checkpoint")
        self.config = {k: config.get(k) for k in PARTS}
        self.generator = Generator(StyleGAN2Config(**config["generator"]))
        self.mask_ae = build_autoencoder(config["mask_ae"])
        self.sketch_ae = build_autoencoder(config["sketch_ae"])
        self.mapper = Mapper.from_config(MapperConfig(**config["mapper"]))
        self.encoder = None
        if config.get("encoder"):
            from ...models.gan_encoder import GANEncoder
            self.encoder = GANEncoder.from_config(config["encoder"])

    @classmethod
    def from_config(cls, config: dict) -> "MM2Latent":
        return cls(config)

    @property
    def size(self) -> int:
        return self.generator.config.size

    def map(self, text: torch.Tensor | None = None, mask: torch.Tensor | None = None,
            sketch: torch.Tensor | None = None, present: torch.Tensor | None = None) -> torch.Tensor:
        """Conditions -> W+ codes. text (N, 384) pooled sentence vectors, mask (N, S, S) int64
        class ids, sketch (N, 1, S, S) in [0, 1]; None (or a False column of present, (N, 3)
        in the order text, mask, sketch) for what is not given."""
        mask_code = None if mask is None else self.mask_ae.encode(mask)
        sketch_code = None if sketch is None else self.sketch_ae.encode(sketch)
        return self.mapper(text=text, mask_code=mask_code, sketch_code=sketch_code, present=present)
