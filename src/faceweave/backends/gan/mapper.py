"""MM2Latent's multimodal mapping network: text, mask and sketch -> StyleGAN2's W / W+ space.

MM2Latent (Meng, Tzelepis, Patras & Tzimiropoulos, "MM2Latent: Text-to-facial image
generation and editing in GANs with multimodal assistance", ECCV 2024 workshops) leaves a
pretrained StyleGAN2 untouched and learns only a mapper from the conditions to a latent
code, so generation is one mapper pass plus one generator pass. The mask and the sketch
enter as the bottleneck codes of their own autoencoders (modality_ae.py), the text
as a sentence vector (here the pooled MiniLM embedding, models/text_encoder.py). Training
pairs come from the generator itself: sample w, render, read the conditions off the
image, and regress w from them (the paper's latent loss, `mapper_loss`). Our version:

    spatial path   [mask code | mask present | sketch code | sketch present]   (N, Cm+1+Cs+1, s, s)
                   -> 3x3 conv, then a stride-2 3x3 conv per further width, LeakyReLU(0.2)
                   -> flatten -> linear -> (N, hidden)
    text path      LayerNorm -> linear -> LeakyReLU -> linear -> (N, hidden); a learned null
                   vector stands in for a missing prompt
    fusion         [spatial | text | presence flags] -> linear -> `depth` pre-LayerNorm
                   residual MLP blocks -> LayerNorm -> linear head
    output         w_avg + head, (N, num_ws, w_dim): one w per layer (W+) or one w broadcast
                   to every layer (W, `wplus=False`)

Predicting an offset from the generator's average latent w_avg (set by the caller with
`set_w_avg`) with a zero-initialised head means the untrained mapper already produces the
generator's average face, and a fully unconditional input lands on w_avg plus one learned
constant offset. Any subset of the three modalities may be missing, per row: a missing
code is replaced by zeros (with `torch.where`, so whatever values it held cannot leak in)
and its presence channel is 0; `modality_dropout` hides present ones at random during
training so one network serves every subset. Every layer works on one row at a time (no
batch statistics): a row's output does not depend on the rest of its batch.

    mapper = Mapper.from_config(PRESETS["s"]); mapper.set_w_avg(G.w_avg)
    w = mapper(text=pooled, mask_code=mask_ae.encode(masks), present=present)   # (N, num_ws, w_dim)
    img, _ = G([w], input_is_latent=True)
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FaceweaveError

MODALITIES = ("text", "mask", "sketch")      # the column order of `present`
_INPUT_KEYS = {"text": "text", "mask": "mask_code", "sketch": "sketch_code"}


@dataclasses.dataclass
class MapperConfig:
    text_dim: int = 384                          # text vector width (MiniLM's pooled sentence embedding)
    mask_code_channels: int = 8                  # channels of the mask autoencoder's code
    sketch_code_channels: int = 8                # channels of the sketch autoencoder's code
    code_size: int = 8                           # spatial side of both codes (input side / autoencoder factor)
    w_dim: int = 256                             # the generator's w width
    num_ws: int = 10                             # W+ layers of the generator (StyleGAN2Config.num_ws)
    conv_channels: tuple[int, ...] = (64, 128)   # spatial path: 3x3 conv to the first width, stride 2 to each next
    hidden: int = 512                            # width of both paths' outputs and of the fusion MLP
    depth: int = 2                               # residual blocks in the fusion MLP
    wplus: bool = True                           # True: one w per layer (W+); False: one w repeated num_ws times (W)

    def __post_init__(self) -> None:
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        sizes = (self.text_dim, self.mask_code_channels, self.sketch_code_channels, self.code_size, self.w_dim,
                 self.num_ws, self.hidden)
        if min(sizes) < 1 or not self.conv_channels or min(self.conv_channels) < 1 or self.depth < 0:
            raise FaceweaveError(f"bad mapper config {dataclasses.asdict(self)}: sizes must be positive, "
                                 "conv_channels non-empty, depth >= 0")
        if self.code_size % self.reduction:
            raise FaceweaveError(f"mapper code_size {self.code_size} must be divisible by {self.reduction} "
                                 f"(one halving per conv width after the first, conv_channels={self.conv_channels})")

    @property
    def reduction(self) -> int:
        return 2 ** (len(self.conv_channels) - 1)


# Named architectures. `tiny` is for tests and goes with the tiny autoencoders (4 x 4 x 4 codes
# at 32 px) and StyleGAN2 `tiny` (w_dim 32, 8 layers). `s` goes with the `s` autoencoders and
# StyleGAN2 `s` at 64 px (8 x 8 x 8 codes, w_dim 256, 10 layers); `s128` with the same
# autoencoders at 128 px (16 x 16 codes) and StyleGAN2 `s128` (12 layers).
PRESETS: dict[str, MapperConfig] = {
    "tiny": MapperConfig(mask_code_channels=4, sketch_code_channels=4, code_size=4, w_dim=32, num_ws=8,
                         conv_channels=(8, 16), hidden=32, depth=1),
    "s": MapperConfig(code_size=8, w_dim=256, num_ws=10, conv_channels=(64, 128), hidden=512, depth=2),
    "s128": MapperConfig(code_size=16, w_dim=256, num_ws=12, conv_channels=(64, 128, 128), hidden=512, depth=2),
}


class _ResidualMLP(nn.Module):
    """h + W2 LeakyReLU(W1 LayerNorm(h)): pre-norm keeps the residual stream's scale free."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.LeakyReLU(0.2), nn.Linear(dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.block(h)


