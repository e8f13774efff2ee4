"""MMFS face stylization (Ma et al. 2023): a photo in the look of a reference image
(one-shot) or of a text (zero-shot), through an encoder-decoder on a StyleGAN2 prior.

    pipe = faceweave.load("stylize")                      # the bundled stylize-64-real, or a checkpoint folder
    out = pipe(photo, style=reference)                    # one-shot: a reference image (or a list, a folder)
    out = pipe(photo, style_text="a pencil sketch")       # zero-shot: needs a model with a text mapper
    out.images[0], out.stylized, out.metadata[0]

Per call: the face is found and aligned with FFHQ's framing (which is CelebA-HQ's, what the
real-face models are trained on), encoded into the generator's features at `split`, and
decoded. One-shot fine-tunes a copy of the decoder for `tune_steps` Adam steps towards the
reference: a style loss (Gram matrices, or channel moments, of texture features: a face
parser's encoder levels by default, the critic's blocks or seeded random filter banks;
normalised by the reference's own, plus the sliced distance of the colours; Gatys et al.
2016 eq. 3-5) and
`structure_weight` times the structure loss of train.py (normalised luminance at a quarter
of the side against the photo). `strength` (0..1) blends the decoder's weights from the
model's own to the tuned ones (one-shot) or scales the text's W+ offsets (zero-shot). The
stylized face is pasted back into the photo with the gan backend's feathered seam.

`sample(seeds)` draws faces of the decoder's domain (a seed's code through the generator's
low layers, then the decoder): what the backend's `generate` gives.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ... import checkpoint
from ...conditions import Conditions
from ...errors import FaceweaveError
from ...io import resize_image
from ...seeds import check_seeds
from ..base import Backend, Pipeline, checked_keywords
from ..wplus_edit import BLENDS
from .networks import ParserLevels, RandomFilters, Stylizer
from .train import SAMPLING, structure, to_tensor, to_uint8

FAMILY = "stylize"
DEFAULT_MODEL = "stylize-64-real"     # bundled: one-shot and zero-shot on the real-face StyleGAN2
ALIGN_SCALE, ALIGN_SHIFT = 1.0, 0.1   # FFHQ framing = CelebA-HQ's crops (mean abs difference 7.8/255 on 8 photos)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_REFERENCES = 64


@dataclasses.dataclass
class StylizeOutput:
    images: list[np.ndarray]                   # the photo with the stylized face pasted back (or the face)
    metadata: list[dict[str, Any]]
    aligned: np.ndarray | None = None          # the aligned face that was stylized (S x S x 3)
    stylized: np.ndarray | None = None         # the stylized face (S x S x 3)
    references: list[np.ndarray] = dataclasses.field(default_factory=list)   # the references at S px


@dataclasses.dataclass
class SampleOutput:
    images: list[np.ndarray]
    metadata: list[dict[str, Any]]


def square(image: np.ndarray, size: int) -> np.ndarray:
    """The centre square of an image, resized to size x size."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_image(np.ascontiguousarray(image[top:top + side, left:left + side]), size)


