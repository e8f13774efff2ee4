"""GAN inversion by optimisation: find the W+ code (and optionally the noise maps) whose
StyleGAN2 image matches a photo.

    from faceweave.projector import project, reconstruction_metrics
    result = project(G, photos, init_wplus=encoder(photos), steps=100)   # photos (N, 3, S, S) in [-1, 1]
    result.wplus, result.image, result.history["loss"]                 # (N, num_ws, w_dim), (N, 3, S, S), (steps, N)
    reconstruction_metrics(G, photos, result.wplus)                     # {"psnr": ..., "feature_distance": ...}

The method is the projector of StyleGAN2 (Karras et al. 2020, sec. 5), in
the extended W+ space (Abdal et al. 2019, "Image2StyleGAN") and optionally started from an
encoder's guess (the hybrid inversion of Zhu et al. 2020, "In-Domain GAN Inversion"):
- the loss is a pixel MSE plus a perceptual feature distance (below) between G(w) and the
  target, plus the noise regulariser when the noise maps are optimised too;
- noise regulariser: the noise maps should stay white noise, not become a channel that
  paints the target's details. For each map and each of its down-sampled versions (2x2
  averages, down to 8x8) the squared mean product of the map with itself shifted by one
  pixel (horizontally and vertically) is penalised, i.e. the autocorrelation at lag one at
  several scales; after every step each map is also re-centred and rescaled to unit
  variance, so the penalty only has to fight correlations;
- the learning rate rises linearly over the first 5 % of the steps (Adam's moment
  estimates are poor at first) and falls to zero along a half cosine over the last 25 %
  (the code settles instead of jittering at the end);
- in the first 75 % of the steps the latent is perturbed by Gaussian noise whose size
  starts at `latent_noise` times W's per-coordinate spread and shrinks quadratically to
  zero: an early, coarse exploration that helps the optimiser out of poor basins (the
  StyleGAN2 projector starts at 0.05 of W's total spread over 512 coordinates, about 1.1 in
  these units; a W+ start from an encoder needs less).
Each image of a batch is optimised on its own: the per-image losses are summed (not
averaged), and Adam's update is elementwise, so image i's code moves exactly as it would
in a batch of one. With one torch.Generator per image (a list), the latent perturbations
match too, so a batch gives the same codes as the images projected one by one.

The perceptual term: no LPIPS or VGG weights exist offline, so `FeatureDistance` measures
the distance in the activations of faceweave's own face parser (the bundled parser-64's
encoder), normalised per pixel across channels and compared by squared difference, the
recipe of LPIPS (Zhang et al. 2018) without its learned per-channel weights. It is a
face-parsing network's notion of similarity (parts, boundaries, shapes), not LPIPS, and
its numbers are not comparable with published LPIPS values.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FaceweaveError
from .models.parser import FaceParser


class FeatureDistance(nn.Module):
    """Perceptual distance in a face parser's encoder features (LPIPS-like, unweighted).

    d(a, b) = mean over levels l of mean over pixels of sum over channels
              (f_l(a) / |f_l(a)| - f_l(b) / |f_l(b)|)^2
    where f_l is the output of the parser's encoder level l and |.| the norm over channels
    at a pixel. Each level's term lies in [0, 4], so d does too; 0 for identical images.
    Images of another size are resized to the parser's resolution first. The network is
    frozen and always in eval mode (its BatchNorm uses stored statistics: an image's
    distance does not depend on the rest of the batch), but differentiable in its inputs.

    parser: a parser checkpoint folder or bundled name (None: the bundled parser-64), or a
    FaceParser (then give `size`, its training resolution); levels: which encoder levels
    to compare (None: all).
    """

    def __init__(self, parser: str | os.PathLike | FaceParser | None = None,
                 levels: Sequence[int] | None = None, size: int | None = None):
        super().__init__()
        if isinstance(parser, FaceParser):
            model, self.size = parser, int(size or 64)
        else:
            from .ruler import load_parser
            loaded = load_parser(parser)
            model, self.size = loaded.model, loaded.size
        stages = list(model.down)
        self.levels = sorted(set(range(len(stages)) if levels is None else (int(i) for i in levels)))
        if not self.levels or self.levels[0] < 0 or self.levels[-1] >= len(stages):
            raise FaceweaveError(f"feature levels must lie in 0..{len(stages) - 1}, got {levels!r}")
        self.stages = nn.ModuleList(stages[:self.levels[-1] + 1])     # the decoder is not needed
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureDistance:
        return super().train(False)                     # frozen BatchNorm statistics, always

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-normalised encoder activations of the chosen levels."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise FaceweaveError(f"FeatureDistance takes (N, 3, H, W) images in [-1, 1], got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.size, self.size):
            shrink = x.shape[-1] > self.size
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=shrink)
        dtype = next(self.parameters()).dtype
        x = x.to(dtype)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            if i in self.levels:
                out.append(x * torch.rsqrt(x.square().sum(1, keepdim=True) + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-image distances (N,) between two batches of images in [-1, 1]."""
        if a.shape != b.shape:
            raise FaceweaveError(f"FeatureDistance compares equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
        terms = [(fa - fb).square().sum(1).mean((1, 2)) for fa, fb in zip(self.features(a), self.features(b))]
        return torch.stack(terms).mean(0)


_DISTANCES: dict[str, FeatureDistance] = {}


def default_feature_distance(device: str | torch.device = "cpu") -> FeatureDistance:
    """The bundled-parser FeatureDistance on `device`, built once per device."""
    key = str(torch.device(device))
    if key not in _DISTANCES:
        _DISTANCES[key] = FeatureDistance().to(device)
    return _DISTANCES[key]


# --- metrics --------------------------------------------------------------------------------

def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB (N,) of images in [-1, 1] (clamped; peak-to-peak 2)."""
    if a.shape != b.shape:
        raise FaceweaveError(f"psnr compares equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).square().flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp(min=1e-10))


@torch.no_grad()
def reconstruction_metrics(G: nn.Module, images: torch.Tensor, wplus: torch.Tensor,
                           noise: Sequence[torch.Tensor] | None = None,
                           feature_distance: FeatureDistance | None = None) -> dict[str, float]:
    """Mean PSNR and feature distance of G(wplus) against `images` (constant noise unless given)."""
    recon, _ = G([wplus], input_is_latent=True, noise=noise, randomize_noise=False)
    dist = feature_distance or default_feature_distance(images.device)
    return {"psnr": float(psnr(recon, images).mean()),
            "feature_distance": float(dist(recon.float(), images.float()).mean())}


# --- the projector --------------------------------------------------------------------------

@dataclasses.dataclass
class ProjectionResult:
    wplus: torch.Tensor               # (N, num_ws, w_dim) the found codes
    noise: list[torch.Tensor]         # per-layer noise maps (N, 1, r, r) that go with them
    image: torch.Tensor               # (N, 3, S, S) G(wplus, noise), in ~[-1, 1]
    history: dict[str, torch.Tensor]  # loss, pixel, feature, noise_reg: (steps, N) per image and step


def noise_regularization(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's projector penalty (N,): squared lag-one autocorrelations of each noise map,
    horizontal and vertical, at its resolution and each 2x2-averaged one down to 8x8."""
    total = noise[0].new_zeros(noise[0].shape[0])
    for n in noise:
        while True:
            total = total + (n * n.roll(1, 3)).mean((1, 2, 3)).square() + (n * n.roll(1, 2)).mean((1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total


def learning_rate(t: float, lr: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """lr at progress t in [0, 1): linear rise over `rampup`, half-cosine fall over the last `rampdown`."""
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return lr * down * min(1.0, t / rampup) if rampup > 0 else lr * down


def _w_spread(G: nn.Module, n: int = 2000) -> float:
    """The per-coordinate standard deviation of W (RMS over coordinates), from n mapped z (fixed seed)."""
    z = torch.randn(n, G.config.z_dim, generator=torch.Generator().manual_seed(0)).to(G.input)
    with torch.no_grad():
        w = G.style(z).float()
    return float((w - w.mean(0)).square().mean().sqrt())


def _randn(shape: tuple[int, ...], n: int, generator, device) -> torch.Tensor:
    """(n, *shape) Gaussian noise; a list of generators gives image i its own stream."""
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.randn(shape, generator=g) for g in generator]).to(device)
    return torch.randn((n, *shape), generator=generator).to(device)


def _initial_codes(G: nn.Module, init: torch.Tensor | None, n: int, device, dtype) -> torch.Tensor:
    c = G.config
    if init is None:
        return G.w_avg.detach().to(dtype)[None, None].expand(n, c.num_ws, -1).clone()
    init = init.detach().to(device, dtype)
    if init.ndim == 1:
        init = init[None]
    if init.ndim == 2 and init.shape == (c.num_ws, c.w_dim):
        init = init[None]
    if init.ndim == 2 and init.shape[1] == c.w_dim:             # one w per image: the same at every entry
        init = init[:, None].expand(-1, c.num_ws, -1)
    if init.ndim != 3 or init.shape[1:] != (c.num_ws, c.w_dim) or init.shape[0] not in (1, n):
        raise FaceweaveError(f"init_wplus has shape {tuple(init.shape)}; expected ({n}, {c.num_ws}, {c.w_dim}) "
                             f"W+ codes, or w codes ({n}, {c.w_dim})")
    return init.expand(n, -1, -1).clone()


def project(G: nn.Module, target: torch.Tensor, init_wplus: torch.Tensor | None = None, steps: int = 200,
            lr: float = 0.1, pixel_weight: float = 1.0, feature_weight: float = 0.3,
            noise_reg_weight: float = 1e3, optimize_noise: bool = False, latent_noise: float = 0.05,
            generator: torch.Generator | list[torch.Generator] | None = None, progress: bool = False,
            feature_distance: FeatureDistance | None = None,
            extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ProjectionResult:
    """Optimise W+ codes (and, with optimize_noise, the noise maps) so that G reproduces `target`.

    target       (N, 3, S, S) in [-1, 1] at the generator's resolution S
    init_wplus   start: (N, num_ws, w_dim) (an encoder's output) or (N, w_dim); None: G.w_avg
    pixel_weight, feature_weight   weights of the per-image MSE and FeatureDistance terms
    noise_reg_weight   weight of the noise maps' autocorrelation penalty (with optimize_noise); the
                       paper's 1e5 suits 1024 px maps, but on 4-64 px maps white noise itself
                       has a far larger chance autocorrelation, which 1e5 would make dominate
    optimize_noise     also fit the per-layer noise maps (start: G's constant maps); off keeps
                       G's constant maps, what deterministic generation and editing use
    latent_noise       size of the early exploration noise on W+, relative to W's spread (0: off)
    generator          a torch.Generator, or one per image (then a batch matches single runs)
    feature_distance   the perceptual network (None: the bundled parser's, built once)
    extra_loss   a further per-image term added as it is: images (N, 3, S, S) -> (N,), e.g. a
                 guide parser's cross-entropy to the photo's label map (history["extra"])
    """
    c = G.config
    if target.ndim != 4 or target.shape[1:] != (3, c.size, c.size):
        raise FaceweaveError(f"project takes (N, 3, {c.size}, {c.size}) targets in [-1, 1] for this generator, "
                             f"got shape {tuple(target.shape)}; resize the photos to {c.size} px")
    if not isinstance(steps, int) or steps < 1:
        raise FaceweaveError(f"steps must be a positive integer, got {steps!r}")
    n, device = target.shape[0], target.device
    # fp32, or fp64 when G is fp64 (then batch and single runs agree to rounding: see the tests)
    work = torch.float64 if G.input.dtype == torch.float64 else torch.float32
    if isinstance(generator, (list, tuple)) and len(generator) != n:
        raise FaceweaveError(f"{len(generator)} generators for {n} images; give one per image or a single one")
    target = target.detach().to(work)
    dist = None
    if feature_weight:
        dist = feature_distance or default_feature_distance(device)
    wplus = _initial_codes(G, init_wplus, n, device, work).requires_grad_(True)
    noise = [b.detach().to(work).expand(n, -1, -1, -1).clone() for b in G.noise_buffers()]
    params = [wplus]
    if optimize_noise:
        params += [m.requires_grad_(True) for m in noise]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    spread = _w_spread(G) if latent_noise else 0.0
    history: dict[str, list[torch.Tensor]] = {"loss": [], "pixel": [], "feature": [], "noise_reg": [], "extra": []}

    from tqdm import tqdm
    bar = tqdm(range(steps), desc="project", disable=not progress, dynamic_ncols=True)
    for step in bar:
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(t, lr)
        codes = wplus
        scale = spread * latent_noise * max(0.0, 1.0 - t / 0.75) ** 2
        if scale > 0:
            codes = wplus + scale * _randn((c.num_ws, c.w_dim), n, generator, device).to(work)
        image, _ = G([codes], input_is_latent=True, noise=noise)
        image = image.to(work)
        pixel = (image - target).square().flatten(1).mean(1)
        feature = dist(image, target) if dist is not None else torch.zeros_like(pixel)
        reg = noise_regularization(noise) if optimize_noise else torch.zeros_like(pixel)
        extra = extra_loss(image).to(work) if extra_loss is not None else torch.zeros_like(pixel)
        if extra.shape != pixel.shape:
            raise FaceweaveError(f"extra_loss must give one value per image, shape {tuple(pixel.shape)}; "
                                 f"it gave {tuple(extra.shape)}")
        per_image = pixel_weight * pixel + feature_weight * feature + noise_reg_weight * reg + extra
        # summed, not averaged: each image's gradient is its own loss's, whatever the batch
        grads = torch.autograd.grad(per_image.sum(), params)     # leaves G's own .grad untouched
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        if optimize_noise:
            with torch.no_grad():                                # back to zero mean, unit variance
                for m in noise:
                    m.sub_(m.mean((1, 2, 3), keepdim=True)).div_(m.std((1, 2, 3), keepdim=True) + 1e-8)
        for key, value in (("loss", per_image), ("pixel", pixel), ("feature", feature), ("noise_reg", reg),
                           ("extra", extra)):
            history[key].append(value.detach().cpu())
        bar.set_postfix(loss=f"{float(per_image.detach().mean()):.4f}")
    bar.close()
    wplus = wplus.detach()
    noise = [m.detach() for m in noise]
    with torch.no_grad():
        image, _ = G([wplus], input_is_latent=True, noise=noise)
    return ProjectionResult(wplus=wplus, noise=noise, image=image,
                            history={k: torch.stack(v) for k, v in history.items()})


# --- pivotal tuning -------------------------------------------------------------------------

def pivotal_tune(G: nn.Module, target: torch.Tensor, wplus: torch.Tensor,
                 noise: Sequence[torch.Tensor] | None = None, steps: int = 100, lr: float = 3e-3,
                 pixel_weight: float = 1.0, feature_weight: float = 0.3,
                 feature_distance: FeatureDistance | None = None, progress: bool = False) -> nn.Module:
    """A copy of G whose weights are fine-tuned so that G'(wplus) reproduces `target`.

    Pivotal Tuning Inversion (Roich et al. 2022, "Pivotal Tuning for Latent-based Editing of
    Real Images"): the code found by the projector is the pivot; it stays fixed and the
    generator moves towards the photo instead, by a few Adam steps on the same pixel +
    feature loss the projector uses. A small generator that has never drawn this person can
    then reproduce them, and codes near the pivot (pivot + an edit direction) are drawn by
    the tuned generator as well: the edit acts on this face, not on the GAN's nearest one.
    G itself is not changed; the tuned copy is returned in eval mode, frozen.

    target  (1, 3, S, S) in [-1, 1]; wplus (1, num_ws, w_dim); noise: the maps that go with it
    """
    import copy

    c = G.config
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1:] != (3, c.size, c.size):
        raise FaceweaveError(f"pivotal tuning takes one (1, 3, {c.size}, {c.size}) target, got shape "
                             f"{tuple(target.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise FaceweaveError(f"pivotal tuning steps must be a positive whole number, got {steps!r}")
    tuned = copy.deepcopy(G).train(False)
    # the mapping network is not used by a W+ code; only the synthesis layers learn
    params = [p for name, p in tuned.named_parameters() if not name.startswith("style")]
    tuned.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    dist = (feature_distance or default_feature_distance(target.device)) if feature_weight else None
    target = target.detach().float()
    wplus = wplus.detach()
    noise = None if noise is None else [m.detach() for m in noise]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    from tqdm import tqdm
    bar = tqdm(range(steps), desc="pivotal tuning", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        image = tuned([wplus], input_is_latent=True, noise=noise, randomize_noise=False)[0].float()
        loss = pixel_weight * (image - target).square().mean()
        if dist is not None:
            loss = loss + feature_weight * dist(image, target).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    bar.close()
    return tuned.requires_grad_(False).eval()
