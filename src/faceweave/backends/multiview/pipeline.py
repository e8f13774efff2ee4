"""One face, several yaws: the multiview pipeline (EG3D-style, networks.py).

    pipe = faceweave.load("runs/multiview-64-facesynth/best")
    out = pipe.views(seeds=[0, 1], yaws=[-30, -15, 0, 15, 30])     # out.views[i][j]: seed i at yaw j
    out = pipe.views(image=photo, yaws=[-30, 0, 30])                 # a photo, inverted and turned
    out = pipe(seeds=[0, 1])                                         # one frontal face per seed (generate)

A seed's face: z from the seed, w = mapping(z, frontal camera), pulled towards the average w
by `truncation`; one w is rendered from every camera, so the face keeps its identity while it
turns. A photo's face: found and aligned with FaceSynth's framing (what the model is trained
on), its yaw read off its five dlib landmarks (views.estimate_yaw), its w guessed by the
encoder and refined in W+ by `invert_steps` Adam steps against the render at that yaw (L1 of
the image and of the raw render; the projector's recipe without its noise maps, which this
generator does not have). Conditions reach the generator through a ddgi model trained on it
(`faceweave train ddgi --set generator=MULTIVIEW_CHECKPOINT`): its W+ code is turned instead
(`views_from_ddgi`).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ... import checkpoint
from ...conditions import Conditions
from ...errors import FaceweaveError
from ...io import resize_image
from ...seeds import check_seeds
from ..base import Backend, Pipeline, checked_keywords, per_seed_conditions
from .networks import YAW_RANGE, MultiviewGAN, MultiviewConfig
from .train import SAMPLING, raw_target, to_tensor, to_uint8

FAMILY = "multiview"
DEFAULT_MODEL = None          # none bundled: faceweave train multiview makes one (docs/multiview.md)
DEFAULT_YAWS = (-30.0, -15.0, 0.0, 15.0, 30.0)
MAX_YAWS = 32


@dataclasses.dataclass
class MultiviewOutput:
    images: list[np.ndarray]                 # one per seed: the face at yaw 0 (what generate returns)
    metadata: list[dict[str, Any]]


@dataclasses.dataclass
class ViewsOutput:
    views: list[list[np.ndarray]]            # views[i][j]: face i at yaws[j], S x S x 3 uint8
    yaws: list[float]
    metadata: list[dict[str, Any]]           # per face: seed or photo, yaw estimate, settings, timing
    aligned: list[np.ndarray] = dataclasses.field(default_factory=list)   # the photo's aligned face, if any
    latents: list[torch.Tensor] = dataclasses.field(default_factory=list)  # per face: W+ (1, num_ws, w_dim)

    def strip(self, i: int = 0) -> np.ndarray:
        """Face i's views side by side (one row)."""
        return np.concatenate(self.views[i], axis=1)


def parse_yaws(text) -> list[float]:
    """"-30,-15,0,15,30" (or a list of numbers) -> yaws in degrees, each within the trained range."""
    items = text.split(",") if isinstance(text, str) else list(text) if hasattr(text, "__iter__") else [text]
    if isinstance(text, str) and not text.strip():
        raise FaceweaveError("the yaw list is empty; pass degrees separated by commas, e.g. --yaws=-30,-15,0,15,30")
    yaws = []
    for item in items:
        try:
            yaw = float(str(item).strip()) if isinstance(item, str) else float(item)
        except (TypeError, ValueError):
            raise FaceweaveError(f"yaw {str(item).strip()!r} is not a number; pass degrees separated by commas, "
                                 "e.g. --yaws=-30,-15,0,15,30") from None
        lo, hi = YAW_RANGE
        if not lo <= yaw <= hi:                          # NaN fails too
            raise FaceweaveError(f"yaw {yaw:g} is out of range: the model was trained on yaws from {lo:g} to "
                                 f"{hi:g} degrees; pass yaws in that range")
        yaws.append(yaw)
    if not yaws:
        raise FaceweaveError("the yaw list is empty; pass degrees separated by commas, e.g. --yaws=-30,-15,0,15,30")
    if len(yaws) > MAX_YAWS:
        raise FaceweaveError(f"{len(yaws)} yaws asked for; pass at most {MAX_YAWS}")
    return yaws


