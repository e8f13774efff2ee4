"""An EG3D-style 3D-aware generator in plain PyTorch (Chan et al. 2022, "Efficient
Geometry-aware 3D Generative Adversarial Networks"), sized for a CPU.

    model = MultiviewGAN(PRESETS["s"])
    w = model.mapping(z, camera(torch.zeros(n)))          # z and the conditioning camera -> w
    out = model.synthesize(w, camera(yaw_degrees))         # out.image (N, 3, 64, 64), out.raw, out.depth
    w = model.encoder(image)                               # a face image -> its w (any yaw)

The pieces, each a small module below:
- camera: a point on a sphere of radius `radius` looking at the origin, placed by yaw (about
  the vertical axis) and pitch, in degrees; its 3x4 camera-to-world matrix is also the
  12-number conditioning vector c (EG3D sec. 4: "pose-conditioned").
- mapping: [PixelNorm(z) || PixelNorm(embed(c))] -> w through an equalized-lr MLP (EG3D's
  generator pose conditioning; at inference c is the frontal camera, so turning the head
  renders one w from several cameras and the identity cannot follow the camera).
- backbone: a StyleGAN2 synthesis network (models/stylegan2.py's modulated convolutions)
  whose output is not RGB but three feature planes, 3 x C channels at `plane_size`
  (EG3D sec. 4.1: the tri-plane).
- decoder: a point's features are read bilinearly from the XY, XZ and ZY planes, averaged,
  and a two-layer MLP turns them into a density and `feature_dim` colour features (the
  first three are RGB).
- rendering: rays through each pixel of a `render_size` image, `samples` stratified depths
  between near and far, alpha compositing (NeRF eq. 3) of the features; `render_rays` is a
  pure function of a field, so it is tested on a known density.
- super-resolution: the rendered features are upsampled to `size` by style-modulated
  convolutions; the raw RGB is the skip input (EG3D sec. 4.2).
- discriminator: a StyleGAN2 residual discriminator on 6 channels, the super-resolved image
  beside the raw render upsampled (EG3D's dual discrimination, sec. 4.3), conditioned on the
  camera by projection (Miyato & Koyama 2018): logit = f(h) + <embed(c), h>.
- encoder: a small convolutional network from an image to w, trained alongside so a face
  seen at one yaw can be rendered at another (the multi-view loss of train.py) and so a
  photo's inversion starts near its answer.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FaceweaveError
from ...models.stylegan2 import SQRT2, EqualConv2d, EqualLinear, ModulatedConv2d, PixelNorm, ResBlock

CAMERA_DIM = 12        # the flattened 3x4 camera-to-world matrix
YAW_RANGE = (-30.0, 30.0)      # the yaws training covers (FaceSynth's range), degrees
PITCH_RANGE = (-20.0, 20.0)    # pitches the renderer accepts, degrees


@dataclasses.dataclass
class MultiviewConfig:
    size: int = 64                 # output side after super-resolution (a power of two)
    render_size: int = 32          # side of the volume-rendered image (a power of two <= size)
    plane_size: int = 32           # side of each tri-plane (a power of two >= 8)
    plane_channels: int = 16       # feature channels C per plane
    z_dim: int = 128               # input latent z
    w_dim: int = 128               # intermediate latent w
    mapping_layers: int = 2        # MLP depth of the mapping network
    lr_mlp: float = 0.01           # learning-rate multiplier of the mapping network (StyleGAN's 0.01)
    channel_base: int = 2048       # backbone channels at side r = min(channel_max, channel_base // r)
    channel_max: int = 128
    sr_channels: int = 32          # super-resolution channels
    feature_dim: int = 16          # colour features composited along a ray (first 3: RGB)
    decoder_hidden: int = 64       # hidden units of the tri-plane decoder MLP
    samples: int = 24              # depths per ray
    radius: float = 2.7            # camera distance from the origin
    fov: float = 20.0              # full field of view, degrees
    box: float = 0.5               # the scene lives in [-box, box]^3 (the tri-planes span it)
    d_channel_base: int = 2048     # discriminator channels, as channel_base
    d_channel_max: int = 128
    encoder_width: int = 32        # the encoder's first-layer channels (doubling, at most 8x)

    def __post_init__(self) -> None:
        def power_of_two(v: int) -> bool:
            return v >= 8 and (v & (v - 1)) == 0
        if not (power_of_two(self.size) and power_of_two(self.render_size) and power_of_two(self.plane_size)):
            raise FaceweaveError(f"multiview size, render_size and plane_size must be powers of two >= 8, "
                                 f"got {self.size}, {self.render_size}, {self.plane_size}")
        if self.render_size > self.size:
            raise FaceweaveError(f"render_size {self.render_size} cannot exceed size {self.size}")
        if self.feature_dim < 3 or min(self.plane_channels, self.z_dim, self.w_dim, self.samples,
                                       self.decoder_hidden, self.sr_channels, self.encoder_width) < 1:
            raise FaceweaveError(f"bad multiview config {dataclasses.asdict(self)}")

    def channels(self, res: int, discriminator: bool = False) -> int:
        base, top = (self.d_channel_base, self.d_channel_max) if discriminator else (self.channel_base, self.channel_max)
        return max(8, min(top, base // res))

    @property
    def backbone_levels(self) -> int:
        return int(math.log2(self.plane_size)) - 2

    @property
    def sr_levels(self) -> int:
        return int(math.log2(self.size // self.render_size))

    @property
    def num_ws(self) -> int:
        """Style vectors the networks read: the backbone's 4 px conv and planes output, three per
        doubling (two convs, one planes output), and three per super-resolution doubling."""
        return 2 + 3 * self.backbone_levels + 3 * self.sr_levels


PRESETS: dict[str, MultiviewConfig] = {
    # tests: seconds on a CPU
    "tiny": MultiviewConfig(size=32, render_size=16, plane_size=16, plane_channels=8, z_dim=32, w_dim=32,
                            channel_base=256, channel_max=32, sr_channels=16, feature_dim=8, decoder_hidden=32,
                            samples=12, d_channel_base=256, d_channel_max=32, encoder_width=8),
    # the CPU model: 32 px rendering, 64 px output
    "s": MultiviewConfig(samples=16),
    # GPUs: wider planes and networks, 64 px rendering, more depths per ray
    "b": MultiviewConfig(render_size=64, plane_size=64, plane_channels=32, z_dim=512, w_dim=512,
                         mapping_layers=8, channel_base=16384, channel_max=256, sr_channels=64, feature_dim=32,
                         decoder_hidden=64, samples=48, d_channel_base=16384, d_channel_max=256,
                         encoder_width=64),
}


# --- cameras --------------------------------------------------------------------------------

def camera(yaw: torch.Tensor | float, pitch: torch.Tensor | float = 0.0, radius: float = 2.7) -> torch.Tensor:
    """(N, 3, 4) camera-to-world matrices [right | up | back | position] of cameras on a sphere
    looking at the origin; yaw turns about the vertical (y) axis, pitch lifts the camera, both
    in degrees. Yaw 0, pitch 0 is the camera at (0, 0, radius) looking down -z."""
    yaw = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1)
    pitch = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1).expand_as(yaw)
    a, b = torch.deg2rad(yaw), torch.deg2rad(pitch)
    back = torch.stack([torch.sin(a) * torch.cos(b), torch.sin(b), torch.cos(a) * torch.cos(b)], -1)
    right = torch.stack([torch.cos(a), torch.zeros_like(a), -torch.sin(a)], -1)
    up = torch.cross(back, right, dim=-1)
    return torch.stack([right, up, back, back * radius], -1)


def camera_rays(cam: torch.Tensor, side: int, fov: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(origins, unit directions), each (N, side*side, 3), through the pixel centres of a
    side x side pinhole image, row by row from the top-left."""
    n = cam.shape[0]
    half = math.tan(math.radians(fov) / 2)
    coords = (torch.arange(side, dtype=torch.float32, device=cam.device) + 0.5) / side * 2 - 1
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    local = torch.stack([u * half, -v * half, -torch.ones_like(u)], -1).reshape(1, -1, 3)   # looking down -z
    dirs = F.normalize(local @ cam[:, :, :3].transpose(1, 2), dim=-1)
    origins = cam[:, None, :, 3].expand(n, side * side, 3)
    return origins, dirs


