"""MMFS's networks (Ma et al. 2023, "Multi-Modal Face Stylization with a Generative Prior").

A StyleGAN2 generator is cut at the resolution `split` (16 px for a 64 px generator):

    photo --Encoder--> (features, rgb skip) at split px   replaces the generator's layers up to split
    (features, skip), W+ --Decoder--> stylized face        the generator's layers above split

Stage 1 aligns the encoder to the frozen generator (its features of a generated face are the
target, and photos are reconstructed through the frozen decoder); stage 2 fine-tunes the
decoder on an artistic domain; one-shot fine-tunes a copy of the decoder towards one
reference; zero-shot moves the decoder's W+ codes with `TextMapper` from a sentence
embedding. `StyleCritic` is the generator's own discriminator: its block features are the
feature-matching targets of stage 1 and the style statistics of the one-shot loss, and it
is the adversary of stage 2. `JointImageEncoder` is the image side of the joint image-text
space (the text side is the frozen MiniLM sentence encoder).

Generator layer bookkeeping (rosinality's layout, models/stylegan2.py): the 4 px layer reads
W+ code 0 and its toRGB code 1; the k-th resolution block (8 px for k = 0) reads codes
1+2k, 2+2k and toRGB 3+2k, with noise maps 2k+1 and 2k+2.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...models import stylegan2 as sg2


@dataclasses.dataclass
class StylizerConfig:
    generator: dict                      # the StyleGAN2Config of the prior (models/stylegan2.py)
    split: int = 16                      # side at which the encoder hands over to the decoder
    encoder_width: int = 64              # channels of the encoder's first layer (doubled once)
    text_dim: int = 0                    # sentence-embedding width of the zero-shot mapper (0: none)
    mapper_width: int = 256              # hidden units of the zero-shot mapper

    def __post_init__(self):
        size = int(self.generator["size"])
        if self.split < 8 or self.split >= size or math.log2(self.split) % 1:
            raise ValueError(f"split must be a power of two from 8 to {size // 2}, got {self.split}")

    @property
    def first_block(self) -> int:
        """Index k of the first generator block the decoder runs (8 px is k = 0)."""
        return int(math.log2(self.split)) - 2

    @property
    def first_code(self) -> int:
        """The first W+ code the decoder reads."""
        return 1 + 2 * self.first_block


class Encoder(nn.Module):
    """photo (N, 3, S, S) -> features (N, C, split, split) and an RGB skip (N, 3, split, split),
    in the generator's own format at `split` (what its layers up to split would hand on)."""

    def __init__(self, size: int, split: int, width: int, out_channels: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        c, side = width, size
        while side > split:
            nxt = min(2 * c, 2 * width)
            layers += [nn.Conv2d(c, nxt, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(nxt, nxt, 4, 2, 1),
                       nn.LeakyReLU(0.2)]
            c, side = nxt, side // 2
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.features = nn.Conv2d(c, out_channels, 3, padding=1)
        self.rgb = nn.Conv2d(c, 3, 1)

    def forward(self, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(photo)
        return self.features(h), self.rgb(h)


class Decoder(nn.Module):
    """The generator's blocks above `split` (a copy, so it can be fine-tuned on its own)."""

    def __init__(self, generator: sg2.Generator, first_block: int):
        super().__init__()
        self.first_block = first_block
        self.convs = copy.deepcopy(generator.convs[2 * first_block:])
        self.to_rgbs = copy.deepcopy(generator.to_rgbs[first_block:])
        for i, buffer in enumerate(generator.noise_buffers()[2 * first_block + 1:]):
            self.register_buffer(f"noise_{i}", buffer.clone())
        # a colour transform of the incoming RGB skip (identity at the start, so the decoder is the
        # generator's own): lets a style re-colour the base image the upper blocks only add detail to
        self.skip_colour = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.skip_colour.weight.copy_(torch.eye(3)[:, :, None, None])
            self.skip_colour.bias.zero_()

    def forward(self, features: torch.Tensor, skip: torch.Tensor, wplus: torch.Tensor,
                colour: torch.Tensor | None = None) -> torch.Tensor:
        """`colour` (N, 3, 4): a per-image change of the skip's colours on top, skip' = (I + A) skip + b."""
        i = 1 + 2 * self.first_block
        out, skip = features, self.skip_colour(skip)
        if colour is not None:
            skip = skip + torch.einsum("nij,njhw->nihw", colour[:, :, :3], skip) + colour[:, :, 3, None, None]
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, wplus[:, i], getattr(self, f"noise_{2 * k}"))
            out = self.convs[2 * k + 1](out, wplus[:, i + 1], getattr(self, f"noise_{2 * k + 1}"))
            skip = to_rgb(out, wplus[:, i + 2], skip)
            i += 2
        return skip


def synthesis_until(generator: sg2.Generator, wplus: torch.Tensor, last_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's own (features, rgb skip) after its block `last_block` (constant noise):
    what the encoder learns to produce for the face the generator renders from `wplus`."""
    noise = generator.noise_buffers()
    out = generator.conv1(generator.input.expand(wplus.shape[0], -1, -1, -1), wplus[:, 0], noise[0])
    skip = generator.to_rgb1(out, wplus[:, 1])
    i = 1
    for k in range(last_block + 1):
        out = generator.convs[2 * k](out, wplus[:, i], noise[2 * k + 1])
        out = generator.convs[2 * k + 1](out, wplus[:, i + 1], noise[2 * k + 2])
        skip = generator.to_rgbs[k](out, wplus[:, i + 2], skip)
        i += 2
    return out, skip


class StyleCritic(sg2.Discriminator):
    """The StyleGAN2 discriminator (its `block_features` are the feature-matching space)."""


class RandomFilters(nn.Module):
    """Texture features with nothing to train or store: banks of seeded random filters of several
    sizes over the pixels, each followed by a ReLU (Ustyuzhaninov et al. 2016, "Texture synthesis
    using shallow convolutional networks with random filters": their Gram matrices carry a
    texture as well as a trained network's). A bank is one "block" of `block_features`, smallest
    filters first. Each filter sums to zero (it sees edges and strokes, not brightness, which
    the colour term measures) and has unit norm. The seed alone makes them, so they are rebuilt
    on load and never saved (non-persistent buffers)."""

    def __init__(self, sizes: tuple[int, ...] = (3, 5, 7, 11), width: int = 64, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.sizes = tuple(sizes)
        for k in self.sizes:
            w = torch.randn(width, 3, k, k, generator=g)
            w = w - w.mean((1, 2, 3), keepdim=True)
            self.register_buffer(f"bank_{k}", w / w.flatten(1).norm(dim=1)[:, None, None, None], persistent=False)

    def block_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [F.relu(F.conv2d(images, getattr(self, f"bank_{k}"), padding=k // 2)) for k in self.sizes]


class ParserLevels(nn.Module):
    """A face parser's encoder levels as texture features (`block_features`, finest first): a
    perceptual network for faces, standing in for the VGG that style losses usually read
    (Gatys et al. 2016) and that cannot be fetched here. Frozen; never part of a stylize
    checkpoint (it is loaded by name)."""

    def __init__(self, parser: nn.Module):
        super().__init__()
        self.parser = parser.eval().requires_grad_(False)

    def block_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        out, x = [], images
        for i, stage in enumerate(self.parser.down):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            out.append(x)
        return out


class TextMapper(nn.Module):
    """Sentence embedding (N, text_dim) -> offsets (N, codes, w_dim) of the decoder's W+ codes
    (MMFS's mapping into W+) and a colour change (N, 3, 4) of the skip the decoder starts from
    (with a 32 px split the W+ codes reach only the last block, which adds detail to that
    skip; the colour change lets a text re-colour the face). The last layer starts at zero,
    so an untrained mapper changes nothing."""

    def __init__(self, text_dim: int, width: int, codes: int, w_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(text_dim, width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                                 nn.LeakyReLU(0.2), nn.Linear(width, codes * w_dim + 12))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.codes, self.w_dim = codes, w_dim

    def forward(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(text.float())
        return out[:, :-12].view(-1, self.codes, self.w_dim), out[:, -12:].view(-1, 3, 4)


class Stylizer(nn.Module):
    """Everything one stylize checkpoint holds: the frozen generator (mapping, low layers and the
    original decoder layers), the encoder, the (fine-tunable) decoder, the critic and, once
    trained, the zero-shot text mapper.

        face = model(photo)                        # stage-1 reconstruction / stage-2 domain
        face = model(photo, text=mapper(emb))      # zero-shot: decoder codes (and skip colours) moved by a text
    """

    def __init__(self, cfg: StylizerConfig):
        super().__init__()
        self.config = cfg
        gcfg = sg2.StyleGAN2Config(**cfg.generator)
        self.generator = sg2.Generator(gcfg)
        self.critic = StyleCritic(gcfg)
        self.encoder = Encoder(gcfg.size, cfg.split, cfg.encoder_width, gcfg.channels(cfg.split))
        self.decoder = Decoder(self.generator, cfg.first_block)
        codes = gcfg.num_ws - cfg.first_code
        self.mapper = TextMapper(cfg.text_dim, cfg.mapper_width, codes, gcfg.w_dim) if cfg.text_dim else None

    @classmethod
    def from_config(cls, config: dict) -> "Stylizer":
        return cls(StylizerConfig(**config))

    def reset_decoder(self) -> None:
        """The decoder back to the generator's own layers above split (stage 1 starts there)."""
        self.decoder.load_state_dict(Decoder(self.generator, self.config.first_block).state_dict())

    def neutral_wplus(self, n: int) -> torch.Tensor:
        """The decoder's codes without a text: the generator's average w at every layer."""
        return self.generator.w_avg[None, None].expand(n, self.generator.num_ws, -1)

    def wplus(self, n: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
        w = self.neutral_wplus(n)
        if offsets is None:
            return w
        first = self.config.first_code
        return torch.cat([w[:, :first], w[:, first:] + offsets], 1)

    def forward(self, photo: torch.Tensor, text: tuple[torch.Tensor, torch.Tensor] | None = None,
                decoder: nn.Module | None = None) -> torch.Tensor:
        """`text`: the mapper's (W+ offsets, colour change), or None for the model's own look."""
        features, skip = self.encoder(photo)
        offsets, colour = (None, None) if text is None else text
        return (decoder or self.decoder)(features, skip, self.wplus(photo.shape[0], offsets), colour)

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """A face of the decoder's domain from a latent z: the generator's mapping and its layers
        up to split, then the decoder (a seed's face in the model's style)."""
        w = self.generator.get_latent(z)[:, None].expand(-1, self.generator.num_ws, -1)
        features, skip = synthesis_until(self.generator, w, self.config.first_block - 1)
        return self.decoder(features, skip, w)


@dataclasses.dataclass
class JointConfig:
    size: int = 64                 # image side it reads
    width: int = 32                # channels of its first layer (doubled per halving, at most 8x)
    embed_dim: int = 384           # the text encoder's width (MiniLM: 384)


class JointImageEncoder(nn.Module):
    """image (N, 3, S, S) in [-1, 1] -> unit vector (N, embed_dim) in the text encoder's space,
    trained contrastively (InfoNCE, as CLIP, Radford et al. 2021) against frozen MiniLM
    embeddings of the images' descriptions."""

    def __init__(self, cfg: JointConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        c_in, c, side = 3, cfg.width, cfg.size
        while side > 4:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.GroupNorm(8, c), nn.SiLU(),
                       nn.Conv2d(c, c, 4, 2, 1), nn.SiLU()]
            c_in, c, side = c, min(2 * c, 8 * cfg.width), side // 2
        self.body = nn.Sequential(*layers)
        # a Gram-like summary (channel means and standard deviations) keeps the look, not the layout
        self.head = nn.Sequential(nn.Linear(2 * c_in, 512), nn.SiLU(), nn.Linear(512, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @classmethod
    def from_config(cls, config: dict) -> "JointImageEncoder":
        return cls(JointConfig(**config))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] != self.config.size:
            image = F.interpolate(image, size=(self.config.size,) * 2, mode="bilinear", align_corners=False,
                                  antialias=True)
        h = self.body(image)
        pooled = torch.cat([h.mean((2, 3)), h.flatten(2).std(2)], 1)
        return F.normalize(self.head(pooled), dim=1)