def read_style_folder(folder, size: int) -> list[np.ndarray]:
    """Every image of a folder (png, jpg, webp, bmp), centre square at size px, in name order."""
    from ...io import read_image
    folder = Path(folder).expanduser()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FaceweaveError(f"the style folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                             "put the style images there or pass one image")
    if len(files) > MAX_REFERENCES:
        raise FaceweaveError(f"the style folder {folder} holds {len(files)} images; use at most {MAX_REFERENCES}")
    return [square(read_image(p), size) for p in files]


def _rgb(image, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 8:
        raise FaceweaveError(f"{what} must be an H x W x 3 uint8 RGB image of at least 8 px, got "
                             f"{arr.dtype} array of shape {arr.shape}; read it with faceweave.io.read_photo")
    return arr


def check_strength(value) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise FaceweaveError(f"strength must be a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= s <= 1.0:                               # NaN fails too
        raise FaceweaveError(f"strength must be from 0 to 1, got {value!r}; 1 is the full style, 0 the "
                             "model's own look")
    return s


def check_style_text(text) -> str:
    if not isinstance(text, str):
        raise FaceweaveError(f"style text must be a sentence, got {type(text).__name__}")
    clean = " ".join(text.split())
    if not clean:
        raise FaceweaveError("the style text is empty; describe the look, e.g. --style-text \"a pencil sketch\"")
    return clean


def gram(features: torch.Tensor) -> torch.Tensor:
    n, c = features.shape[:2]
    f = features.flatten(2)
    return f @ f.transpose(1, 2) / f.shape[2]


# fixed directions in RGB of the sliced colour distance (the three axes and the greys' diagonals)
_DIRECTIONS = torch.nn.functional.normalize(torch.tensor(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [1, -1, 0], [1, 1, -2], [1, -1, 1], [-1, 1, 1]], dtype=torch.float32), dim=1)


STATISTICS = ("gram", "moments")
_PARSER_LEVELS: dict[tuple[str, str], ParserLevels] = {}


def style_network(model: Stylizer, which: str):
    """The network whose `block_features` the one-shot's texture statistics read (sampling's
    style_features): the model's critic ("critic"), seeded random filter banks ("random",
    networks.RandomFilters) or a face parser checkpoint's encoder levels (a bundled name such
    as "parser-64", or a folder; networks.ParserLevels, loaded once per process)."""
    device = next(model.parameters()).device
    if which == "critic":
        return model.critic
    if which == "random":
        return RandomFilters().to(device)
    key = (str(which), str(device))
    if key not in _PARSER_LEVELS:
        from ...ruler import load_parser
        try:
            parser = load_parser(which, device=device)
        except FaceweaveError as exc:
            raise FaceweaveError(f"unknown style_features {which!r}; choose critic, random or a face parser "
                                 f"checkpoint such as parser-64 ({exc})") from None
        _PARSER_LEVELS[key] = ParserLevels(parser.model)
    return _PARSER_LEVELS[key]


def style_statistics(critic, images: torch.Tensor, blocks: int = 2, kind: str = "gram") -> dict[str, Any]:
    """What the one-shot loss matches, over the first `blocks` block features of `critic` (any
    network with `block_features`: the model's critic or RandomFilters), averaged over the
    images: their Gram matrices ("gram", Gatys et al. 2016) or their channel means and
    standard deviations ("moments", the statistics AdaIN transfers, Huang & Belongie 2017);
    and the sorted projections of all the images' pixel colours on fixed directions (the
    colour distribution)."""
    if kind not in STATISTICS:
        raise FaceweaveError(f"unknown style statistic {kind!r}; choose {' or '.join(STATISTICS)}")
    feats = critic.block_features(images)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 1 <= blocks <= len(feats):
        raise FaceweaveError(f"style_blocks must be a whole number from 1 to {len(feats)} (the blocks of the "
                             f"style features), got {blocks!r}")
    feats = feats[:blocks]
    colours = images.permute(0, 2, 3, 1).reshape(-1, 3) @ _DIRECTIONS.to(images).T
    if kind == "gram":
        texture = [gram(f).mean(0) for f in feats]
    else:
        texture = [torch.cat([f.flatten(2).mean(2), f.flatten(2).std(2)], 1).mean(0) for f in feats]
    return {"texture": texture, "colours": colours.sort(0).values}


def style_loss(stats: dict[str, Any], target: dict[str, Any], colour_weight: float = 1.0) -> torch.Tensor:
    """Texture: the squared distance of the statistics relative to the reference's (for Gram
    matrices Gatys et al. 2016 eq. 4-5); colour: the sliced Wasserstein distance of the pixel
    colours (the L1 distance of their sorted projections, the reference's resampled to as many
    pixels)."""
    texture = [(s - t).square().sum() / t.square().sum().clamp(min=1e-8)
               for s, t in zip(stats["texture"], target["texture"])]
    mine, theirs = stats["colours"], target["colours"]
    if theirs.shape[0] != mine.shape[0]:
        theirs = theirs[torch.linspace(0, theirs.shape[0] - 1, mine.shape[0]).round().long()]
    return sum(texture) / len(texture) + colour_weight * (mine - theirs).abs().mean()


class StylizePipeline(Pipeline):
    """A trained stylizer (networks.Stylizer) behind one call."""

    family = FAMILY
    SAMPLING = dict(SAMPLING)

    def __init__(self, model: Stylizer, config: dict, meta: dict | None = None, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.config = config
        self.meta = meta if meta is not None else {"config": config}
        self._text_encoder = None

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device | None = None) -> "StylizePipeline":
        meta, state = checkpoint.load(name_or_path, FAMILY)
        try:
            model = Stylizer.from_config(meta["config"]["stylizer"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FaceweaveError(f"{meta['path']}: config.json does not describe a stylize model ({exc})") from None
        checkpoint.load_into(model, state, where=meta["path"])
        return cls(model, meta["config"], meta=meta, device=device or "cpu")

    def save_pretrained(self, path: str | Path, storage: str | None = None) -> Path:
        return checkpoint.save(path, FAMILY, self.config, self.model.state_dict(), storage=storage,
                               **{"image_size": self.size, **self._saved_meta()})

    @property
    def size(self) -> int:
        return self.model.generator.config.size

    @property
    def modalities(self) -> tuple[str, ...]:
        return ()                                       # it reads a photo and a style, no conditions

    @property
    def reads_text(self) -> bool:
        return self.model.mapper is not None

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from ...models.text_encoder import TextEncoder
            self._text_encoder = TextEncoder(device=self.device)
        return self._text_encoder

    # -- faces of the model's domain (the backend's generate) ----------------------------------
    @checked_keywords
    @torch.no_grad()
    def sample(self, seeds: Sequence[int] = (0,), *, progress: bool = False) -> SampleOutput:
        """One face of the decoder's domain per seed (image i depends only on seed i)."""
        seeds = check_seeds(seeds)
        images, metadata = [], []
        for seed in seeds:
            t0 = time.perf_counter()
            z = torch.randn(1, self.model.generator.config.z_dim, generator=torch.Generator().manual_seed(int(seed)))
            images.extend(to_uint8(self.model.sample(z.to(self.device))))
            metadata.append({"seed": int(seed), "backend": FAMILY, "model": self.meta.get("path"), "given": [],
                             "conditions": Conditions().digest(), "notes": [],
                             "sec_per_image": round(time.perf_counter() - t0, 4)})
        return SampleOutput(images, metadata)

    # -- stylization ---------------------------------------------------------------------------
    def _references(self, style, size: int) -> list[np.ndarray]:
        if isinstance(style, (str, Path)):
            path = Path(style).expanduser()
            if path.is_dir():
                return read_style_folder(path, size)
            from ...io import read_image
            return [square(read_image(path), size)]
        items = [style] if isinstance(style, np.ndarray) else list(style)
        if not items:
            raise FaceweaveError("style is an empty list; pass a reference image, a list of them or a folder")
        return [square(_rgb(im, "the style reference"), size) for im in items]

    def tune(self, features: torch.Tensor, skip: torch.Tensor, photo: torch.Tensor, references: torch.Tensor,
             steps: int, lr: float, style_weight: float, structure_weight: float,
             colour_weight: float = 1.0, colour_lr: float = 2e-2, statistic: str = "gram",
             blocks: int = 2, features_from: str = "critic") -> tuple[torch.nn.Module, dict]:
        """A copy of the decoder fine-tuned towards the references for this face (one-shot)."""
        m = self.model
        net = style_network(m, features_from)
        decoder = copy.deepcopy(m.decoder).requires_grad_(True)
        with torch.no_grad():
            target = style_statistics(net, references, blocks, statistic)
        wplus = m.neutral_wplus(1)
        # the skip's colour transform is 12 numbers that must travel far (a new palette): its own rate
        # the noise strengths stay: raising them is the cheapest way to fake texture (grain)
        colour_params = list(decoder.skip_colour.parameters())
        rest = [p for n, p in decoder.named_parameters() if not n.startswith("skip_colour.") and ".noise." not in n]
        optim = torch.optim.Adam([{"params": rest, "lr": lr}, {"params": colour_params, "lr": colour_lr}],
                                 betas=(0.0, 0.99))
        history = []
        with torch.enable_grad():
            for _ in range(steps):
                out = decoder(features, skip, wplus)
                ls = style_loss(style_statistics(net, out, blocks, statistic), target, colour_weight)
                lk = structure(out, photo)
                loss = style_weight * ls + structure_weight * lk
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                history.append((float(ls.detach()), float(lk.detach())))
        decoder.requires_grad_(False)
        first, last = (history[0], history[-1]) if history else ((None, None), (None, None))
        return decoder, {"style_loss_first": first[0], "style_loss_last": last[0], "structure_last": last[1]}

    @checked_keywords
    def __call__(self, image: np.ndarray, *, style=None, style_text: str | None = None, strength: float | None = None,
                 tune_steps: int | None = None, align: bool = True, blend: str = "residual", feather: float = 0.25,
                 progress: bool = False, name: str = "the photo") -> StylizeOutput:
        """The photo's face in the look of `style` (a reference image, a list of them or a
        folder: one-shot) or of `style_text` (zero-shot), exactly one of the two.

        strength    0..1: how far towards the style  [default: the checkpoint's, 1]
        tune_steps  one-shot fine-tuning steps of the decoder  [default: the checkpoint's]
        align       find, align and paste back the face (False: the image is an aligned face)
        blend       the pasted face: "residual" (the photo's own crop at its resolution plus the style's
                    change, stylized - reconstruction, upsampled; the gan backend's edit blend) or
                    "generated" (the model's stylized face itself, upsampled)
        """
        if blend not in BLENDS:
            raise FaceweaveError(f"unknown blend {blend!r}; choose {' or '.join(BLENDS)}")
        if (style is None) == (style_text is None):
            raise FaceweaveError("give exactly one style: a reference image (--style) or a text (--style-text)"
                                 + (", not both" if style is not None else ""))
        sampling = self.sampling
        strength = check_strength(sampling["strength"] if strength is None else strength)
        if style_text is not None:
            style_text = check_style_text(style_text)
            if not self.reads_text:
                raise FaceweaveError(f"the model {self.meta.get('path')} has no text mapper; train one with "
                                     "faceweave train stylize --preset text (docs/stylize.md) or give --style")
        steps = sampling["tune_steps"] if tune_steps is None else tune_steps
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps <= 2000:
            raise FaceweaveError(f"tune_steps must be a whole number from 0 to 2000, got {steps!r}")
        photo = _rgb(image, name)
        s = self.size
        references = self._references(style, s) if style is not None else []
        t0 = time.perf_counter()
        notes: list[str] = []
        if align:
            from ...align import align_face
            aligned = align_face(photo, size=s, scale=ALIGN_SCALE, shift=ALIGN_SHIFT, name=name)
            face = aligned.image
            if aligned.warning:
                notes.append(aligned.warning)
        else:
            face = photo if photo.shape[:2] == (s, s) else square(photo, s)
        m = self.model
        x = to_tensor([face], self.device)
        with torch.no_grad():
            features, skip = m.encoder(x)
        meta: dict[str, Any] = {"backend": FAMILY, "model": self.meta.get("path"), "strength": strength,
                                "aligned": align, "blend": blend}
        if style is not None:
            t1 = time.perf_counter()
            tuned, report = self.tune(features, skip, x, to_tensor(references, self.device), int(steps),
                                      float(sampling["tune_lr"]), float(sampling["style_weight"]),
                                      float(sampling["structure_weight"]), float(sampling["colour_weight"]),
                                      float(sampling["colour_lr"]), str(sampling["style_statistic"]),
                                      int(sampling["style_blocks"]), str(sampling["style_features"]))
            meta.update({"mode": "one-shot", "references": len(references), "tune_steps": int(steps),
                         "tune_seconds": round(time.perf_counter() - t1, 3), **report})
            own = dict(m.decoder.named_parameters())
            blended = {k: torch.lerp(own[k], v, strength) for k, v in tuned.named_parameters()}
            blended.update(dict(tuned.named_buffers()))
            with torch.no_grad():
                out = torch.func.functional_call(tuned, blended, (features, skip, m.neutral_wplus(1)))
        else:
            emb = self.text_encoder.encode([style_text]).pooled.to(self.device)
            with torch.no_grad():
                offsets, colour = (t * strength for t in m.mapper(emb))
                out = m.decoder(features, skip, m.wplus(1, offsets), colour)
            meta.update({"mode": "zero-shot", "style_text": style_text,
                         "offset_norm": round(float(offsets.norm()), 4), "colour_norm": round(float(colour.norm()), 4)})
        stylized = to_uint8(out)[0]
        if align:
            from ...align import align_face, paste_back
            pasted, crop = aligned, stylized
            side = float(np.linalg.norm(np.asarray(aligned.quad, np.float64)[1] - np.asarray(aligned.quad)[0]))
            if blend == "residual" and side > s:
                pasted = align_face(photo, size=int(min(1024, round(side))), scale=ALIGN_SCALE, shift=ALIGN_SHIFT,
                                    name=name)
                with torch.no_grad():
                    change = out - m.decoder(features, skip, m.neutral_wplus(1))
                    change = F.interpolate(change, size=pasted.image.shape[:2], mode="bicubic", align_corners=False)
                    crop = to_uint8((to_tensor([pasted.image], self.device) + change).clamp(-1, 1))[0]
            result = paste_back(photo, pasted, crop, feather=feather)
        else:
            result = stylized
        meta.update({"seconds": round(time.perf_counter() - t0, 3), "notes": notes})
        return StylizeOutput([result], [meta], aligned=face, stylized=stylized, references=references)


class StylizeBackend(Backend):
    """The registry face of StylizePipeline: generate(conditions, seeds, size) draws faces of the
    model's domain (it reads no conditions); stylizing photos is `faceweave stylize`."""

    name = FAMILY
    accepts = ()

    def __init__(self, model: str | None = None):
        self.pipe = StylizePipeline.from_pretrained(DEFAULT_MODEL if model is None else model)

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        out = self.pipe.sample(seeds).images
        return out if size == self.pipe.size else [resize_image(im, size) for im in out]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.pipe.meta.get("path"), "size": self.pipe.size}
