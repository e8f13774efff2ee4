"""Diffusion-driven GAN Inversion (Kim et al., CVPR 2024): a face from text, attributes, a
mask or a sketch in one pass of a frozen conditional diffusion UNet and one pass of a frozen
StyleGAN2.

    pipe = faceweave.load("path/to/ddgi-checkpoint")
    out = pipe(prompt="a smiling woman", mask=mask, seeds=[0, 1])

Per image: x_t = sigma * noise (from the image's seed), one call of the diffusion model at
sigma with the conditions (`networks.UNetTap` reads its bottleneck, decoder features and
cross-attention maps), the mapping network and the style modulation make a W+ code
(w = w_m * gamma + beta), and the generator renders it with the seed's noise maps. With
`diversity` > 0 the seed's own latent replaces the finest W+ layers by that fraction (as the
gan backend does). A checkpoint holds the two small networks; the diffusion model and the
generator it was trained on are named in its config (folder or bundled name, with the
fingerprint of their weights) and copied beside it by `save_pretrained`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ... import checkpoint
from ...checkpoint import fingerprint
from ...conditions import Conditions
from ...errors import FaceweaveError
from ...io import resize_image
from ...seeds import check_seeds
from ..base import Backend, PhotoResult, Pipeline, checked_keywords, per_seed_conditions, photo_instrument
from ..wplus_edit import (EditOutput, Inversion, check_edit, edit_photo, edit_result, invert_face, read_conditions,
                          target_conditions)
from ..diffusion.pipeline import MODALITY, DiffusionPipeline, PipelineOutput, image_metadata
from .networks import DDGIConfig, DDGINets, UNetTap, decoder_attention_blocks

FAMILY = "ddgi"
DEFAULT_MODEL = "ddgi-64-real"       # on diffusion-64-real and stylegan2-64-real (docs/ddgi.md)
ACCEPTS = ("prompt", "attributes", "mask", "sketch")
PARTS = "parts"


def load_generator_part(ref: str, base: Path | None = None):
    """A frozen generator (a stylegan2 checkpoint folder or bundled name, or a multiview one,
    rendered at yaw 0 through multiview.adapter; or a path relative to the ddgi checkpoint
    naming it) and its weights' fingerprint."""
    ref = _resolve(ref, base)
    if checkpoint.read_config(ref).get("family") == "multiview":
        from ..multiview.adapter import FrontalGenerator
        G = FrontalGenerator.load(ref)
        return G, G.meta, fingerprint(G.state_dict())
    from ..gan.train import load_generator
    G, meta = load_generator(str(ref))
    return G, meta, fingerprint(G.state_dict())


def _multiview(G) -> bool:
    from ..multiview.adapter import FrontalGenerator
    return isinstance(G, FrontalGenerator)


def load_diffusion_part(ref: str, base: Path | None = None) -> tuple[DiffusionPipeline, str]:
    pipe = DiffusionPipeline.from_pretrained(_resolve(ref, base), device="cpu")
    pipe.model.requires_grad_(False)
    return pipe, fingerprint(pipe.model.state_dict())


def _resolve(ref: str, base: Path | None):
    path = Path(ref)
    if base is not None and not path.is_absolute() and not path.exists() and (base / path).exists():
        return base / path
    return path if path.exists() else ref


def nets_config(diffusion: DiffusionPipeline, G, blocks: Sequence[int], width: int) -> DDGIConfig:
    """The networks' shapes for this diffusion model and generator (one dry pass reads them)."""
    unet = diffusion.model.denoiser.net
    attention = decoder_attention_blocks(unet)
    bad = [b for b in blocks if not 0 <= b < len(attention)]
    if bad:
        raise FaceweaveError(f"decoder block {bad[0]} does not exist: this diffusion model's decoder has "
                             f"{len(attention)} attention blocks (0..{len(attention) - 1}, 0 the deepest)")
    size = diffusion.model.config.size
    x = torch.zeros(1, diffusion.model.config.channels, size, size)
    with torch.no_grad(), UNetTap(unet, blocks) as tap:
        diffusion.model(x, torch.tensor([1.0]))
    return DDGIConfig(num_ws=G.num_ws, w_dim=G.config.w_dim, bottleneck_channels=tap.bottleneck.shape[1],
                      bottleneck_size=tap.bottleneck.shape[-1], width=width, decoder_blocks=tuple(blocks),
                      decoder_channels=tuple(f.shape[1] for f in tap.features))


