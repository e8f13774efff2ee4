"""StyleGAN2 in plain PyTorch (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN"): runs on the CPU, no compiled extension.

    G = Generator.from_config(PRESETS["s"])
    img, w = G([z], return_latents=True)                  # z (N, z_dim) -> img (N, 3, S, S) in ~[-1, 1]
    img, _ = G([w_plus], input_is_latent=True)            # W+ codes (N, num_ws, w_dim) from inversion
    img, _ = G([z], truncation=0.7, truncation_latent=G.mean_latent(4096))
    logits = D(img)                                       # (N, 1)

The generator API is the one inversion and editing code expects (rosinality/stylegan2-pytorch):
`styles` is a list of one or two latent batches (two: style mixing at `inject_index`), a batch
may be z or w (`input_is_latent`), or already W+ (N, num_ws, w_dim); `noise` is a list of
per-layer noise maps or None, and `randomize_noise=False` uses the constant noise buffers
(what deterministic generation wants).

What is kept from the paper, and what is simpler:
- mapping network: `mapping_layers` equalized-lr linear layers with a 0.01 learning-rate
  multiplier on normalised z (PixelNorm); w_avg tracked for truncation (eq. 3 of StyleGAN).
- synthesis: a learned 4x4 constant, modulated 3x3 convolutions with weight demodulation
  (sec. 2.2, eq. 1-3), per-layer noise inputs with learned strength, skip architecture
  (tRGB outputs upsampled and summed, fig. 7b). Modulation is applied to activations and
  demodulation to outputs (the "non-fused" form, mathematically the same as modulating
  the weights, and a plain conv2d on the CPU instead of a grouped one).
- up/down-sampling is bilinear (2x bilinear resampling with half-pixel centres is the
  [1, 3, 3, 1] FIR filter of the paper, up to edge handling) instead of upfirdn2d.
- discriminator: residual (fig. 7c) with minibatch standard deviation (ProGAN, sec. 3).
- equalized learning rate everywhere (ProGAN sec. 4.1): weights are N(0, 1) and scaled at
  run time, so Adam's per-parameter step is the same for every layer.
Losses (non-saturating logistic, R1, path length) and the ADA-style augmentation are small
functions at the end; `faceweave train stylegan2` (backends/gan/train.py) puts them together.
"""
from __future__ import annotations

import dataclasses
import math
import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FaceweaveError

SQRT2 = math.sqrt(2.0)


