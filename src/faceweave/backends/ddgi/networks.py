"""DDGI's two small networks and the taps that read a frozen diffusion UNet (Kim et al. 2024).

One pass of the conditional denoiser at a noise level sigma gives three things:

  h_t  the bottleneck: the output of the UNet's middle block (B, C, s, s), e.g. 128 x 8 x 8
  f_t  decoder features: the output of each tapped decoder attention block (B, C_k, s_k, s_k)
  a_t  that block's cross-attention map over the condition tokens (B, s_k^2, T), heads
       averaged, read as two maps (B, 2, s_k, s_k): the max and the spread (standard
       deviation) over the tokens each sample has (text, attribute, mask-patch tokens); the
       mean over tokens is 1/T everywhere, so it carries nothing

`MappingNetwork` turns h_t into a W+ code w_m; `StyleModulation` turns each f_t, weighted by
its two attention maps, into a per-layer scale and shift; w = w_m * gamma + beta (the paper's
attention-based style modulation). The modulation's last layer starts at zero, so an
untrained one leaves w = w_m. Nothing in either network mixes the samples of a batch.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...models.unet import AttentionBlock, UNet


@dataclasses.dataclass
class DDGIConfig:
    num_ws: int = 10                        # the generator's W+ layers
    w_dim: int = 256                        # its latent width
    bottleneck_channels: int = 128          # C of h_t
    bottleneck_size: int = 8                # s of h_t
    decoder_channels: tuple[int, ...] = ()  # C_k of each tapped decoder block (empty: mapping only)
    width: int = 128                        # hidden channels of both networks
    decoder_blocks: tuple[int, ...] = ()    # which decoder attention blocks are tapped (0: the deepest)

    def __post_init__(self):
        self.decoder_channels = tuple(self.decoder_channels)
        self.decoder_blocks = tuple(self.decoder_blocks)
        if len(self.decoder_channels) != len(self.decoder_blocks):
            raise ValueError("decoder_channels and decoder_blocks must have one entry per tapped block")


@dataclasses.dataclass
class DDGIArch:
    """A named architecture of the networks; the shapes follow from the parts (DDGIConfig)."""
    width: int = 128                        # hidden channels of both networks
    blocks: tuple[int, ...] = ()            # decoder attention blocks the style modulation reads

    def __post_init__(self):
        self.blocks = tuple(self.blocks)


def decoder_attention_blocks(unet: UNet) -> list[AttentionBlock]:
    """The UNet's decoder attention blocks, deepest first (the order `decoder_blocks` counts in)."""
    return [m for blocks in unet.up for m in blocks if isinstance(m, AttentionBlock)]


