"""The dynamic diffuser of Collaborative Diffusion (Huang et al., CVPR 2023, sec. 3.2).

Uni-modal diffusion models (one reads text, one a mask, ...) are frozen collaborators. For
each one a small influence network looks at the noisy image x_t, the noise level and that
collaborator's own condition, and predicts a spatial influence map I_i (one channel at the
working resolution). The maps are softmaxed across the collaborators present for a sample
and the collaborators' denoised predictions are mixed pixel by pixel (paper eq. 4-5):

    D(x_t; sigma) = sum_i softmax_i(I_1..I_k)[pixel] * D_i(x_t; sigma | c_i)[pixel]

Collaborators are data: the config lists them ({"name", "modalities", "model",
"fingerprint"}), so two, three or four of them use the same code, and a sample that lacks a
collaborator's condition simply leaves it out of the softmax. The last layer of every
influence network starts at zero, so an untrained diffuser is exactly the naive average of
the collaborators (the paper's ablation baseline), and training can only move away from it
by lowering the denoising loss.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ...conditions import CELEBA_ATTRIBUTES, NUM_CLASSES
from ...models.conditioner import MODALITIES
from ...models.unet import noise_embedding

TEXT_DIM = 384                      # all-MiniLM-L6-v2 hidden size


@dataclasses.dataclass
class DiffuserConfig:
    collaborators: list[dict]          # [{"name", "modalities": [...], "model", "fingerprint"}], in mixing order
    channels: int = 3                  # channels of the working space (pixels or latents)
    size: int = 64                     # working side (the collaborators' config.size)
    width: int = 32                    # influence network width (channels of its first level)
    emb_dim: int = 64                  # noise-level + vector-condition embedding width
    sigma_data: float = 0.5            # input scaling as in EDM: c_in = 1 / sqrt(sigma^2 + sd^2)

    def __post_init__(self):
        self.collaborators = [dict(c) for c in self.collaborators]
        names = [c.get("name") for c in self.collaborators]
        if len(self.collaborators) < 2 or len(set(names)) != len(names):
            raise ValueError(f"a dynamic diffuser needs two or more collaborators with distinct names, got {names}")
        for c in self.collaborators:
            c["modalities"] = list(c.get("modalities") or [])
            unknown = set(c["modalities"]) - set(MODALITIES)
            if not c["modalities"] or unknown:
                raise ValueError(f"collaborator {c['name']!r} has bad modalities {c['modalities']}")

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.collaborators]


def _group_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class _Block(nn.Module):
    """conv - norm - FiLM(embedding) - SiLU."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.norm = _group_norm(c_out)
        self.film = nn.Linear(emb_dim, 2 * c_out)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        return F.silu(self.norm(self.conv(x)) * (1 + scale) + shift)


