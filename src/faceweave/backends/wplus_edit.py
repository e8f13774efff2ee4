"""Inverting and editing a photo in a StyleGAN2's W+ space: what the backends that drive a
StyleGAN2 (gan, ddgi) share.

    inv = invert_face(G, face, device=..., encoder=E, steps=100, tune_steps=0)
    out = edit_photo(photo, G=G, size=64, device=..., invert=lambda face: inv_fn(face),
                     direction=lambda face: (delta, info), strength=1.0)

An edit: the face is found and aligned (faceweave.align), inverted (`invert`: an encoder's
guess or G's average code, projector steps, optional pivotal tuning), and moved in W+ by the
backend's `direction` for that face (gan: the difference of two mapped codes; ddgi: of two
codes read off the diffusion model). edited = G'(w_inv + strength * delta), G' the tuned
generator when pivotal tuning ran. What reaches the photo is the change the edit made to the
reconstruction, G'(edited) - G'(w_inv), upsampled and added to the same face crop at the
photo's own resolution (`blend="residual"`), or the GAN's face itself (`blend="generated"`);
the crop is pasted back with a feathered seam, and every pixel outside it is unchanged.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..conditions import Conditions
from ..errors import FaceweaveError
from ..io import resize_image, resize_mask
from .base import PhotoResult
from .diffusion.pipeline import PipelineOutput

BLENDS = ("residual", "generated")


def check_fraction(name: str, value, low: float, high: float, hint: str) -> float:
    """A number in [low, high] or a one-line error (NaN fails too)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FaceweaveError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}") from None
    if not low <= v <= high:
        raise FaceweaveError(f"{name} must be from {low:g} to {high:g}, got {value!r}; {hint}")
    return v