class Mapper(nn.Module):
    """Conditions -> W+ codes; `Mapper(**dataclasses.asdict(config))` or `Mapper.from_config`."""

    def __init__(self, text_dim: int = MapperConfig.text_dim, mask_code_channels: int = MapperConfig.mask_code_channels,
                 sketch_code_channels: int = MapperConfig.sketch_code_channels,
                 code_size: int = MapperConfig.code_size, w_dim: int = MapperConfig.w_dim,
                 num_ws: int = MapperConfig.num_ws, conv_channels: tuple[int, ...] = MapperConfig.conv_channels,
                 hidden: int = MapperConfig.hidden, depth: int = MapperConfig.depth, wplus: bool = MapperConfig.wplus):
        super().__init__()
        self.config = cfg = MapperConfig(text_dim=text_dim, mask_code_channels=mask_code_channels,
                                         sketch_code_channels=sketch_code_channels, code_size=code_size,
                                         w_dim=w_dim, num_ws=num_ws, conv_channels=tuple(conv_channels),
                                         hidden=hidden, depth=depth, wplus=wplus)
        # spatial path: both codes plus one presence plane each, so "absent" differs from "all zeros"
        prev = cfg.mask_code_channels + cfg.sketch_code_channels + 2
        convs: list[nn.Module] = []
        for i, c in enumerate(cfg.conv_channels):
            convs += [nn.Conv2d(prev, c, 3, stride=1 if i == 0 else 2, padding=1), nn.LeakyReLU(0.2)]
            prev = c
        side = cfg.code_size // cfg.reduction
        self.spatial = nn.Sequential(*convs, nn.Flatten(), nn.Linear(prev * side * side, cfg.hidden), nn.LeakyReLU(0.2))
        # text path: LayerNorm makes it indifferent to the text encoder's vector scale
        self.text = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, cfg.hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(cfg.hidden, cfg.hidden), nn.LeakyReLU(0.2))
        # stands in for a missing prompt; about unit norm, like a pooled MiniLM vector
        self.null_text = nn.Parameter(torch.randn(cfg.text_dim) / cfg.text_dim ** 0.5)
        self.fuse_in = nn.Linear(2 * cfg.hidden + len(MODALITIES), cfg.hidden)
        self.fuse = nn.Sequential(*[_ResidualMLP(cfg.hidden) for _ in range(cfg.depth)], nn.LayerNorm(cfg.hidden))
        self.head = nn.Linear(cfg.hidden, cfg.w_dim * (cfg.num_ws if cfg.wplus else 1))
        # zero head: training starts from the generator's average face, not from a random latent
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    @classmethod
    def from_config(cls, config: MapperConfig | dict) -> Mapper:
        if isinstance(config, dict):
            config = MapperConfig(**config)
        return cls(**dataclasses.asdict(config))

    @torch.no_grad()
    def set_w_avg(self, w_avg: torch.Tensor) -> None:
        """Take the generator's average w ((w_dim,) or (1, w_dim), e.g. Generator.w_avg)."""
        w_avg = torch.as_tensor(w_avg)
        if w_avg.ndim == 2 and w_avg.shape[0] == 1:
            w_avg = w_avg[0]
        if w_avg.shape != (self.config.w_dim,):
            raise FaceweaveError(f"w_avg must have shape ({self.config.w_dim},), got {tuple(w_avg.shape)}; "
                                 "the mapper and the generator disagree on w_dim")
        self.w_avg.copy_(w_avg)

    def _present(self, inputs: dict[str, torch.Tensor | None], present: torch.Tensor | None) -> torch.Tensor:
        """(N, 3) bool presence per row, checked against the inputs that were given."""
        cfg = self.config
        expected = {"text": (cfg.text_dim,),
                    "mask": (cfg.mask_code_channels, cfg.code_size, cfg.code_size),
                    "sketch": (cfg.sketch_code_channels, cfg.code_size, cfg.code_size)}
        sizes = {x.shape[0] for x in inputs.values() if x is not None}
        if present is not None:
            if present.ndim != 2 or present.shape[1] != len(MODALITIES) or present.dtype != torch.bool:
                raise FaceweaveError(f"present must be an (N, 3) bool tensor (columns text, mask, sketch), got "
                                     f"shape {tuple(present.shape)} dtype {present.dtype}")
            sizes.add(present.shape[0])
        if not sizes:
            raise FaceweaveError("the mapper needs at least one input, or `present` (N, 3) all False "
                                 "for N unconditional codes")
        if len(sizes) > 1:
            raise FaceweaveError(f"mapper inputs disagree on the batch size: {sorted(sizes)}")
        n = sizes.pop()
        for name, x in inputs.items():
            if x is not None and tuple(x.shape[1:]) != expected[name]:
                want = ", ".join(str(d) for d in (n, *expected[name]))
                raise FaceweaveError(f"mapper input {_INPUT_KEYS[name]} must have shape ({want}), got {tuple(x.shape)}")
        given = torch.tensor([inputs[m] is not None for m in MODALITIES], device=self.w_avg.device)
        if present is None:
            return given.expand(n, -1)
        present = present.to(self.w_avg.device)
        if bool((present & ~given).any()):
            missing = [m for m, g, p in zip(MODALITIES, given.tolist(), present.any(0).tolist()) if p and not g]
            raise FaceweaveError(f"present marks {', '.join(missing)} as given but no "
                                 f"{', '.join(_INPUT_KEYS[m] for m in missing)} was passed")
        return present

    def forward(self, text: torch.Tensor | None = None, mask_code: torch.Tensor | None = None,
                sketch_code: torch.Tensor | None = None, present: torch.Tensor | None = None) -> torch.Tensor:
        """text (N, text_dim), mask_code (N, Cm, s, s), sketch_code (N, Cs, s, s), each None when
        absent for the whole batch; present (N, 3) bool marks per row which of text, mask,
        sketch to use (default: those given). Returns W+ codes (N, num_ws, w_dim)."""
        cfg = self.config
        inputs = {"text": text, "mask": mask_code, "sketch": sketch_code}
        present = self._present(inputs, present)
        n, dtype, device = present.shape[0], self.null_text.dtype, self.w_avg.device
        flags = present.to(dtype)

        def spatial_input(x: torch.Tensor | None, column: int, channels: int) -> list[torch.Tensor]:
            keep = present[:, column, None, None, None]
            if x is None:
                code = torch.zeros(n, channels, cfg.code_size, cfg.code_size, dtype=dtype, device=device)
            else:   # where, not multiply: an absent row's values (even NaN) cannot reach the output
                code = torch.where(keep, x.to(device, dtype), torch.zeros((), dtype=dtype, device=device))
            plane = flags[:, column, None, None, None].expand(n, 1, cfg.code_size, cfg.code_size)
            return [code, plane]

        grid = torch.cat(spatial_input(mask_code, 1, cfg.mask_code_channels)
                         + spatial_input(sketch_code, 2, cfg.sketch_code_channels), dim=1)
        null = self.null_text.expand(n, -1)
        words = null if text is None else torch.where(present[:, :1], text.to(device, dtype), null)
        h = self.fuse_in(torch.cat([self.spatial(grid), self.text(words), flags], dim=1))
        delta = self.head(F.leaky_relu(self.fuse(h), 0.2))
        delta = delta.view(n, cfg.num_ws if cfg.wplus else 1, cfg.w_dim).expand(n, cfg.num_ws, cfg.w_dim)
        return self.w_avg.to(delta.dtype) + delta