def render_rays(field, origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float, samples: int,
                generator: torch.Generator | None = None, jitter: bool = False) -> dict[str, torch.Tensor]:
    """Volume rendering (NeRF, Mildenhall et al. 2020, eq. 3) of a field along rays.

    field(points (N, P, 3)) -> (density (N, P, 1) >= 0, features (N, P, F)).
    The depths are the centres of `samples` equal bins of [near, far], moved uniformly inside
    their bins when `jitter` (stratified sampling); alpha_i = 1 - exp(-density_i delta_i),
    weight_i = alpha_i prod_{j<i} (1 - alpha_j), and the ray's features, depth and opacity
    are the weight-averaged sums (the rest of the ray is transparent: features 0).
    -> {"features" (N, R, F), "depth" (N, R), "opacity" (N, R)}."""
    n, r, _ = origins.shape
    edges = torch.linspace(near, far, samples + 1, device=origins.device)
    width = (far - near) / samples
    offset = (torch.rand(n, r, samples, generator=generator).to(origins.device) if jitter
              else torch.full((n, r, samples), 0.5, device=origins.device))
    t = edges[:-1] + offset * width                                                    # (N, R, S)
    points = origins[:, :, None] + dirs[:, :, None] * t[..., None]                    # (N, R, S, 3)
    density, feats = field(points.reshape(n, r * samples, 3))
    density = density.reshape(n, r, samples)
    feats = feats.reshape(n, r, samples, -1)
    delta = torch.cat([t[..., 1:] - t[..., :-1], torch.full_like(t[..., :1], width)], -1)
    alpha = 1 - torch.exp(-density * delta)
    transmit = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha[..., :-1] + 1e-10], -1), -1)
    weight = alpha * transmit
    return {"features": (weight[..., None] * feats).sum(2), "depth": (weight * t).sum(2),
            "opacity": weight.sum(2)}


