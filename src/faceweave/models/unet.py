"""The denoiser backbone: an ADM/LDM-style UNet with cross-attention to condition tokens.

    residual blocks (GroupNorm, SiLU, conv; the noise embedding as scale and shift)
    self-attention + cross-attention + feed-forward at the low resolutions
    optional spatial conditions concatenated to the input (a one-hot mask, a sketch)

The UNet knows nothing about noise schedules or modalities: it maps (x, c_noise, context,
context_mask, spatial) to an output of x's shape. `diffusion/precond.py` wraps it into the
EDM denoiser D(x; sigma); the backend turns text, attributes, masks and sketches into the
context tokens and spatial channels.

Multi-GPU training wraps it unchanged (accelerate launch --multi_gpu ... faceweave train diffusion ...).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class UNetConfig:
    in_channels: int = 3              # image (or latent) channels
    out_channels: int = 3             # predicted channels (same as the input for x0/eps/v)
    spatial_channels: int = 0         # extra input channels concatenated at full resolution
    base: int = 64                    # channels at the first level
    mults: tuple[int, ...] = (1, 2, 2, 4)   # channel multiplier per level (each level halves H, W)
    num_res: int = 2                  # residual blocks per level
    attn_levels: tuple[int, ...] = (2, 3)   # levels (0 = full resolution) with attention
    context_dim: int = 256            # width of the condition tokens (0 = no cross-attention)
    heads: int = 4                    # attention heads
    dropout: float = 0.0              # dropout inside residual blocks
    groups: int = 16                  # GroupNorm groups
    pooled: bool = False              # context token 0 is a pooled condition vector: taken out of
                                      # cross-attention, an MLP of it is added to the noise embedding

    def __post_init__(self):
        self.mults, self.attn_levels = tuple(self.mults), tuple(self.attn_levels)


# Named sizes: `tiny` for tests, `s` for the CPU default (~8.6 M parameters with the
# conditioner, ~17 MB in fp16; sized so a 2-core CPU trains it at ~2 s per batch of 32),
# `b`/`l` for GPUs.
UNET_PRESETS: dict[str, dict] = {
    "tiny": dict(base=16, mults=(1, 2), num_res=1, attn_levels=(1,), context_dim=32, heads=2, groups=8),
    "s": dict(base=32, mults=(1, 2, 3, 4), num_res=2, attn_levels=(2, 3), context_dim=256, heads=4),
    "b": dict(base=128, mults=(1, 2, 2, 4), num_res=2, attn_levels=(1, 2, 3), context_dim=512, heads=8),
    "l": dict(base=192, mults=(1, 2, 3, 4), num_res=3, attn_levels=(1, 2, 3), context_dim=768, heads=8),
}


def noise_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the (preconditioned) noise level, as in ADM / EDM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / half)
    args = c_noise.float()[:, None] * freqs[None] * 1000.0 / 4.0
    return torch.cat([args.cos(), args.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)             # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.drop(h))


class AttentionBlock(nn.Module):
    """Self-attention over pixels, cross-attention to the condition tokens, feed-forward."""

    def __init__(self, ch: int, context_dim: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.proj_in = nn.Conv2d(ch, ch, 1)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(ch), nn.LayerNorm(ch), nn.LayerNorm(ch)
        self.self_attn = nn.MultiheadAttention(ch, heads, batch_first=True)
        self.cross_attn = (nn.MultiheadAttention(ch, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
                           if context_dim else None)
        self.ff = nn.Sequential(nn.Linear(ch, 4 * ch), nn.GELU(), nn.Linear(4 * ch, ch))
        self.proj_out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, context=None, context_mask=None):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)          # (B, HW, C)
        q = self.ln1(t)
        t = t + self.self_attn(q, q, q, need_weights=False)[0]
        if self.cross_attn is not None and context is not None and context.shape[1] > 0:
            q = self.ln2(t)
            pad = None if context_mask is None else ~context_mask
            attended = self.cross_attn(q, context, context, key_padding_mask=pad, need_weights=False)[0]
            if pad is not None:
                # A sample with no tokens at all gets no cross-attention (softmax over nothing).
                attended = attended * context_mask.any(dim=1)[:, None, None].to(attended.dtype)
                attended = torch.nan_to_num(attended)
            t = t + attended
        t = t + self.ff(self.ln3(t))
        return x + self.proj_out(t.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        emb = cfg.base * 4
        self.emb_dim = cfg.base
        self.time = nn.Sequential(nn.Linear(cfg.base, emb), nn.SiLU(), nn.Linear(emb, emb))
        if cfg.pooled:
            if not cfg.context_dim:
                raise ValueError("pooled needs a context_dim")
            self.pool = nn.Sequential(nn.Linear(cfg.context_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
            nn.init.zeros_(self.pool[-1].weight)       # starts as a model without the pooled path
            nn.init.zeros_(self.pool[-1].bias)
        self.stem = nn.Conv2d(cfg.in_channels + cfg.spatial_channels, cfg.base, 3, padding=1)
        self.down = nn.ModuleList()
        chans, ch = [cfg.base], cfg.base
        for level, mult in enumerate(cfg.mults):
            for _ in range(cfg.num_res):
                blocks = [ResBlock(ch, cfg.base * mult, emb, cfg.dropout, cfg.groups)]
                ch = cfg.base * mult
                if level in cfg.attn_levels:
                    blocks.append(AttentionBlock(ch, cfg.context_dim, cfg.heads, cfg.groups))
                self.down.append(nn.ModuleList(blocks))
                chans.append(ch)
            if level < len(cfg.mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                chans.append(ch)
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb, cfg.dropout, cfg.groups),
                                  AttentionBlock(ch, cfg.context_dim, cfg.heads, cfg.groups),
                                  ResBlock(ch, ch, emb, cfg.dropout, cfg.groups)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.mults))):
            for i in range(cfg.num_res + 1):
                blocks = [ResBlock(ch + chans.pop(), cfg.base * mult, emb, cfg.dropout, cfg.groups)]
                ch = cfg.base * mult
                if level in cfg.attn_levels:
                    blocks.append(AttentionBlock(ch, cfg.context_dim, cfg.heads, cfg.groups))
                if level > 0 and i == cfg.num_res:
                    blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    blocks.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.up.append(nn.ModuleList(blocks))
        self.out = nn.Sequential(nn.GroupNorm(min(cfg.groups, ch), ch), nn.SiLU(),
                                 nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _run(self, blocks, h, emb, context, context_mask):
        for block in blocks:
            if isinstance(block, ResBlock):
                h = block(h, emb)
            elif isinstance(block, AttentionBlock):
                h = block(h, context, context_mask)
            else:
                h = block(h)
        return h

    def forward(self, x, c_noise, context=None, context_mask=None, spatial=None):
        """x (B, C, H, W); c_noise (B,); context (B, T, context_dim); context_mask (B, T) bool;
        spatial (B, spatial_channels, H, W). With config.pooled, context[:, 0] is the pooled
        vector (ignored where context_mask[:, 0] is False). H and W must be divisible by 2^(levels-1)."""
        factor = 2 ** (len(self.config.mults) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"UNet input size {tuple(x.shape[-2:])} must be divisible by {factor}")
        emb = self.time(noise_embedding(c_noise, self.emb_dim).to(x.dtype))
        if self.config.pooled and context is not None and context.shape[1] > 0:
            # an absent pooled token adds nothing, exactly as a call without any context
            valid = (context_mask[:, :1] if context_mask is not None
                     else context.new_ones(context.shape[0], 1, dtype=torch.bool))
            emb = emb + self.pool(context[:, 0].to(x.dtype)) * valid.to(x.dtype)
            context = context[:, 1:]
            context_mask = None if context_mask is None else context_mask[:, 1:]
        if self.config.spatial_channels:
            if spatial is None:
                spatial = x.new_zeros(x.shape[0], self.config.spatial_channels, *x.shape[2:])
            x = torch.cat([x, spatial.to(x.dtype)], dim=1)
        h = self.stem(x)
        skips = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb, context, context_mask)
            skips.append(h)
        h = self._run(self.mid, h, emb, context, context_mask)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, skips.pop()], dim=1), emb, context, context_mask)
        return self.out(h)