def to_tensor(images, device) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    return list(((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


@dataclasses.dataclass
class Inversion:
    wplus: torch.Tensor                 # (1, num_ws, w_dim)
    noise: list[torch.Tensor]           # the per-layer noise maps that go with it
    reconstruction: np.ndarray          # G(wplus, noise), S x S x 3 uint8
    metadata: dict[str, Any]
    generator: torch.nn.Module | None = None   # the generator tuned to this face (tune_steps > 0)
    face: np.ndarray | None = None             # the aligned face that was inverted (S x S x 3)


@dataclasses.dataclass
class EditOutput(PipelineOutput):
    aligned: np.ndarray | None = None          # the aligned face that was inverted (S x S x 3)
    reconstruction: np.ndarray | None = None   # the GAN's reconstruction of it
    edited_face: np.ndarray | None = None      # the GAN's edited face (before blending and paste-back)
    kept: np.ndarray | None = None             # H x W bool: photo pixels returned bitwise unchanged
    inversion: Inversion | None = None         # the inversion used (reusable: edit(..., inversion=))


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5000:
        raise FaceweaveError(f"{name} must be a whole number from 0 to 5000, got {value!r}")
    return value


def invert_face(G: torch.nn.Module, face: np.ndarray, *, device, encoder: torch.nn.Module | None = None,
                steps: int = 100, tune_steps: int = 0, optimize_noise: bool = False, progress: bool = False,
                meta: dict[str, Any] | None = None) -> Inversion:
    """An (aligned) face -> W+ code: the encoder's guess (None: G's average code), then `steps`
    projector steps (pixel + feature loss), then `tune_steps` of pivotal tuning (the code
    stays, a copy of G learns the face: `Inversion.generator`; 0: off)."""
    from ..projector import pivotal_tune, project, reconstruction_metrics
    _whole("inversion steps", steps)
    _whole("tuning steps", tune_steps)
    s = G.config.size
    small = face if face.shape[:2] == (s, s) else resize_image(face, s)
    target = to_tensor([small], device)
    t0 = time.perf_counter()
    with torch.no_grad():
        if encoder is not None:
            start, how = encoder(target), "encoder"
        else:
            start, how = G.w_avg[None, None].expand(1, G.num_ws, -1).clone(), "w_avg"
    noise = G.noise_buffers()
    if steps:
        result = project(G, target, init_wplus=start, steps=steps, optimize_noise=optimize_noise,
                         generator=torch.Generator().manual_seed(0), progress=progress)
        wplus, noise = result.wplus.detach(), [n.detach() for n in result.noise]
        how += f" + {steps} projector steps"
    else:
        wplus = start
    tuned = None
    if tune_steps:
        tuned = pivotal_tune(G, target, wplus, noise, steps=tune_steps, progress=progress)
        G = tuned
        how += f" + {tune_steps} pivotal tuning steps"
    with torch.no_grad():
        recon = G([wplus], input_is_latent=True, noise=noise, randomize_noise=False)[0]
        scores = reconstruction_metrics(G, target, wplus, noise=noise)
    info = {**(meta or {}), "method": how, "psnr": round(scores["psnr"], 3),
            "feature_distance": round(scores["feature_distance"], 5), "seconds": round(time.perf_counter() - t0, 3)}
    return Inversion(wplus, noise, to_uint8(recon)[0], info, generator=tuned, face=face)


def read_conditions(face: np.ndarray, parser, classifier, size: int) -> Conditions:
    """What an aligned face shows: the parser's mask at `size`, its part boundaries as a
    sketch, and the classifier's confident attributes as a caption."""
    from ..io import sketch_from_mask
    from ..text import describe_attributes
    small = face if face.shape[:2] == (64, 64) else resize_image(face, 64)
    mask = parser.predict(face if face.shape[:2] == (size, size) else resize_image(face, size))
    return Conditions(prompt=describe_attributes(classifier.predict(small)), mask=mask, sketch=sketch_from_mask(mask))


def target_conditions(source: Conditions, target: Conditions, size: int) -> Conditions:
    """The face's own conditions with the user's fields in their place. A new mask brings its
    own boundaries as the sketch (unless a sketch is given too)."""
    from ..io import sketch_from_mask
    said = bool(target.prompt or target.attributes)
    mask = source.mask if target.mask is None else resize_mask(target.mask, size)
    if target.sketch is not None:
        sketch = target.sketch
    else:
        sketch = source.sketch if target.mask is None else sketch_from_mask(mask)
    return Conditions(prompt=target.prompt if said else source.prompt, attributes=target.attributes,
                      mask=mask, sketch=sketch)


def outside_quad(quad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """H x W bool: the pixels outside the bounding box of a pasted crop's quad (with the margin
    align.paste_back works in), which a paste-back leaves bitwise unchanged."""
    h, w = shape
    x0, y0 = np.floor(np.asarray(quad).min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(np.asarray(quad).max(axis=0)).astype(int) + 2
    kept = np.ones((h, w), bool)
    kept[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = False
    return kept


def check_edit(target: Conditions, accepts: tuple[str, ...], backend: str) -> None:
    if not isinstance(target, Conditions) or not target.given:
        raise FaceweaveError("nothing to edit: give a prompt, attributes, a mask or a sketch")
    unread = [m for m in target.given if m not in accepts]
    if unread:
        raise FaceweaveError(f"the {backend} backend cannot edit with {', '.join(unread)}; it reads {', '.join(accepts)}")


def edit_photo(photo: np.ndarray, *, G: torch.nn.Module, device,
               invert: Callable[[np.ndarray], Inversion],
               direction: Callable[[np.ndarray], tuple[torch.Tensor, dict[str, Any], list[str]]],
               strength: float = 1.0, align: bool = True, blend: str = "residual", feather: float = 0.25,
               name: str = "the photo", inversion: Inversion | None = None,
               meta: dict[str, Any] | None = None) -> EditOutput:
    """The photo with its face moved along `direction(face)` -> (delta (1, num_ws, w_dim),
    metadata, notes) in W+ (see the module docstring). `invert(face)` is called unless an
    earlier `inversion` of the same face is given."""
    from ..align import align_face, paste_back
    strength = check_fraction("edit strength", strength, 0.0, 3.0, "1 applies the edit as mapped, 0 changes nothing")
    if blend not in BLENDS:
        raise FaceweaveError(f"unknown blend {blend!r}; choose {' or '.join(BLENDS)}")
    t0 = time.perf_counter()
    notes: list[str] = []
    s = G.config.size
    if align:
        aligned = align_face(photo, size=s, name=name)
        face = aligned.image
        if aligned.warning:
            notes.append(aligned.warning)
        # the same crop at the photo's own resolution: the residual is added there, so the
        # photo keeps its sharpness instead of becoming an upsampled 64 px face
        side = float(np.linalg.norm(np.asarray(aligned.quad, np.float64)[1] - np.asarray(aligned.quad)[0]))
        big = align_face(photo, size=int(min(1024, max(s, round(side)))), name=name) if side > s else aligned
    else:
        face = photo if photo.shape[:2] == (s, s) else resize_image(photo, s)
        big = None
    if inversion is None:
        inv = invert(face)
    elif not isinstance(inversion, Inversion) or inversion.face is None or inversion.face.shape != face.shape \
            or not np.array_equal(inversion.face, face):
        raise FaceweaveError("the inversion given is not of this photo's face; pass the `inversion` of an "
                             "earlier edit of the same photo, or none")
    else:
        inv = inversion
    delta, info, more_notes = direction(face)
    G = inv.generator if inv.generator is not None else G
    with torch.no_grad():
        edited = G([inv.wplus + strength * delta], input_is_latent=True, noise=inv.noise,
                   randomize_noise=False)[0].clamp(-1, 1)
        recon = G([inv.wplus], input_is_latent=True, noise=inv.noise, randomize_noise=False)[0].clamp(-1, 1)
        if blend == "residual":
            base = big.image if align else photo
            change = edited - recon
            if tuple(change.shape[-2:]) != base.shape[:2]:
                change = F.interpolate(change, size=base.shape[:2], mode="bicubic", align_corners=False)
            out = (to_tensor([base], device) + change).clamp(-1, 1)
        else:
            out = edited
    notes += more_notes
    crop = to_uint8(out)[0]
    kept = None
    if align:
        pasted = big if blend == "residual" else aligned
        result = paste_back(photo, pasted, crop, feather=feather)
        kept = outside_quad(pasted.quad, photo.shape[:2])
    else:
        result = crop if crop.shape == photo.shape else resize_image(crop, photo.shape[:2])
    record = {**(meta or {}), "strength": strength, "blend": blend, "inversion": inv.metadata, **info,
              "delta_norm": round(float(delta.norm()), 4), "seconds": round(time.perf_counter() - t0, 3),
              "notes": notes}
    return EditOutput([result], [record], aligned=face, reconstruction=inv.reconstruction,
                      edited_face=to_uint8(edited)[0], kept=kept, inversion=inv)


def edit_result(result: EditOutput, target: Conditions, size: int, align: bool) -> PhotoResult:
    """What `faceweave edit` writes of a W+ edit: the photo, and the comparison aligned face |
    GAN reconstruction | edited face | conditions (| the crop, for an unaligned face)."""
    from ..data.sheet import condition_panels
    panels = [result.aligned, result.reconstruction, result.edited_face, *condition_panels(target, size)]
    if not align:
        panels.append(resize_image(result.images[0], size))
    meta = result.metadata[0]
    summary = (f"comparison: aligned face | GAN reconstruction | edited | conditions; inversion PSNR "
               f"{meta['inversion']['psnr']:.2f} dB, {meta['seconds']} s")
    return PhotoResult(result.images[0], panels, meta, summary, kept=result.kept)