# --- generator ------------------------------------------------------------------------------

class StyledLayer(nn.Module):
    """A modulated 3x3 convolution with bias and leaky ReLU (StyleGAN2's layer, without noise
    inputs: the same w always gives the same face, from every camera)."""

    def __init__(self, cin: int, cout: int, w_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, upsample=upsample)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x, w) + self.bias[None, :, None, None], 0.2) * SQRT2


class ToOutput(nn.Module):
    """A modulated 1x1 projection to `cout` channels added to the upsampled previous output
    (StyleGAN2's skip generator, fig. 7b), for tri-plane features as well as RGB."""

    def __init__(self, cin: int, cout: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, w, skip=None):
        y = self.conv(x, w) + self.bias[None, :, None, None]
        if skip is None:
            return y
        return y + F.interpolate(skip, size=y.shape[-2:], mode="bilinear", align_corners=False)


class Mapping(nn.Module):
    def __init__(self, c: MultiviewConfig):
        super().__init__()
        self.embed = EqualLinear(CAMERA_DIM, c.w_dim)
        self.norm = PixelNorm()
        layers = []
        for i in range(c.mapping_layers):
            layers.append(EqualLinear(c.z_dim + c.w_dim if i == 0 else c.w_dim, c.w_dim, lr_mul=c.lr_mlp, activate=True))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.norm(z), self.norm(self.embed(cam.flatten(1)))], 1))


class TriplaneBackbone(nn.Module):
    """StyleGAN2 synthesis from a learned 4x4 constant to three C-channel planes."""

    def __init__(self, c: MultiviewConfig):
        super().__init__()
        out = 3 * c.plane_channels
        ch = c.channels(4)
        self.input = nn.Parameter(torch.randn(1, ch, 4, 4))
        self.conv1 = StyledLayer(ch, ch, c.w_dim)
        self.out1 = ToOutput(ch, out, c.w_dim)
        self.convs, self.outs = nn.ModuleList(), nn.ModuleList()
        for level in range(c.backbone_levels):
            cout = c.channels(8 * 2 ** level)
            self.convs.extend([StyledLayer(ch, cout, c.w_dim, upsample=True), StyledLayer(cout, cout, c.w_dim)])
            self.outs.append(ToOutput(cout, out, c.w_dim))
            ch = cout

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.input.expand(ws.shape[0], -1, -1, -1), ws[:, 0])
        planes = self.out1(x, ws[:, 1])
        i = 2
        for k, out in enumerate(self.outs):
            x = self.convs[2 * k + 1](self.convs[2 * k](x, ws[:, i]), ws[:, i + 1])
            planes = out(x, ws[:, i + 2], planes)
            i += 3
        return planes