@dataclasses.dataclass
class StyleGAN2Config:
    size: int = 64                 # output resolution (a power of two >= 8)
    z_dim: int = 256               # input latent z
    w_dim: int = 256               # intermediate latent w (and style vectors)
    mapping_layers: int = 4        # MLP depth of the mapping network (paper: 8)
    lr_mlp: float = 0.01           # learning-rate multiplier of the mapping network (paper: 0.01)
    channel_base: int = 4096       # channels at resolution r = min(channel_max, channel_base // r)
    channel_max: int = 256         # widest layer
    d_channel_base: int = 4096     # the same for the discriminator
    d_channel_max: int = 256
    mbstd_group: int = 4           # minibatch-stddev group size (the batch is split into groups)

    def __post_init__(self) -> None:
        log = math.log2(self.size) if self.size > 0 else 0.5
        if log != int(log) or self.size < 8:
            raise FaceweaveError(f"StyleGAN2 size must be a power of two >= 8, got {self.size}")
        if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_max,
               self.d_channel_base, self.d_channel_max, self.mbstd_group) < 1:
            raise FaceweaveError(f"bad StyleGAN2 config {dataclasses.asdict(self)}: sizes must be positive")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def num_ws(self) -> int:
        """Style vectors the synthesis network reads: two per resolution from 8 px, one at 4 px,
        plus the last tRGB (rosinality's n_latent = 2 log2(size) - 2)."""
        return 2 * self.log_size - 2

    def channels(self, res: int, discriminator: bool = False) -> int:
        if discriminator:
            base, top = self.d_channel_base, self.d_channel_max
        else:
            base, top = self.channel_base, self.channel_max
        return max(1, min(top, base // res))


PRESETS: dict[str, StyleGAN2Config] = {
    "tiny": StyleGAN2Config(size=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32,
                            d_channel_base=256, d_channel_max=32),
    # the bundled CPU model (about 25 training images/s on 2 cores; the 256-wide version does 9)
    "s": StyleGAN2Config(size=64, z_dim=256, w_dim=256, mapping_layers=4, channel_base=2048, channel_max=128,
                         d_channel_base=2048, d_channel_max=128),
    "b": StyleGAN2Config(size=64, z_dim=512, w_dim=512, mapping_layers=8, channel_base=16384, channel_max=512,
                         d_channel_base=16384, d_channel_max=512),
    "s128": StyleGAN2Config(size=128, z_dim=256, w_dim=256, mapping_layers=4, channel_base=8192,
                            channel_max=256, d_channel_base=8192, d_channel_max=256),
}


# --- equalized-lr layers ------------------------------------------------------------------

def _derived(module: nn.Module, params: tuple[torch.Tensor, ...], make):
    """make() (tensors computed from `params` alone: their run-time scaling, demodulation
    norms), remembered on `module` while no gradient is recorded through them and they are the
    same tensors, unchanged (storage, in-place version counter, dtype and device). Sampling
    recomputes nothing per image; training, or anything that changes the weights (an optimiser
    step, load_state_dict, .to()), gets fresh values. Not state: never saved, not copied to
    another device."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return make()
    key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
    cached = module.__dict__.get("_derived_cache")
    if cached is None or cached[0] != key:
        cached = (key, make())
        module.__dict__["_derived_cache"] = cached       # one assignment: safe across worker threads
    return cached[1]


class EqualLinear(nn.Module):
    """y = x W^T * (lr_mul / sqrt(in)) + b * lr_mul, optionally leaky-ReLU(0.2) * sqrt(2)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = _derived(self, (self.weight, self.bias),
                                lambda: (self.weight * self.scale, self.bias * self.lr_mul))
        y = F.linear(x, weight, bias)
        return F.leaky_relu(y, 0.2) * SQRT2 if self.activate else y


class EqualConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.padding, self.activate = 1 / math.sqrt(cin * kernel * kernel), kernel // 2, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)
        return F.leaky_relu(y, 0.2) * SQRT2 if self.activate else y


def _up(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling (align_corners=False), written out: each output pixel is 3/4 of
    its source pixel and 1/4 of the neighbour on its side, edges repeated. The same values as
    F.interpolate up to float rounding, without the copies between memory layouts that its
    CPU kernel makes of every input and output."""
    for dim in (3, 2):
        n = x.shape[dim]
        before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
        after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        pair = torch.stack([torch.lerp(x, before, 0.25), torch.lerp(x, after, 0.25)], dim + 1)
        x = pair.flatten(dim, dim + 1)
    return x


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)


class ModulatedConv2d(nn.Module):
    """Style-modulated 3x3 (or 1x1) conv (StyleGAN2 eq. 1-3): scale input channels by the style
    s = A(w), convolve, and divide each output channel by the norm its modulated weights would
    have (demodulation), so activations keep unit variance without AdaIN's normalisation."""

    def __init__(self, cin: int, cout: int, kernel: int, w_dim: int, demodulate: bool = True,
                 upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)   # styles start at 1: plain conv at init
        self.scale, self.padding = 1 / math.sqrt(cin * kernel * kernel), kernel // 2
        self.demodulate, self.upsample = demodulate, upsample

    def _scaled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The run-time scaled weight and its taps' summed squares, transposed (cin, cout)."""
        weight = self.weight * self.scale
        return weight, weight.square().sum((2, 3)).t()

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)                                            # (N, cin)
        # ||w'_{o,.}||: sum over in-channels and taps of (w_{o,i,k} s_i)^2, i.e. the styles'
        # squares times the taps' summed squares (one small matrix product)
        weight, taps = _derived(self, (self.weight,), self._scaled)
        if self.upsample:
            x = _up(x)
        y = F.conv2d(x * style[:, :, None, None], weight, padding=self.padding)
        if self.demodulate:
            sq = style.square() @ taps
            y = y * torch.rsqrt(sq + 1e-8)[:, :, None, None]
        return y


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))                     # learned, starts silent

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.strength * noise


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, w, noise=None):
        x = self.noise(self.conv(x, w), noise)
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * SQRT2