def _cross_attention_weights(mha: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor,
                             pad: torch.Tensor | None) -> torch.Tensor:
    """(B, L, T) attention weights of `mha` (heads averaged), recomputed from its projections;
    a sample without tokens gets zeros."""
    e, h = mha.embed_dim, mha.num_heads
    if mha._qkv_same_embed_dim:
        wq, wk = mha.in_proj_weight[:e], mha.in_proj_weight[e:2 * e]
    else:
        wq, wk = mha.q_proj_weight, mha.k_proj_weight
    bq, bk = (mha.in_proj_bias[:e], mha.in_proj_bias[e:2 * e]) if mha.in_proj_bias is not None else (None, None)
    b, n, t = q.shape[0], q.shape[1], k.shape[1]
    qh = F.linear(q, wq, bq).view(b, n, h, e // h).transpose(1, 2)
    kh = F.linear(k, wk, bk).view(b, t, h, e // h).transpose(1, 2)
    logits = qh @ kh.transpose(-1, -2) / math.sqrt(e // h)           # (B, h, L, T)
    if pad is not None:
        logits = logits.masked_fill(pad[:, None, None, :], float("-inf"))
    return torch.nan_to_num(logits.softmax(-1)).mean(1)


class UNetTap:
    """Records h_t, f_t and a_t while the denoiser runs (a context manager around one
    denoiser call; enter it again for the next call).

        with UNetTap(unet, blocks=(0, 1)) as tap:
            denoised = model(x, sigma, ...)
        tap.bottleneck, tap.features, tap.maps
    """

    def __init__(self, unet: UNet, blocks: Sequence[int] = ()):
        self.unet = unet
        attention = decoder_attention_blocks(unet)
        bad = [b for b in blocks if not 0 <= b < len(attention)]
        if bad:
            raise ValueError(f"decoder block {bad[0]} does not exist; this UNet has {len(attention)} "
                             "decoder attention blocks")
        self.blocks = [attention[b] for b in blocks]
        self._handles: list = []
        self.bottleneck: torch.Tensor | None = None
        self.features: list[torch.Tensor | None] = []
        self.maps: list[torch.Tensor | None] = []

    def __enter__(self) -> "UNetTap":
        self.bottleneck, self.features, self.maps = None, [None] * len(self.blocks), [None] * len(self.blocks)
        self._handles.append(self.unet.mid[-1].register_forward_hook(self._on_mid))
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_hook(self._on_block(i)))
            if block.cross_attn is not None:
                self._handles.append(block.cross_attn.register_forward_hook(self._on_cross(i), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _on_mid(self, module, args, output):
        self.bottleneck = output

    def _on_block(self, i: int):
        def hook(module, args, output):
            self.features[i] = output
            if self.maps[i] is None:           # no condition tokens at all: no cross-attention ran
                self.maps[i] = output.new_zeros(output.shape[0], 2, *output.shape[2:])
            else:
                self.maps[i] = self.maps[i].reshape(output.shape[0], 2, *output.shape[2:])
        return hook

    def _on_cross(self, i: int):
        def hook(module, args, kwargs, output):
            q, k = args[0], args[1]
            pad = kwargs.get("key_padding_mask")
            weights = _cross_attention_weights(module, q, k, pad)             # (B, L, T)
            valid = (torch.ones_like(weights[:, :1]) if pad is None else (~pad)[:, None, :].to(weights.dtype))
            count = valid.sum(-1).clamp(min=1)                                 # (B, 1)
            peak = weights.masked_fill(valid == 0, 0).amax(-1)                   # (B, L)
            # the mean weight is 1 / tokens everywhere (weights sum to 1), so the second map is
            # their spread: how unevenly a pixel attends
            mean = 1.0 / count[..., None]                                        # (B, 1, 1)
            spread = (((weights - mean) * valid).square().sum(-1) / count).sqrt()   # (B, L)
            # scaled by the token count, so a map reads the same whatever the number of tokens
            self.maps[i] = torch.stack([peak * count, spread * count], 1)    # (B, 2, L), reshaped in _on_block
        return hook


class MappingNetwork(nn.Module):
    """h_t (B, C, s, s) -> w_m (B, num_ws, w_dim): two convolutions (the second halves the
    side), then a fully connected layer per W+ code, around the generator's average w."""

    def __init__(self, cfg: DDGIConfig):
        super().__init__()
        c, s = cfg.width, max(cfg.bottleneck_size // 2, 1)
        self.convs = nn.Sequential(
            nn.Conv2d(cfg.bottleneck_channels, c, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, c, 3, stride=2 if cfg.bottleneck_size > 1 else 1, padding=1), nn.LeakyReLU(0.2))
        self.fc = nn.Sequential(nn.Linear(c * s * s, 2 * c), nn.LeakyReLU(0.2), nn.Linear(2 * c, cfg.num_ws * cfg.w_dim))
        nn.init.zeros_(self.fc[-1].weight)
        nn.init.zeros_(self.fc[-1].bias)
        self.num_ws, self.w_dim = cfg.num_ws, cfg.w_dim
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.convs(h.float()).flatten(1)
        return self.w_avg + self.fc(x).view(-1, self.num_ws, self.w_dim)


class StyleModulation(nn.Module):
    """(f_t, a_t) of each tapped block -> gamma, beta (B, num_ws, w_dim): per block a 1x1
    projection, weighted by the block's max and mean attention maps, a 3x3 convolution and a
    global average; the blocks' vectors are joined and mapped to the scale and shift."""

    def __init__(self, cfg: DDGIConfig):
        super().__init__()
        c = cfg.width
        self.project = nn.ModuleList(nn.Conv2d(ch, c, 1) for ch in cfg.decoder_channels)
        self.mix = nn.ModuleList(nn.Sequential(nn.Conv2d(3 * c, c, 3, padding=1), nn.LeakyReLU(0.2))
                                 for _ in cfg.decoder_channels)
        self.out = nn.Linear(c * len(cfg.decoder_channels), 2 * cfg.num_ws * cfg.w_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.num_ws, self.w_dim = cfg.num_ws, cfg.w_dim

    def forward(self, features: Sequence[torch.Tensor], maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = []
        for project, mix, f, a in zip(self.project, self.mix, features, maps):
            x = project(f.float())
            a = a.float()
            x = mix(torch.cat([x, x * a[:, :1], x * a[:, 1:2]], 1))
            pooled.append(x.mean((2, 3)))
        gb = self.out(torch.cat(pooled, 1)).view(-1, 2, self.num_ws, self.w_dim)
        return 1.0 + gb[:, 0], gb[:, 1]


class DDGINets(nn.Module):
    """The trained part of a DDGI model: the mapping network and (with tapped decoder blocks)
    the style modulation. forward(tap) -> W+ (B, num_ws, w_dim)."""

    def __init__(self, cfg: DDGIConfig):
        super().__init__()
        self.config = cfg
        self.mapping = MappingNetwork(cfg)
        self.modulation = StyleModulation(cfg) if cfg.decoder_blocks else None

    def forward(self, bottleneck: torch.Tensor, features: Sequence[torch.Tensor] = (),
                maps: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        w = self.mapping(bottleneck)
        if self.modulation is None:
            return w
        gamma, beta = self.modulation(features, maps)
        return w * gamma + beta