def _uint8(x: torch.Tensor) -> list[np.ndarray]:
    return list(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


def _fraction(name: str, value, hint: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FaceweaveError(f"{name} must be a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= v <= 1.0:                                # NaN fails too
        raise FaceweaveError(f"{name} must be from 0 to 1, got {value!r}; {hint}")
    return v


class DDGIPipeline(Pipeline):
    """The two DDGI networks with the frozen diffusion model and generator they read and drive."""

    family = FAMILY
    # defaults of a call that does not say; a checkpoint's config.json "sampling" overrides them
    SAMPLING = {"sigma": 20.0, "diversity": 0.0}

    def __init__(self, diffusion: DiffusionPipeline, generator, nets: DDGINets, config: dict,
                 meta: dict | None = None, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.diffusion = diffusion
        self.diffusion.model.to(self.device).eval().requires_grad_(False)
        self.diffusion.device = self.device
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.nets = nets.to(self.device).eval()
        self.config = config
        self.meta = meta if meta is not None else {"config": config}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL,
                        device: str | torch.device | None = None) -> "DDGIPipeline":
        meta, state = checkpoint.load(name_or_path, FAMILY)
        config = meta["config"]
        base = Path(meta["path"])
        try:
            nets_cfg = DDGIConfig(**config["nets"])
            parts = {name: config[name] for name in ("diffusion", "generator")}
        except (KeyError, TypeError, ValueError) as exc:
            raise FaceweaveError(f"{meta['path']}: config.json does not describe a ddgi model ({exc})") from None
        diffusion, dfp = load_diffusion_part(parts["diffusion"]["model"], base)
        G, _, gfp = load_generator_part(parts["generator"]["model"], base)
        for name, fp in (("diffusion", dfp), ("generator", gfp)):
            if parts[name].get("fingerprint") and fp != parts[name]["fingerprint"]:
                raise FaceweaveError(f"the {name} model {parts[name]['model']} is not the one these networks were "
                                     f"trained on (weights {fp}, expected {parts[name]['fingerprint']}); retrain "
                                     "with faceweave train ddgi")
        nets = DDGINets(nets_cfg)
        checkpoint.load_into(nets, state, where=meta["path"])
        return cls(diffusion, G, nets, config, meta=meta, device=device or "cpu")

    def save_pretrained(self, path: str | Path, storage: str | None = None) -> Path:
        """The networks, with the diffusion model and the generator copied into parts/ of the
        folder (so it is whole on its own) and named there with their fingerprints."""
        import tempfile
        path = Path(path)
        config = {**self.config, "nets": dataclasses.asdict(self.nets.config)}
        with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as tmp:
            parts = Path(tmp) / PARTS
            self.diffusion.save_pretrained(parts / "diffusion", storage=storage)
            G = self.generator
            if _multiview(G):
                G.save(parts / "generator", storage=storage)
            else:
                checkpoint.save(parts / "generator", "stylegan2", dataclasses.asdict(G.config),
                                {f"generator.{k}": v.contiguous() for k, v in G.state_dict().items()},
                                storage=storage)
            config["diffusion"] = {"model": f"{PARTS}/diffusion",
                                   "fingerprint": load_diffusion_part(str(parts / "diffusion"))[1]}
            config["generator"] = {"model": f"{PARTS}/generator",
                                   "fingerprint": load_generator_part(str(parts / "generator"))[2]}
            return checkpoint.save(path, FAMILY, config, self.nets.state_dict(), storage=storage, copy_files=[parts],
                                   **{"image_size": self.size, **self._saved_meta()})

    @property
    def size(self) -> int:
        return self.generator.config.size

    @property
    def modalities(self) -> tuple[str, ...]:
        read = set(self.diffusion.model.config.modalities)
        return tuple(f for f in ACCEPTS if MODALITY[f] in read)

    # -- conditions -> W+ -> image ------------------------------------------------------------
    @torch.no_grad()
    def wplus(self, cond: Conditions, seed: int, sigma: float) -> tuple[torch.Tensor, list[str]]:
        """The W+ code (1, num_ws, w_dim) of one image, one tapped diffusion pass at `sigma` on
        the seed's noise through the two networks, and the notes on its conditions."""
        diffusion, unet = self.diffusion, self.diffusion.model.denoiser.net
        gen = torch.Generator().manual_seed(int(seed))
        c, s = diffusion.model.config.channels, diffusion.model.config.size
        x = sigma * torch.randn(1, c, s, s, generator=gen).to(self.device)
        tensors, notes = diffusion.condition_tensors([cond])
        given = frozenset(g for g in cond.given if g in MODALITY)
        with UNetTap(unet, self.nets.config.decoder_blocks) as tap:
            diffusion.evaluator(tensors)(x, sigma, [given])
        return self.nets(tap.bottleneck, tap.features, tap.maps), notes[0]

    @staticmethod
    def _sigma(sigma) -> float:
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise FaceweaveError(f"sigma must be a noise level from 0.1 to 80, got {sigma!r}") from None
        if not 0.1 <= sigma <= 80:
            raise FaceweaveError(f"sigma must be a noise level from 0.1 to 80, got {sigma!r}")
        return sigma

    def _conditions(self, conditions, prompt, attributes, mask, sketch, n: int) -> list[Conditions]:
        return per_seed_conditions(conditions, prompt, attributes, mask, sketch, n, self.modalities,
                                   "this ddgi model")

    @checked_keywords
    @torch.no_grad()
    def __call__(self, prompt: str | None = None, attributes: dict[str, int] | None = None,
                 mask: np.ndarray | None = None, sketch: np.ndarray | None = None, *,
                 seeds: Sequence[int] = (0,), conditions: Conditions | Sequence[Conditions] | None = None,
                 sigma: float | None = None, diversity: float | None = None, progress: bool = False,
                 output_type: str = "np") -> PipelineOutput:
        """One image per seed.

        sigma      the noise level of the one diffusion pass  [default: the checkpoint's]
        diversity  0..1: how far the seed's own latent replaces the finest W+ layers  [default: the checkpoint's]
        """
        sigma = self.sampling["sigma"] if sigma is None else sigma
        diversity = self.sampling["diversity"] if diversity is None else diversity
        sigma = self._sigma(sigma)
        diversity = _fraction("diversity", diversity, "0 keeps the conditions' code, 1 gives the finest layers "
                              "to the seed")
        seeds = check_seeds(seeds)
        conds = self._conditions(conditions, prompt, attributes, mask, sketch, len(seeds))
        if output_type not in ("np", "pt"):
            raise FaceweaveError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        from tqdm import tqdm
        G = self.generator
        mix_from = G.num_ws - 3
        settings = {"backend": FAMILY, "model": self.meta.get("path"), "sigma": sigma, "diversity": diversity}
        images, metadata = [], []
        for cond, seed in tqdm(list(zip(conds, seeds)), disable=not progress, desc="generate", unit="img",
                               leave=False):
            t0 = time.perf_counter()
            w, notes = self.wplus(cond, seed, sigma)
            gen = torch.Generator().manual_seed(int(seed) + 1)        # the generator's own draws
            own = G.get_latent(torch.randn(1, G.config.z_dim, generator=gen).to(self.device))
            noise = G.make_noise(1, gen)
            if diversity > 0:
                layer = (torch.arange(G.num_ws, device=self.device) >= mix_from)[None, :, None]
                w = torch.where(layer, torch.lerp(w, own[:, None].expand_as(w), diversity), w)
            x = G([w], input_is_latent=True, noise=[n.to(self.device) for n in noise])[0].clamp(-1, 1)
            images.extend(_uint8(x) if output_type == "np" else list(x.float().cpu()))
            metadata.append(image_metadata(cond, seed, settings, time.perf_counter() - t0, notes))
        return PipelineOutput(images, metadata)


    # -- editing a photo ------------------------------------------------------------------------
    def _photo_generator(self) -> None:
        if _multiview(self.generator):
            raise FaceweaveError("this ddgi model drives a multiview generator, which edits no photos here; turn a "
                                 "photo with faceweave multiview --image PHOTO --model MULTIVIEW_CHECKPOINT")

    def _instrument(self, name: str):
        """The parser / attribute classifier that read a face's own conditions: the model's
        choice, else the bundled 64 px ones (base.photo_instrument)."""
        if not hasattr(self, "_instruments"):
            self._instruments: dict[str, Any] = {}
        if name not in self._instruments:
            self._instruments[name] = photo_instrument(self.meta, name, self.device)
        return self._instruments[name]

    @checked_keywords
    def invert(self, face: np.ndarray, steps: int = 200, tune_steps: int = 0, optimize_noise: bool = False,
               progress: bool = False) -> Inversion:
        """An aligned face -> the generator's W+ code: projector steps from the average code
        (the generator has no encoder here), then optional pivotal tuning."""
        self._photo_generator()
        return invert_face(self.generator, face, device=self.device, steps=steps, tune_steps=tune_steps,
                           optimize_noise=optimize_noise, progress=progress,
                           meta={"backend": FAMILY, "model": self.meta.get("path")})

    @checked_keywords
    def edit(self, photo: np.ndarray, target: Conditions, *, strength: float = 1.0, steps: int = 200,
             tune_steps: int = 0, seed: int = 0, sigma: float | None = None, align: bool = True,
             blend: str = "residual", feather: float = 0.25, progress: bool = False, name: str = "the photo",
             inversion: Inversion | None = None) -> EditOutput:
        """The photo with its face edited towards `target`: the face is inverted into the
        generator (projector steps, optional pivotal tuning) and moved by the difference of the
        two codes the networks read off the diffusion model for the face's own conditions
        (parsed mask, its boundaries, the classifier's caption) and for those conditions with
        the user's in their place, both at the same `seed` and `sigma`:
        w_inv + strength * (DDGI(target) - DDGI(source)). Pasting back as the gan backend does
        (backends/wplus_edit.py)."""
        check_edit(target, self.modalities, FAMILY)
        self._photo_generator()
        sigma = self._sigma(self.sampling["sigma"] if sigma is None else sigma)
        seed = check_seeds([seed])[0]

        def direction(face: np.ndarray):
            source = read_conditions(face, self._instrument("parser"), self._instrument("classifier"), self.size)
            wanted = target_conditions(source, target, self.size)
            w_source, _ = self.wplus(source.only(self.modalities), seed, sigma)
            w_target, notes = self.wplus(wanted.only(self.modalities), seed, sigma)
            info = {"source_caption": source.prompt, "given": list(target.given), "conditions": target.digest(),
                    "seed": seed, "sigma": sigma}
            return w_target - w_source, info, list(notes)

        return edit_photo(photo, G=self.generator, device=self.device,
                          invert=lambda face: self.invert(face, steps=steps, tune_steps=tune_steps, progress=progress),
                          direction=direction, strength=strength, align=align, blend=blend, feather=feather,
                          name=name, inversion=inversion, meta={"backend": FAMILY, "model": self.meta.get("path")})

    @checked_keywords
    def edit_photo(self, photo: np.ndarray, target: Conditions, *, steps: int = 200, tune_steps: int = 0,
                   strength: float = 1.0, blend: str = "residual", align: bool = True, progress: bool = True,
                   name: str = "the photo") -> PhotoResult:
        """`faceweave edit --backend ddgi`: comparison aligned face | GAN reconstruction | edited |
        conditions (| the crop)."""
        result = self.edit(photo, target, strength=strength, steps=steps, tune_steps=tune_steps, align=align,
                           blend=blend, progress=progress, name=name)
        return edit_result(result, target, self.size, align)


class DDGIBackend(Backend):
    """The registry face of DDGIPipeline: generate(conditions, seeds, size)."""

    name = FAMILY
    accepts = ACCEPTS

    def __init__(self, model: str | None = None, sigma: float | None = None, diversity: float | None = None,
                 progress: bool = False):
        self.pipe = DDGIPipeline.from_pretrained(model or DEFAULT_MODEL)
        self.accepts = self.pipe.modalities
        self.options = {"sigma": sigma, "diversity": diversity, "progress": progress}

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        out = self.pipe(conditions=conditions, seeds=seeds, **self.options).images
        return out if size == self.pipe.size else [resize_image(im, size) for im in out]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.pipe.meta.get("path"), "size": self.pipe.size,
                "sigma": self.pipe.sampling["sigma"] if self.options["sigma"] is None else self.options["sigma"],
                "diversity": (self.pipe.sampling["diversity"] if self.options["diversity"] is None
                              else self.options["diversity"])}