class ToRGB(nn.Module):
    def __init__(self, cin: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x, w, skip=None):
        y = self.conv(x, w) + self.bias[None, :, None, None]
        return y if skip is None else y + _up(skip)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + 1e-8)


# --- generator ----------------------------------------------------------------------------

class Generator(nn.Module):
    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(c.mapping_layers):
            layers.append(EqualLinear(c.z_dim if i == 0 else c.w_dim, c.w_dim, lr_mul=c.lr_mlp, activate=True))
        self.style = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(c.w_dim))              # tracked during training
        ch4 = c.channels(4)
        self.input = nn.Parameter(torch.randn(1, ch4, 4, 4))
        self.conv1 = StyledConv(ch4, ch4, c.w_dim)
        self.to_rgb1 = ToRGB(ch4, c.w_dim)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = ch4
        for log in range(3, c.log_size + 1):
            cout = c.channels(2 ** log)
            self.convs.append(StyledConv(cin, cout, c.w_dim, upsample=True))
            self.convs.append(StyledConv(cout, cout, c.w_dim))
            self.to_rgbs.append(ToRGB(cout, c.w_dim))
            cin = cout
        # constant noise maps, one per StyledConv, for deterministic synthesis
        for i in range(self.num_layers):
            res = 2 ** ((i + 1) // 2 + 2)
            self.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res), persistent=True)

    @classmethod
    def from_config(cls, config: dict | StyleGAN2Config) -> "Generator":
        return cls(config if isinstance(config, StyleGAN2Config) else StyleGAN2Config(**config))

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    @property
    def num_layers(self) -> int:
        return 1 + 2 * (self.config.log_size - 2)

    def noise_buffers(self) -> list[torch.Tensor]:
        return [getattr(self, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh per-layer noise maps (N, 1, r, r), drawn from `generator` when given."""
        dev = self.input.device
        return [torch.randn(batch, 1, *b.shape[2:], generator=generator).to(dev) for b in self.noise_buffers()]

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """The average w of n random z (what truncation pulls towards), (1, w_dim)."""
        z = torch.randn(n, self.config.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.input.device)
        return self.style(z).mean(0, keepdim=True)

    def _check(self, s: torch.Tensor, input_is_latent: bool) -> None:
        c = self.config
        dim = c.w_dim if input_is_latent else c.z_dim
        wplus = input_is_latent and s.ndim == 3 and s.shape[1:] == (c.num_ws, c.w_dim)
        ok = (s.ndim == 2 and s.shape[1] == dim) or wplus
        if not ok:
            want = f"(N, {dim})" + (f" or W+ (N, {c.num_ws}, {c.w_dim})" if input_is_latent else "")
            raise FaceweaveError(f"StyleGAN2 styles have shape {tuple(s.shape)}; expected {want}")

    def forward(self, styles: Sequence[torch.Tensor] | torch.Tensor, return_latents: bool = False,
                inject_index: int | None = None, truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, input_is_latent: bool = False,
                noise: Sequence[torch.Tensor | None] | None = None, randomize_noise: bool = True):
        """-> (image (N, 3, S, S), W+ latents (N, num_ws, w_dim) when return_latents else None)."""
        if torch.is_tensor(styles):
            styles = [styles]
        styles = list(styles)
        for s in styles:
            self._check(s, input_is_latent)
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation < 1:
            centre = self.w_avg[None] if truncation_latent is None else truncation_latent
            styles = [torch.lerp(centre if s.ndim == 2 else centre[:, None], s, truncation) for s in styles]
        n = self.num_ws
        if len(styles) == 1:
            s = styles[0]
            latent = s if s.ndim == 3 else s[:, None].expand(-1, n, -1)
        else:                                               # style mixing: first styles, then second
            if inject_index is None:
                inject_index = random.randint(1, n - 1)
            a, b = (s if s.ndim == 3 else s[:, None].expand(-1, n, -1) for s in styles[:2])
            latent = torch.cat([a[:, :inject_index], b[:, inject_index:]], 1)
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.noise_buffers()
        out = self.input.expand(latent.shape[0], -1, -1, -1)
        out = self.conv1(out, latent[:, 0], noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, latent[:, i], noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, latent[:, i + 1], noise[2 * k + 2])
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip, (latent if return_latents else None)


# --- discriminator ------------------------------------------------------------------------

class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = EqualConv2d(cin, cin, 3, activate=True)
        self.conv2 = EqualConv2d(cin, cout, 3, activate=True)
        self.skip = EqualConv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        y = _down(self.conv2(self.conv1(x)))
        return (y + self.skip(_down(x))) / SQRT2


class Discriminator(nn.Module):
    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = c = config
        self.from_rgb = EqualConv2d(3, c.channels(c.size, True), 1, activate=True)
        blocks = []
        for log in range(c.log_size, 2, -1):
            blocks.append(ResBlock(c.channels(2 ** log, True), c.channels(2 ** (log - 1), True)))
        self.blocks = nn.Sequential(*blocks)
        ch4 = c.channels(4, True)
        self.final_conv = EqualConv2d(ch4 + 1, ch4, 3, activate=True)
        self.final_linear = nn.Sequential(EqualLinear(ch4 * 16, ch4, activate=True), EqualLinear(ch4, 1))

    @classmethod
    def from_config(cls, config: dict | StyleGAN2Config) -> "Discriminator":
        return cls(config if isinstance(config, StyleGAN2Config) else StyleGAN2Config(**config))

    def block_features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The output of every residual block, finest first: the discriminator's own view of an
        image, used as a feature space by feature-matching and perceptual losses."""
        x, feats = self.from_rgb(img), []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.from_rgb(img))
        n, ch, h, w = x.shape
        group = min(n, self.config.mbstd_group)
        while n % group:                                    # a group size that divides the batch
            group -= 1
        # minibatch standard deviation: how varied the samples of a group are, one extra channel
        y = x.reshape(group, -1, ch, h, w)
        std = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean((1, 2, 3))         # (n / group,)
        std = std.repeat(group)[:, None, None, None].expand(n, 1, h, w)
        x = self.final_conv(torch.cat([x, std], 1))
        return self.final_linear(x.flatten(1))


class StyleGAN2(nn.Module):
    """Generator + discriminator in one module: what one training checkpoint holds.

    forward(real) is one training step's loss, so a single backward pass trains both
    networks (what the one training loop of faceweave does for every family): the
    discriminator learns from the logistic loss on real and detached fake images, and the
    generator from the non-saturating loss through a copy of the discriminator's weights
    that carries no gradient. The two updates are simultaneous rather than alternating.
    Running state that must survive a resume lives in buffers: the path-length mean and
    the augmentation probability.
    """

    def __init__(self, config: StyleGAN2Config):
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.register_buffer("pl_mean", torch.zeros(()))     # running mean path length (eq. 4's a)
        self.register_buffer("aug_p", torch.zeros(()))       # adaptive augmentation probability

    @classmethod
    def from_config(cls, config: dict | StyleGAN2Config) -> "StyleGAN2":
        return cls(config if isinstance(config, StyleGAN2Config) else StyleGAN2Config(**config))

    def forward(self, real: torch.Tensor, r1_gamma: float = 0.0, pl_weight: float = 0.0,
                style_mixing: float = 0.9, w_avg_beta: float = 0.995,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """-> (total loss, {name: value} to log, the discriminator's logits on the real batch).

        r1_gamma, pl_weight: regulariser weights for this step (0: skip it; lazy
        regularisation passes the weight times the interval every interval-th step)."""
        G, D = self.generator, self.discriminator
        n, p = real.shape[0], float(self.aug_p)
        z = torch.randn(n, self.config.z_dim, generator=generator).to(real.device)
        styles = [z]
        if style_mixing > 0 and float(torch.rand((), generator=generator)) < style_mixing:
            styles.append(torch.randn(n, self.config.z_dim, generator=generator).to(real.device))
        fake, latents = G(styles, return_latents=True)
        with torch.no_grad():                               # the w that truncation pulls towards
            G.w_avg.lerp_(latents[:, 0].mean(0).to(G.w_avg.dtype), 1 - w_avg_beta)
        real_in = real.detach().requires_grad_(r1_gamma > 0)
        real_logits = D(augment(real_in, p, generator))
        fake_logits = D(augment(fake.detach(), p, generator))
        d_loss = d_logistic_loss(real_logits, fake_logits)
        frozen = {name: t.detach() for name, t in D.named_parameters()}
        g_logits = torch.func.functional_call(D, frozen, (augment(fake, p, generator),))
        g_loss = g_nonsaturating_loss(g_logits)
        total = d_loss + g_loss
        parts = {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()),
                 "real_sign": float(real_logits.detach().sign().mean()), "aug_p": p}
        if r1_gamma > 0:
            r1 = r1_penalty(real_logits, real_in)
            total = total + r1_gamma / 2 * r1
            parts["r1"] = float(r1.detach())
        if pl_weight > 0:
            m = max(1, n // 2)                              # the paper's half batch for this term
            zp = torch.randn(m, self.config.z_dim, generator=generator).to(real.device)
            images, lat = G([zp], return_latents=True)
            penalty, new_mean, length = path_length_penalty(images, lat, self.pl_mean)
            self.pl_mean.copy_(new_mean)
            total = total + pl_weight * penalty
            parts["path_length"] = float(length)
        return total, parts, real_logits.detach()


# --- losses (StyleGAN2 sec. 3 and appendix B) ------------------------------------------------

def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 on real images (Mescheder et al. 2018); the caller scales by gamma / 2."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def path_length_penalty(images: torch.Tensor, latents: torch.Tensor, mean_length: torch.Tensor,
                        decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 eq. 4: (||J_w^T y||_2 - a)^2 with y ~ N(0, I) / sqrt(pixels) and `a` a running
    mean of the lengths; -> (penalty, new running mean, mean length this batch)."""
    y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * y).sum(), latents, create_graph=True)
    lengths = grad.square().sum(2).mean(1).sqrt()
    new_mean = mean_length + decay * (lengths.mean().detach() - mean_length)
    return (lengths - new_mean).square().mean(), new_mean, lengths.mean().detach()


def augment(images: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Differentiable ADA-style augmentation (Karras et al. 2020b), each applied with
    probability p per image: x-flip, integer translation up to 1/8 of the side (reflect
    padded), brightness, contrast and saturation. Applied to real and fake images alike
    before the discriminator, so it cannot leak into what the generator learns."""
    if p <= 0:
        return images
    n, _, h, w = images.shape
    dev = images.device

    def draw(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    def on(k=1):
        return (draw(n, 1, 1, 1) < p).float()

    x = images
    flip = on()
    x = flip * x.flip(3) + (1 - flip) * x
    shift = ((draw(n, 2) * 2 - 1) * 0.125 * torch.tensor([w, h], device=dev)).round() * (draw(n, 1) < p).float()
    pad = max(h, w) // 8 + 1
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = torch.arange(h, device=dev)[None, :] + pad - shift[:, 1:2].long()                # (n, h)
    cols = torch.arange(w, device=dev)[None, :] + pad - shift[:, 0:1].long()                # (n, w)
    idx = torch.arange(n, device=dev)[:, None, None]
    x = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    x = x + on() * (draw(n, 1, 1, 1) - 0.5) * 0.4                                           # brightness
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * torch.exp2(on() * (draw(n, 1, 1, 1) * 2 - 1) * 0.5)          # contrast
    grey = x.mean(1, keepdim=True)
    return grey + (x - grey) * torch.exp2(on() * (draw(n, 1, 1, 1) * 2 - 1))            # saturation