def modality_dropout(present: torch.Tensor, p: float, generator: torch.Generator | None = None,
                     p_all: float = 0.0) -> torch.Tensor:
    """Hide each present modality independently with probability p, and every modality of a
    row with probability p_all on top: the subsets a user may give, and (with p ** 3 + p_all,
    roughly) the unconditional mapping, all seen in training. Returns a new (N, 3) bool
    tensor; the generator must live on present's device."""
    if not (0.0 <= p <= 1.0 and 0.0 <= p_all <= 1.0):
        raise FaceweaveError(f"dropout probabilities must lie in [0, 1], got p={p}, p_all={p_all}")
    if present.dtype != torch.bool:
        raise FaceweaveError(f"present must be a bool tensor, got dtype {present.dtype}")
    keep = torch.rand(present.shape, generator=generator, device=present.device) >= p
    out = present & keep
    if p_all > 0:
        wipe = torch.rand(present.shape[:1], generator=generator, device=present.device) < p_all
        out = out & ~wipe[:, None]
    return out


def mapper_loss(mapper: Mapper, batch_inputs: dict[str, torch.Tensor | None], w_target: torch.Tensor,
                present: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """MM2Latent's latent loss: mean squared error between the predicted and the target codes.

    batch_inputs holds any of text, mask_code, sketch_code (Mapper.forward's names);
    w_target is W (N, w_dim), compared with every layer, or W+ (N, num_ws, w_dim). Parts:
    latent_mse, and baseline_mse, the error of always answering w_avg (what the mapper has
    to beat; their ratio is the fraction of the latent's spread it has not explained yet).
    """
    unknown = sorted(set(batch_inputs) - set(_INPUT_KEYS.values()))
    if unknown:
        raise FaceweaveError(f"unknown mapper inputs {unknown}; use {', '.join(_INPUT_KEYS.values())}")
    bare = getattr(mapper, "module", mapper)          # DDP wraps the mapper
    cfg = bare.config
    if w_target.ndim == 2:
        w_target = w_target[:, None]
    if w_target.ndim != 3 or w_target.shape[1] not in (1, cfg.num_ws) or w_target.shape[2] != cfg.w_dim:
        raise FaceweaveError(f"w_target must be (N, {cfg.w_dim}) or (N, {cfg.num_ws}, {cfg.w_dim}), "
                             f"got {tuple(w_target.shape)}")
    pred = mapper(**batch_inputs, present=present).float()
    target = w_target.float().expand_as(pred)
    mse = F.mse_loss(pred, target)
    with torch.no_grad():
        baseline = F.mse_loss(bare.w_avg.float().expand_as(target), target)
    return mse, {"latent_mse": float(mse.detach()), "baseline_mse": float(baseline)}