class InfluenceNet(nn.Module):
    """(x_t, noise level, one collaborator's condition) -> (B, 1, H, W) influence logits.

    Spatial conditions (mask one-hot, sketch) are concatenated to the input; vector ones
    (mean-pooled text tokens, the attribute vector) join the noise embedding that modulates
    every block. Two scales (full and half resolution) with a skip: enough to see where the
    face's parts are."""

    def __init__(self, modalities: list[str], channels: int, width: int, emb_dim: int):
        super().__init__()
        self.modalities = list(modalities)
        spatial = NUM_CLASSES * ("mask" in modalities) + ("sketch" in modalities)
        vector = TEXT_DIM * ("text" in modalities) + len(CELEBA_ATTRIBUTES) * ("attributes" in modalities)
        self.emb_dim = emb_dim
        self.noise_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.vector_proj = nn.Linear(vector, emb_dim) if vector else None
        self.inp = _Block(channels + spatial, width, emb_dim)
        self.down = _Block(width, 2 * width, emb_dim, stride=2)
        self.mid = _Block(2 * width, 2 * width, emb_dim)
        self.up = _Block(3 * width, width, emb_dim)
        self.out = nn.Conv2d(width, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)          # zero logits: the untrained diffuser averages
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: dict) -> torch.Tensor:
        emb = self.noise_mlp(noise_embedding(c_noise, self.emb_dim))
        inputs, vectors = [x], []
        if "mask" in self.modalities:
            inputs.append(F.one_hot(cond["mask"].long(), NUM_CLASSES).permute(0, 3, 1, 2).to(x.dtype))
        if "sketch" in self.modalities:
            inputs.append(cond["sketch"].to(x.dtype))
        if "text" in self.modalities:
            valid = cond["text_mask"].to(x.dtype)[..., None]
            vectors.append((cond["text"].to(x.dtype) * valid).sum(1) / valid.sum(1).clamp(min=1))
        if "attributes" in self.modalities:
            a = cond["attributes"].to(x.dtype)
            vectors.append((a == 1).to(x.dtype) - (a == 0).to(x.dtype))     # +1 / -1, unknown 0
        if self.vector_proj is not None:
            emb = emb + self.vector_proj(torch.cat(vectors, 1))
        emb = F.silu(emb)
        h0 = self.inp(torch.cat(inputs, 1), emb)
        h = self.mid(self.down(h0, emb), emb)
        h = F.interpolate(h, size=h0.shape[2:], mode="nearest")
        return self.out(self.up(torch.cat([h, h0], 1), emb))


class DynamicDiffuser(nn.Module):
    """One influence network per collaborator; `weights` softmaxes their maps per pixel over
    the collaborators present for each sample."""

    def __init__(self, config: DiffuserConfig):
        super().__init__()
        self.config = config
        self.nets = nn.ModuleDict({c["name"]: InfluenceNet(c["modalities"], config.channels, config.width,
                                                           config.emb_dim)
                                   for c in config.collaborators})

    @classmethod
    def from_config(cls, config: dict) -> "DynamicDiffuser":
        return cls(DiffuserConfig(**config))

    def logits(self, x: torch.Tensor, sigma, cond: dict, names: list[str] | None = None) -> torch.Tensor:
        """(B, k, H, W) raw influence of each collaborator (or of `names` only, in that order)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        c_in = 1 / (sigma ** 2 + self.config.sigma_data ** 2).sqrt()
        xs, c_noise = x * c_in[:, None, None, None], sigma.log() / 4
        return torch.cat([self.nets[name](xs, c_noise, cond) for name in (names or self.config.names)], 1)

    def weights(self, x: torch.Tensor, sigma, cond: dict, active: torch.Tensor | None = None,
                names: list[str] | None = None) -> torch.Tensor:
        """(B, k, H, W) mixing weights, summing to 1 over k. active (B, k) bool: collaborators
        whose condition a sample has (a sample with none of them averages all)."""
        logits = self.logits(x, sigma, cond, names).float()
        if active is not None:
            active = active.to(logits.device)
            active = active | ~active.any(1, keepdim=True)
            logits = logits.masked_fill(~active[:, :, None, None], float("-inf"))
        return logits.softmax(1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict, predictions: list[torch.Tensor],
                active: torch.Tensor | None = None) -> torch.Tensor:
        """The mixed prediction: sum_i w_i * predictions[i] (predictions in collaborator order)."""
        w = self.weights(x, sigma, cond, active)
        return mix(predictions, w)


def mix(predictions: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Per-pixel weighted sum of k predictions (B, C, H, W) with weights (B, k, H, W)."""
    out = torch.zeros_like(predictions[0], dtype=weights.dtype)
    for i, p in enumerate(predictions):
        out = out + weights[:, i:i + 1] * p.to(weights.dtype)
    return out


def active_collaborators(config: DiffuserConfig, present: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, k) bool: collaborator i is active for a sample that has any of its modalities."""
    cols = []
    for c in config.collaborators:
        col = None
        for m in c["modalities"]:
            col = present[m] if col is None else col | present[m]
        cols.append(col)
    return torch.stack(cols, 1)