def _check_number(name: str, value, low: float, high: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FaceweaveError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}") from None
    if not low <= v <= high:
        raise FaceweaveError(f"{name} must be from {low:g} to {high:g}, got {value!r}")
    return v


def _check_steps(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 5000:
        raise FaceweaveError(f"invert_steps must be a whole number from 0 to 5000, got {value!r}")
    return int(value)


def _photo(image, name: str) -> np.ndarray:
    if isinstance(image, (str, Path)):
        from ...io import read_photo
        return read_photo(image)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 32:
        raise FaceweaveError(f"{name} must be an H x W x 3 uint8 RGB image of at least 32 px, got {arr.dtype} "
                             f"array of shape {arr.shape}; read it with faceweave.io.read_photo")
    return arr


class MultiviewPipeline(Pipeline):
    """A trained multiview model (networks.MultiviewGAN) behind one call."""

    family = FAMILY
    SAMPLING = dict(SAMPLING)

    def __init__(self, model: MultiviewGAN, config: dict, meta: dict | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.config = config
        self.meta = meta if meta is not None else {"config": config}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device | None = None) -> "MultiviewPipeline":
        """A multiview checkpoint folder; a training run's last/ loads its EMA weights."""
        meta, state = checkpoint.load(name_or_path, FAMILY)
        try:
            model = MultiviewGAN(MultiviewConfig(**meta["config"]))
        except (TypeError, ValueError) as exc:
            raise FaceweaveError(f"{meta['path']}: config.json does not describe a multiview model ({exc})") from None
        if (Path(meta["path"]) / "ema.safetensors").exists():
            state = checkpoint.load_tensors(meta["path"], "ema")
        checkpoint.load_into(model, state, where=meta["path"])
        return cls(model, meta["config"], meta=meta, device=device or "cpu")

    def save_pretrained(self, path: str | Path, storage: str | None = None) -> Path:
        return checkpoint.save(path, FAMILY, self.config, self.model.state_dict(), storage=storage,
                               **{"image_size": self.size, **self._saved_meta()})

    @property
    def size(self) -> int:
        return self.model.config.size

    @property
    def modalities(self) -> tuple[str, ...]:
        return ()                     # conditions come through a ddgi model trained on this generator

    # -- latents ---------------------------------------------------------------------------
    def seed_latent(self, seed: int, truncation: float) -> torch.Tensor:
        """W+ (1, num_ws, w_dim) of a seed: its z under the frontal conditioning camera."""
        m = self.model
        z = torch.randn(1, m.config.z_dim, generator=torch.Generator().manual_seed(int(seed))).to(self.device)
        w = m.mapping(z, m.camera([0.0]))
        return m.wplus(torch.lerp(m.w_avg[None], w, truncation))

    @torch.no_grad()
    def render(self, wplus: torch.Tensor, yaws: Sequence[float], pitch: float = 0.0) -> list[np.ndarray]:
        """One latent (1, num_ws, w_dim) or (1, w_dim) rendered at each yaw (degrees)."""
        m = self.model
        cams = m.camera(torch.tensor([float(y) for y in yaws]), float(pitch))
        out = m.synthesize(m.wplus(wplus).expand(len(yaws), -1, -1), cams)
        return to_uint8(out.image)

    def invert(self, face: np.ndarray, yaw: float, steps: int, lr: float) -> tuple[torch.Tensor, dict[str, float]]:
        """An aligned face at a known yaw -> W+: the encoder's w, then Adam steps on W+ against
        the render at that yaw (L1 of the image and of the raw render)."""
        m = self.model
        x = to_tensor([resize_image(face, self.size)], self.device)
        cam = m.camera([float(yaw)])
        with torch.no_grad():
            w = m.wplus(m.encoder(x)).clone()
            first = float((m.synthesize(w, cam).image - x).abs().mean())
        raw = raw_target(x, m.config.render_size)
        w.requires_grad_(True)
        optim = torch.optim.Adam([w], lr=lr, betas=(0.9, 0.999))
        with torch.enable_grad():
            for _ in range(steps):
                out = m.synthesize(w, cam)
                loss = (out.image - x).abs().mean() + (out.raw - raw).abs().mean()
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
        with torch.no_grad():
            last = float((m.synthesize(w, cam).image - x).abs().mean())
        return w.detach(), {"l1_encoder": round(first, 4), "l1_inverted": round(last, 4)}

    def photo_face(self, photo: np.ndarray, name: str = "the photo", align: bool = True) -> tuple[np.ndarray, list[str]]:
        """The photo's face aligned with FaceSynth's framing at the model's size (or the image
        itself, resized, when align=False: an aligned crop already)."""
        if not align:
            return resize_image(photo, self.size), []
        from ...align import align_face
        aligned = align_face(photo, size=self.size, name=name)
        return aligned.image, ([aligned.warning] if aligned.warning else [])

    # -- the calls -------------------------------------------------------------------------
    @checked_keywords
    @torch.no_grad()
    def __call__(self, prompt: str | None = None, attributes: dict[str, int] | None = None,
                 mask: np.ndarray | None = None, sketch: np.ndarray | None = None, *,
                 seeds: Sequence[int] = (0,), conditions: Conditions | Sequence[Conditions] | None = None,
                 yaw: float = 0.0, truncation: float | None = None, progress: bool = False) -> MultiviewOutput:
        """One face per seed at one yaw (default frontal): the generate contract.

        yaw         degrees, within the trained range (-30..30)
        truncation  0..1: how far from the average face  [default: the checkpoint's, 0.7]
        """
        seeds = check_seeds(seeds)
        conds = per_seed_conditions(conditions, prompt, attributes, mask, sketch, len(seeds), (),
                                    "the multiview model (it reads no conditions; train ddgi on it for those)")
        (yaw,) = parse_yaws([yaw])
        psi = _check_number("truncation", self.sampling["truncation"] if truncation is None else truncation, 0.0, 1.0)
        images, metadata = [], []
        for cond, seed in zip(conds, seeds):
            t0 = time.perf_counter()
            images.extend(self.render(self.seed_latent(seed, psi), [yaw]))
            metadata.append({"seed": int(seed), "backend": FAMILY, "model": self.meta.get("path"), "given": [],
                             "conditions": cond.digest(), "yaw": yaw, "truncation": psi, "notes": [],
                             "sec_per_image": round(time.perf_counter() - t0, 4)})
        return MultiviewOutput(images, metadata)

    @checked_keywords
    def views(self, seeds: Sequence[int] | None = None, *, image=None, yaws=DEFAULT_YAWS,
              truncation: float | None = None, invert_steps: int | None = None, align: bool = True,
              name: str = "the photo") -> ViewsOutput:
        """Faces turned to each yaw: one per seed, or the face of `image` (a photo: uint8 RGB or
        a path), never both.

        yaws          degrees (a list or "-30,0,30"), each within -30..30
        truncation    0..1, for seeds  [default: the checkpoint's]
        invert_steps  refinement steps of a photo's inversion  [default: the checkpoint's, 150]
        align         find and align the photo's face (False: it is an aligned face crop already)
        """
        yaws = parse_yaws(yaws)
        sampling = self.sampling
        if (seeds is None) == (image is None):
            raise FaceweaveError("give seeds or a photo (image=...), exactly one of the two"
                                 + (", not both" if image is not None else ""))
        if image is None:
            seeds = check_seeds(seeds)
            psi = _check_number("truncation", sampling["truncation"] if truncation is None else truncation, 0.0, 1.0)
            out = ViewsOutput([], yaws, [])
            for seed in seeds:
                t0 = time.perf_counter()
                with torch.no_grad():
                    w = self.seed_latent(seed, psi)
                out.views.append(self.render(w, yaws))
                out.latents.append(w)
                out.metadata.append({"seed": int(seed), "backend": FAMILY, "model": self.meta.get("path"),
                                     "source": "seed", "yaws": yaws, "truncation": psi,
                                     "sec_per_view": round((time.perf_counter() - t0) / len(yaws), 4)})
            return out
        steps = _check_steps(sampling["invert_steps"] if invert_steps is None else invert_steps)
        photo = _photo(image, name)
        t0 = time.perf_counter()
        face, notes = self.photo_face(photo, name, align)
        from .views import estimate_yaw
        lo, hi = YAW_RANGE
        estimated = estimate_yaw(face, aligned=True)
        yaw = float(np.clip(estimated, lo, hi))
        if yaw != estimated:
            notes.append(f"the face's estimated yaw {estimated:.1f} lies outside the trained range; inverted at {yaw:g}")
        w, report = self.invert(face, yaw, steps, float(sampling["invert_lr"]))
        t1 = time.perf_counter()
        views = self.render(w, yaws)
        meta = {"backend": FAMILY, "model": self.meta.get("path"), "source": "photo", "photo": name,
                "estimated_yaw": round(estimated, 2), "inverted_at_yaw": yaw, "invert_steps": steps, **report,
                "yaws": yaws, "invert_seconds": round(t1 - t0, 3),
                "sec_per_view": round((time.perf_counter() - t1) / len(yaws), 4), "notes": notes}
        return ViewsOutput([views], yaws, [meta], aligned=[face], latents=[w])

    @checked_keywords
    @torch.no_grad()
    def views_from_ddgi(self, ddgi, conditions: Sequence[Conditions], seeds: Sequence[int], yaws=DEFAULT_YAWS,
                        sigma: float | None = None) -> ViewsOutput:
        """Faces from conditions: a ddgi model trained on this generator reads them into W+,
        which is turned to each yaw."""
        yaws = parse_yaws(yaws)
        seeds = check_seeds(seeds)
        sigma = ddgi._sigma(ddgi.sampling["sigma"] if sigma is None else sigma)
        conds = per_seed_conditions(list(conditions), None, None, None, None, len(seeds), ddgi.modalities,
                                    "this ddgi model")
        out = ViewsOutput([], yaws, [])
        for cond, seed in zip(conds, seeds):
            t0 = time.perf_counter()
            w, notes = ddgi.wplus(cond, seed, sigma)
            out.views.append(self.render(w, yaws))
            out.latents.append(w)
            out.metadata.append({"seed": int(seed), "backend": FAMILY, "model": self.meta.get("path"),
                                 "source": "ddgi", "ddgi": ddgi.meta.get("path"), "given": list(cond.given),
                                 "conditions": cond.digest(), "sigma": sigma, "yaws": yaws, "notes": notes,
                                 "sec_per_view": round((time.perf_counter() - t0) / len(yaws), 4)})
        return out


def ddgi_multiview(ddgi) -> "MultiviewPipeline | None":
    """The multiview pipeline a ddgi pipeline drives (its generator is a multiview model), or None."""
    from .adapter import FrontalGenerator
    G = ddgi.generator
    if not isinstance(G, FrontalGenerator):
        return None
    return MultiviewPipeline(G.model, G.meta["config"], meta=G.meta, device=ddgi.device)


class MultiviewBackend(Backend):
    """The registry face of MultiviewPipeline: generate(conditions, seeds, size) draws frontal
    faces from seeds (it reads no conditions); turning them is `faceweave multiview`."""

    name = FAMILY
    accepts = ()

    def __init__(self, model: str | None = None):
        if model is None:
            raise FaceweaveError("the multiview backend has no bundled model yet: train one with faceweave train "
                                 "multiview (docs/multiview.md) and pass --model FOLDER")
        self.pipe = MultiviewPipeline.from_pretrained(model)

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        out = self.pipe(conditions=conditions, seeds=seeds).images
        return out if size == self.pipe.size else [resize_image(im, size) for im in out]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.pipe.meta.get("path"), "size": self.pipe.size}