class TriplaneDecoder(nn.Module):
    """Point -> (density, colour features) from the averaged features of its three plane
    projections; EG3D's small MLP (softplus hidden layer, a sigmoid on the colour features)."""

    def __init__(self, c: MultiviewConfig):
        super().__init__()
        self.box, self.channels = c.box, c.plane_channels
        self.hidden = nn.Linear(c.plane_channels, c.decoder_hidden)
        self.out = nn.Linear(c.decoder_hidden, 1 + c.feature_dim)

    def sample(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """(N, P, C): bilinear reads of the XY, XZ and ZY planes at the points, averaged."""
        n, p, _ = points.shape
        planes = planes.reshape(n * 3, self.channels, *planes.shape[-2:])
        x, y, z = (points / self.box).unbind(-1)
        # image-space (u, v) of each plane: u right, v down; y is up in the world
        grids = torch.stack([torch.stack([x, -y], -1), torch.stack([x, z], -1), torch.stack([z, -y], -1)], 1)
        feats = F.grid_sample(planes, grids.reshape(n * 3, p, 1, 2), mode="bilinear", padding_mode="zeros",
                              align_corners=False)                                   # (3N, C, P, 1)
        return feats.reshape(n, 3, self.channels, p).mean(1).transpose(1, 2)

    def forward(self, planes: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.softplus(self.hidden(self.sample(planes, points)))
        out = self.out(h)
        # density starts low (the -1 shift) so an untrained field is mostly empty space
        density = F.softplus(out[..., :1] - 1.0)
        colour = torch.sigmoid(out[..., 1:]) * (1 + 2e-3) - 1e-3
        return density, colour


class SuperResolution(nn.Module):
    """Rendered features at render_size -> an RGB image at size: per doubling two modulated
    convolutions and an RGB output summed onto the upsampled raw RGB."""

    def __init__(self, c: MultiviewConfig):
        super().__init__()
        self.convs, self.outs = nn.ModuleList(), nn.ModuleList()
        ch = c.feature_dim
        for _ in range(c.sr_levels):
            self.convs.extend([StyledLayer(ch, c.sr_channels, c.w_dim, upsample=True),
                               StyledLayer(c.sr_channels, c.sr_channels, c.w_dim)])
            self.outs.append(ToOutput(c.sr_channels, 3, c.w_dim))
            ch = c.sr_channels

    def forward(self, feats: torch.Tensor, rgb: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        x = feats
        for k, out in enumerate(self.outs):
            x = self.convs[2 * k + 1](self.convs[2 * k](x, ws[:, 3 * k]), ws[:, 3 * k + 1])
            rgb = out(x, ws[:, 3 * k + 2], rgb)
        return rgb


class Rendered(NamedTuple):
    image: torch.Tensor    # (N, 3, size, size) in about [-1, 1]
    raw: torch.Tensor      # (N, 3, render_size, render_size): the volume render's RGB
    depth: torch.Tensor    # (N, render_size, render_size): expected ray depth
    opacity: torch.Tensor  # (N, render_size, render_size): accumulated alpha


class Encoder(nn.Module):
    """Image (N, 3, S, S) -> w (N, w_dim): strided convolutions, global average, a linear head."""

    def __init__(self, c: MultiviewConfig):
        super().__init__()
        layers: list[nn.Module] = []
        ch, side, width = 3, c.size, c.encoder_width
        while side > 4:
            layers += [nn.Conv2d(ch, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            ch, side, width = width, side // 2, min(width * 2, c.encoder_width * 8)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(ch * 16, c.w_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(image).flatten(1))


class Discriminator(nn.Module):
    """Dual, pose-conditioned discriminator: [image || upsampled raw render] -> a logit, with
    the camera entering by projection onto the last hidden features."""

    def __init__(self, c: MultiviewConfig):
        super().__init__()
        log = int(math.log2(c.size))
        self.from_rgb = EqualConv2d(6, c.channels(c.size, True), 1, activate=True)
        self.blocks = nn.Sequential(*[ResBlock(c.channels(2 ** k, True), c.channels(2 ** (k - 1), True))
                                      for k in range(log, 2, -1)])
        ch4 = c.channels(4, True)
        self.final_conv = EqualConv2d(ch4, ch4, 3, activate=True)
        self.hidden = EqualLinear(ch4 * 16, ch4, activate=True)
        self.out = EqualLinear(ch4, 1)
        self.embed = EqualLinear(CAMERA_DIM, ch4)

    def forward(self, image: torch.Tensor, raw: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
        raw = F.interpolate(raw, size=image.shape[-2:], mode="bilinear", align_corners=False)
        h = self.hidden(self.final_conv(self.blocks(self.from_rgb(torch.cat([image, raw], 1)))).flatten(1))
        projection = (self.embed(cam.flatten(1)) * h).sum(1, keepdim=True) / math.sqrt(h.shape[1])
        return self.out(h) + projection


class MultiviewGAN(nn.Module):
    """Everything one checkpoint holds: generator parts, encoder, discriminator and the
    tracked average w (what truncation pulls towards)."""

    def __init__(self, config: MultiviewConfig):
        super().__init__()
        self.config = config
        self.mapping = Mapping(config)
        self.backbone = TriplaneBackbone(config)
        self.decoder = TriplaneDecoder(config)
        self.superres = SuperResolution(config)
        self.encoder = Encoder(config)
        self.discriminator = Discriminator(config)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    @classmethod
    def from_config(cls, config: dict | MultiviewConfig) -> "MultiviewGAN":
        return cls(config if isinstance(config, MultiviewConfig) else MultiviewConfig(**config))

    @property
    def num_ws(self) -> int:
        return self.config.num_ws

    def camera(self, yaw, pitch=0.0) -> torch.Tensor:
        return camera(yaw, pitch, self.config.radius).to(self.w_avg.device)

    def wplus(self, w: torch.Tensor) -> torch.Tensor:
        """(N, w_dim) or W+ (N, num_ws, w_dim) -> W+."""
        c = self.config
        if w.ndim == 2 and w.shape[1] == c.w_dim:
            return w[:, None].expand(-1, c.num_ws, -1)
        if w.ndim == 3 and w.shape[1:] == (c.num_ws, c.w_dim):
            return w
        raise FaceweaveError(f"multiview latents have shape {tuple(w.shape)}; expected (N, {c.w_dim}) "
                             f"or W+ (N, {c.num_ws}, {c.w_dim})")

    def synthesize(self, w: torch.Tensor, cam: torch.Tensor, generator: torch.Generator | None = None,
                   jitter: bool = False) -> Rendered:
        """Render latents w (or W+) from cameras cam (N, 3, 4): planes, rays, super-resolution."""
        c = self.config
        ws = self.wplus(w)
        planes = self.backbone(ws)
        n = planes.shape[0]
        origins, dirs = camera_rays(cam, c.render_size, c.fov)
        reach = c.box * math.sqrt(3)
        out = render_rays(lambda p: self.decoder(planes, p), origins, dirs, c.radius - reach, c.radius + reach,
                          c.samples, generator=generator, jitter=jitter)
        side = c.render_size
        feats = out["features"].transpose(1, 2).reshape(n, c.feature_dim, side, side)
        raw = feats[:, :3] * 2 - 1
        first = 2 + 3 * c.backbone_levels
        image = self.superres(feats, raw, ws[:, first:])
        return Rendered(image, raw, out["depth"].reshape(n, side, side), out["opacity"].reshape(n, side, side))

    @torch.no_grad()
    def mean_latent(self, n: int = 2048, seed: int = 0) -> torch.Tensor:
        """The average w of n random z under the frontal conditioning camera, (1, w_dim)."""
        z = torch.randn(n, self.config.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.w_avg.device)
        return self.mapping(z, self.camera(torch.zeros(n))).mean(0, keepdim=True)
