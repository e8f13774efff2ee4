"""Turns Conditions into what the denoiser consumes: condition tokens and spatial channels.

Giambi & Lisanti (2023) condition one diffusion model on attributes and a semantic mask by
cross-attention; we add text and sketches the same way. Each modality becomes tokens in one
shared context sequence (with a learned modality embedding so attention knows which is
which), or, for the spatial ones, channels concatenated to the noisy input:

    text        MiniLM per-token states (384-d, frozen) -> linear -> tokens
    attributes  one learned embedding per (attribute, value); unnamed attributes: no token
    mask        one-hot label map -> patches (a strided conv, as Collaborative Diffusion's
                mask encoder does) -> tokens, and/or 19 spatial channels
    sketch      line map -> patches -> tokens, and/or 1 spatial channel

Any modality may be absent, per sample: it then contributes no tokens (masked out) and
zero spatial channels, which is also how modality dropout trains the unconditional and
partially conditional models that guidance needs.

With `pooled=True` the context also starts with one *pooled token*: the mean-pooled,
L2-normalised MiniLM sentence vector (what the encoder was trained to produce) projected,
plus a projection of the attribute values (two-hot: one slot for 1, one for 0). The UNet
takes token 0 out of the sequence and adds an MLP of it to the noise embedding, the way
ADM conditions on a class (and SDXL on a pooled text vector). It was added because after
1800 steps the cross-attention-only model ignored text and attributes entirely; what it
contributes since is measured in docs/diffusion.md (benchmarks/condition_gain.py
--pooled-off). Its context-mask entry is False when neither text nor attributes are
present, and the token is then zero.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..conditions import CELEBA_ATTRIBUTES, NUM_CLASSES

MODALITIES = ("text", "attributes", "mask", "sketch")


@dataclasses.dataclass
class ConditionerConfig:
    context_dim: int = 256                 # token width (= the UNet's context_dim)
    text_dim: int = 384                    # MiniLM hidden size
    size: int = 64                         # image side the masks and sketches come at
    patch: int = 8                         # mask/sketch patch size for tokens
    mask_mode: str = "both"                # "tokens" | "spatial" | "both"
    sketch_mode: str = "spatial"           # "tokens" | "spatial" | "both"
    modalities: tuple[str, ...] = MODALITIES   # which modalities this model accepts
    pooled: bool = False                   # token 0 = pooled text + attributes (see module docstring)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        for mode in (self.mask_mode, self.sketch_mode):
            if mode not in ("tokens", "spatial", "both"):
                raise ValueError(f"mode must be tokens, spatial or both, got {mode!r}")
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")

    @property
    def spatial_channels(self) -> int:
        n = 0
        if "mask" in self.modalities and self.mask_mode != "tokens":
            n += NUM_CLASSES
        if "sketch" in self.modalities and self.sketch_mode != "tokens":
            n += 1
        return n


class Conditioner(nn.Module):
    def __init__(self, config: ConditionerConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.context_dim
        self.modality_embedding = nn.Embedding(len(MODALITIES), d)
        self.text_proj = nn.Linear(cfg.text_dim, d)
        self.attr_embedding = nn.Embedding(2 * len(CELEBA_ATTRIBUTES), d)
        grid = (cfg.size // cfg.patch) ** 2
        self.mask_patches = nn.Conv2d(NUM_CLASSES, d, cfg.patch, stride=cfg.patch)
        self.sketch_patches = nn.Conv2d(1, d, cfg.patch, stride=cfg.patch)
        self.patch_position = nn.Parameter(torch.randn(1, grid, d) * 0.02)
        if cfg.pooled:
            self.pool_text = nn.Linear(cfg.text_dim, d)
            self.pool_attributes = nn.Linear(2 * len(CELEBA_ATTRIBUTES), d, bias=False)

    def _pooled(self, batch: int, text, text_mask, attributes, keep, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled token (B, 1, D) and its validity (B, 1): text and attributes summed."""
        cfg = self.config
        token = torch.zeros(batch, cfg.context_dim, device=device, dtype=self.pool_attributes.weight.dtype)
        valid = torch.zeros(batch, dtype=torch.bool, device=device)
        if "text" in cfg.modalities and text is not None:
            on = text_mask & keep["text"].to(device)[:, None]
            mean = (text * on[..., None]).sum(1) / on.sum(1, keepdim=True).clamp(min=1)
            has = on.any(1)
            token = token + self.pool_text(F.normalize(mean, dim=-1)) * has[:, None]
            valid |= has
        if "attributes" in cfg.modalities and attributes is not None:
            on = (attributes >= 0) & keep["attributes"].to(device)[:, None]
            twohot = torch.cat([(attributes == 1) & on, (attributes == 0) & on], 1).to(token.dtype)
            has = on.any(1)
            token = token + self.pool_attributes(twohot) * has[:, None]
            valid |= has
        return token[:, None], valid[:, None]

    def _tag(self, tokens: torch.Tensor, modality: str) -> torch.Tensor:
        return tokens + self.modality_embedding.weight[MODALITIES.index(modality)]

    def _patch_tokens(self, conv: nn.Module, image: torch.Tensor, modality: str) -> torch.Tensor:
        return self._tag(conv(image).flatten(2).transpose(1, 2) + self.patch_position, modality)

    def forward(self, text=None, text_mask=None, attributes=None, mask=None, sketch=None,
                present: dict[str, torch.Tensor] | None = None):
        """Inputs for a batch of B (each optional; see module docstring):

        text (B, L, 384) with text_mask (B, L) bool; attributes (B, 40) float with 1/0 and -1 =
        unknown; mask (B, H, W) long class ids; sketch (B, 1, H, W) in [0, 1];
        present: modality -> (B,) bool, False drops that modality for that sample (dropout,
        guidance). Returns (context (B, T, D), context_mask (B, T) bool, spatial or None);
        with config.pooled, context[:, 0] is the pooled token.
        """
        cfg = self.config
        batch = next(t.shape[0] for t in (text, attributes, mask, sketch) if t is not None) \
            if any(t is not None for t in (text, attributes, mask, sketch)) else None
        if batch is None:
            raise ValueError("Conditioner needs at least one input to know the batch size")
        present = present or {}
        keep = {m: present.get(m, torch.ones(batch, dtype=torch.bool)) for m in MODALITIES}
        tokens, masks, spatial = [], [], []
        device = self.modality_embedding.weight.device

        def add(tok, valid):
            tokens.append(tok)
            masks.append(valid)

        if cfg.pooled:
            add(*self._pooled(batch, text, text_mask, attributes, keep, device))
        if "text" in cfg.modalities and text is not None:
            add(self._tag(self.text_proj(text), "text"), text_mask & keep["text"].to(device)[:, None])
        if "attributes" in cfg.modalities and attributes is not None:
            known = attributes >= 0
            index = torch.arange(attributes.shape[1], device=device) * 2 + attributes.clamp(min=0).long()
            add(self._tag(self.attr_embedding(index), "attributes"),
                known & keep["attributes"].to(device)[:, None])
        if "mask" in cfg.modalities and mask is not None:
            onehot = F.one_hot(mask.long(), NUM_CLASSES).permute(0, 3, 1, 2).float()
            onehot = onehot * keep["mask"].to(device)[:, None, None, None]
            if cfg.mask_mode != "spatial":
                tok = self._patch_tokens(self.mask_patches, onehot, "mask")
                add(tok, keep["mask"].to(device)[:, None].expand(-1, tok.shape[1]))
            if cfg.mask_mode != "tokens":
                spatial.append(onehot)
        elif "mask" in cfg.modalities and cfg.mask_mode != "tokens":
            spatial.append(torch.zeros(batch, NUM_CLASSES, cfg.size, cfg.size, device=device))
        if "sketch" in cfg.modalities and sketch is not None:
            sk = sketch.float() * keep["sketch"].to(device)[:, None, None, None]
            if cfg.sketch_mode != "spatial":
                tok = self._patch_tokens(self.sketch_patches, sk, "sketch")
                add(tok, keep["sketch"].to(device)[:, None].expand(-1, tok.shape[1]))
            if cfg.sketch_mode != "tokens":
                spatial.append(sk)
        elif "sketch" in cfg.modalities and cfg.sketch_mode != "tokens":
            spatial.append(torch.zeros(batch, 1, cfg.size, cfg.size, device=device))
        if tokens:
            context, context_mask = torch.cat(tokens, 1), torch.cat(masks, 1)
        else:
            context = torch.zeros(batch, 0, cfg.context_dim, device=device)
            context_mask = torch.zeros(batch, 0, dtype=torch.bool, device=device)
        return context, context_mask, (torch.cat(spatial, 1) if spatial else None)


def dropout_masks(batch: int, p: float | dict[str, float], generator=None) -> dict[str, torch.Tensor]:
    """Per-sample, per-modality keep flags for training: each modality is dropped with
    probability p (independently), so the model learns every subset, including none."""
    probs = p if isinstance(p, dict) else {m: p for m in MODALITIES}
    return {m: torch.rand(batch, generator=generator) >= probs.get(m, 0.0) for m in MODALITIES}
