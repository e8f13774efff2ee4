"""Backend `gan`: MM2Latent (Meng et al., ECCV 2024 workshops) on our own StyleGAN2.

    import faceweave
    pipe = faceweave.load("gan")                              # the bundled gan-64-real
    out = pipe(prompt="a smiling woman", mask=mask, seeds=[0, 1, 2, 3])
    inv = pipe.invert(face)                                   # W+ code + reconstruction
    out = pipe.edit(photo, Conditions(prompt="a smiling man"), strength=1.0)

Generation is one mapper pass and one generator pass per image: the conditions go through
the mask / sketch autoencoders and the text encoder, the mapper turns them into a W+ code,
and StyleGAN2 renders it. There are no sampling steps and no guidance.

What a seed does. The mapper is deterministic: the same conditions give one code. A seed
draws its own noise maps and its own random w, which replaces the mapped code on the
layers from `mix_from` on by `diversity` (0: every seed gives the same face up to noise,
1: those layers belong to the seed). Those are the finest layers, so what the
conditions fix (layout, and the attributes the text names) stays; what they leave open
(fine colour and texture) varies. With no condition at all, a seed is a plain StyleGAN2
sample (optionally truncated). Image i depends only on (conditions[i], seeds[i]).

Attributes are said in words: `text.describe_attributes` turns the ones set to 1 into a
sentence appended to the prompt (the mapper reads only text). Attributes set to 0 cannot be
said that way; a note in the metadata says so.

Editing a photo (`edit`): the face is found and aligned (faceweave.align), inverted (the
encoder, then optional projector steps), and the edit is applied in W+ as a difference of
two mapped codes: delta = M(target conditions) - M(source conditions), where the source
conditions are read off the aligned face (parser mask, its boundaries as sketch, the
classifier's caption) and the target ones are the same with the user's fields replacing
theirs. edited = G(w_inv + strength * delta). What reaches the photo is, by default, the
change the edit made to the GAN's reconstruction, G(edited) - G(w_inv), upsampled and added
to the same face crop taken at the photo's own resolution (`blend="residual"`: the photo
keeps its detail and sharpness where the edit changes nothing, which a small GAN trained on
FaceSynth could not reproduce), or the GAN's 64 px face itself (`blend="generated"`); the
crop is pasted back with a feathered seam.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ... import checkpoint
from ...conditions import Conditions
from ...errors import FaceweaveError
from ...io import resize_sketch, resize_image, resize_mask
from ...parallel import each
from .mm2latent import MM2Latent
from ...seeds import check_seeds
from ..base import Backend, PhotoResult, Pipeline, checked_keywords, per_seed_conditions, photo_instrument
from ..wplus_edit import (Inversion, check_edit, check_fraction as _float, edit_photo, edit_result, invert_face,
                          read_conditions, target_conditions, to_uint8 as _uint8)
from ..diffusion.pipeline import PipelineOutput, image_metadata

FAMILY = "gan"
DEFAULT_MODEL = "gan-64-real"     # real photos; "gan-64" is the FaceSynth benchmark model
ACCEPTS = ("prompt", "attributes", "mask", "sketch")


class GANPipeline(Pipeline):
    """An MM2Latent model (generator + autoencoders + mapper [+ inversion encoder]) and the
    frozen text encoder."""

    family = FAMILY
    # defaults of a call that does not say; a checkpoint's config.json "sampling" overrides them
    SAMPLING = {"diversity": 0.5, "truncation": 1.0}

    def __init__(self, model: MM2Latent, text_encoder=None, meta: dict | None = None,
                 device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.meta = meta or {}
        self._text_encoder = text_encoder
        self._helpers: dict[str, Any] = {}

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> "GANPipeline":
        meta, state = checkpoint.load(name_or_path, FAMILY)
        model = MM2Latent.from_config(meta["config"])
        checkpoint.load_into(model, state, where=meta["path"])
        return cls(model.to(dtype), meta=meta, device=device or "cpu")

    def save_pretrained(self, path: str | Path, storage: str | None = None) -> Path:
        """Every part in one folder (a generator shared with another model is stored here too)."""
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        return checkpoint.save(path, FAMILY, self.meta["config"], state, storage=storage,
                               **{"image_size": self.size, **self._saved_meta()})

    @property
    def size(self) -> int:
        return self.model.size

    @property
    def modalities(self) -> tuple[str, ...]:
        return ACCEPTS

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from ...models.text_encoder import TextEncoder
            self._text_encoder = TextEncoder(device=self.device)
        return self._text_encoder

    def _helper(self, name: str):
        """The parser or classifier that reads photos' conditions (base.photo_instrument)."""
        if name not in self._helpers:
            self._helpers[name] = photo_instrument(self.meta, name, self.device)
        return self._helpers[name]

    # -- conditions -> W+ -----------------------------------------------------------------------
    @staticmethod
    def sentence(cond: Conditions) -> tuple[str | None, list[str]]:
        """The text the mapper reads: the prompt, then the attributes set to 1 in words."""
        from ...text import describe_attributes
        notes, parts = [], [cond.prompt] if cond.prompt else []
        wanted = {k: v for k, v in cond.attributes.items() if v == 1}
        if wanted:
            parts.append(describe_attributes(wanted))
        unsaid = sorted(k for k, v in cond.attributes.items() if v == 0)
        if unsaid:
            notes.append(f"attributes set to 0 ({', '.join(unsaid)}) are not expressed by the gan backend's "
                         "text path; they are left to the other conditions")
        return (" ".join(parts) or None), notes

    def _inputs(self, conditions: Sequence[Conditions]) -> tuple[list[dict], list[list[str]]]:
        """Per image, the mapper's inputs (text vector, mask, sketch, present flags, each with
        a batch axis of one), and the notes on its conditions (masks and sketches of another
        size are resized to the model's)."""
        s, dev = self.size, self.device
        dtype = next(self.model.parameters()).dtype
        texts, notes = [], []
        for cond in conditions:
            text, note = self.sentence(cond)
            texts.append(text)
            notes.append(note)
        pooled = None
        if any(texts):
            pooled = self.text_encoder.encode([t or "" for t in texts]).pooled.to(dev, dtype)
        rows = []
        for i, (cond, text) in enumerate(zip(conditions, texts)):
            mask = sketch = None
            if cond.mask is not None:
                if cond.mask.shape != (s, s):
                    notes[i].append(f"mask resized from {cond.mask.shape[1]}x{cond.mask.shape[0]} to {s}x{s}")
                mask = torch.from_numpy(resize_mask(cond.mask, s).astype(np.int64))[None].to(dev)
            if cond.sketch is not None:
                if cond.sketch.shape != (s, s):
                    notes[i].append(f"sketch resized from {cond.sketch.shape[1]}x{cond.sketch.shape[0]} to {s}x{s}")
                arr = resize_sketch(cond.sketch, s).astype(np.float32) / 255.0
                sketch = torch.from_numpy(arr)[None, None].to(dev, dtype)
            present = torch.tensor([[text is not None, mask is not None, sketch is not None]], device=dev)
            rows.append({"text": None if pooled is None else pooled[i:i + 1], "mask": mask, "sketch": sketch,
                         "present": present})
        return rows, notes

    @torch.no_grad()
    def map(self, conditions: Sequence[Conditions]) -> tuple[torch.Tensor, list[list[str]]]:
        """(N, num_ws, w_dim) mapped codes and per-image notes (masks and sketches of another
        size are resized to the model's). Each image is mapped alone, on one thread
        (faceweave.parallel: a CPU product's rounding depends on its rows and threads, and
        image i must not depend on the rest of the batch); the images share the cores."""
        rows, notes = self._inputs(conditions)
        return torch.cat(each(lambda row: self.model.map(**row), rows)), notes

    def _seed_parts(self, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One seed's own draws, from its own generator: a random w (1, w_dim) and the
        generator's noise maps."""
        G = self.model.generator
        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn(1, G.config.z_dim, generator=gen)
        noise = G.make_noise(1, gen)
        return G.get_latent(z.to(self.device, next(G.parameters()).dtype)), noise

    # -- generation -------------------------------------------------------------------------
    def _conditions(self, conditions, prompt, attributes, mask, sketch, n: int) -> list[Conditions]:
        return per_seed_conditions(conditions, prompt, attributes, mask, sketch, n, ACCEPTS, "the gan backend")

    @checked_keywords
    @torch.no_grad()
    def __call__(self, prompt: str | None = None, attributes: dict[str, int] | None = None,
                 mask: np.ndarray | None = None, sketch: np.ndarray | None = None, *,
                 seeds: Sequence[int] = (0,), conditions: Conditions | Sequence[Conditions] | None = None,
                 diversity: float | None = None, mix_from: int | None = None, truncation: float | None = None,
                 batch_size: int = 64, progress: bool = False, output_type: str = "np") -> PipelineOutput:
        """One image per seed (see the module docstring for what a seed changes).

        diversity   0..1: how far each seed's own w replaces the mapped code on layers >= mix_from
        mix_from    first W+ layer a seed may change  [default: the finest resolution's layers]
        truncation  0..1: psi for unconditional samples (1: none)
        diversity and truncation of None are the checkpoint's (`self.sampling`: 0.5 and 1).
        """
        diversity = self.sampling["diversity"] if diversity is None else diversity
        truncation = self.sampling["truncation"] if truncation is None else truncation
        seeds = check_seeds(seeds)
        conds = self._conditions(conditions, prompt, attributes, mask, sketch, len(seeds))
        diversity = _float("diversity", diversity, 0.0, 1.0, "0 keeps the mapped code, 1 gives its finest "
                           "layers to the seed")
        truncation = _float("truncation", truncation, 0.0, 1.0, "1 is no truncation")
        G = self.model.generator
        n_ws = G.num_ws
        mix_from = n_ws - 3 if mix_from is None else int(mix_from)
        if not 0 <= mix_from <= n_ws:
            raise FaceweaveError(f"mix_from must be a W+ layer from 0 to {n_ws}, got {mix_from}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FaceweaveError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output_type not in ("np", "pt"):
            raise FaceweaveError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        from tqdm import tqdm
        settings = {"backend": FAMILY, "model": self.meta.get("path"), "diversity": diversity,
                    "mix_from": mix_from, "truncation": truncation}
        images, metadata = [], []
        bar = tqdm(total=len(seeds), disable=not progress, desc="generate", unit="img", leave=False)
        layer = (torch.arange(n_ws, device=self.device) >= mix_from)[None, :, None]

        def render(job: tuple[dict | None, int]) -> torch.Tensor:
            """One image alone (faceweave.parallel.each runs several side by side)."""
            row, seed = job
            w_seed, noise = self._seed_parts(seed)
            free = torch.lerp(G.w_avg[None], w_seed, truncation)[:, None].expand(-1, n_ws, -1)
            if row is None:                        # no condition: a plain (truncated) sample
                wplus = free
            else:
                mapped = self.model.map(**row)
                wplus = torch.where(layer, torch.lerp(mapped, free, diversity), mapped)
            return G([wplus], input_is_latent=True, noise=noise)[0].clamp(-1, 1)

        for start in range(0, len(seeds), batch_size):
            chunk, chunk_seeds = conds[start:start + batch_size], seeds[start:start + batch_size]
            t0 = time.perf_counter()
            rows, notes = self._inputs(chunk)
            jobs = [(row if c.given else None, seed) for row, c, seed in zip(rows, chunk, chunk_seeds)]
            x = torch.cat(each(render, jobs))
            per_image = (time.perf_counter() - t0) / len(chunk)
            images.extend(_uint8(x) if output_type == "np" else list(x.float().cpu()))
            metadata += [image_metadata(c, s, settings, per_image, note)
                         for c, s, note in zip(chunk, chunk_seeds, notes)]
            bar.update(len(chunk))
        bar.close()
        return PipelineOutput(images, metadata)

    # -- inversion and editing ----------------------------------------------------------------
    @checked_keywords
    def invert(self, face: np.ndarray, steps: int = 100, optimize_noise: bool = False,
               progress: bool = False, tune_steps: int = 0) -> Inversion:
        """An (aligned) face -> W+ code: the encoder's guess, then `steps` projector steps
        (pixel + feature loss; 0: the encoder alone), then `tune_steps` of pivotal tuning (the
        code stays, a copy of the generator learns the face: `Inversion.generator`; 0: off)."""
        return invert_face(self.model.generator, face, device=self.device, encoder=self.model.encoder,
                           steps=steps, tune_steps=tune_steps, optimize_noise=optimize_noise,
                           progress=progress, meta={"backend": FAMILY, "model": self.meta.get("path")})

    def read_conditions(self, face: np.ndarray) -> Conditions:
        """What an aligned face shows, in the mapper's terms: parsed mask, its boundaries as a
        sketch, the classifier's caption."""
        return read_conditions(face, self._helper("parser"), self._helper("classifier"), self.size)

    def _target(self, source: Conditions, target: Conditions) -> Conditions:
        return target_conditions(source, target, self.size)

    @checked_keywords
    def edit(self, photo: np.ndarray, target: Conditions, *, strength: float = 1.0, steps: int = 100,
             tune_steps: int = 0, align: bool = True, blend: str = "residual", feather: float = 0.25,
             progress: bool = False, name: str = "the photo", inversion: Inversion | None = None) -> PipelineOutput:
        """The photo with its face edited towards `target` (see the module docstring).

        strength  0..3: how far along the mapped difference (1: the mapper's own distance)
        steps     projector steps of the inversion (0: encoder only)
        tune_steps  pivotal tuning steps after the projector (0: off): the edit is drawn by a
                  generator tuned to this face
        inversion an earlier `edit(...).inversion` of the same photo: several edits of one photo
                  share one inversion (steps and tune_steps are then not used)
        align     find, align and paste back the face (False: the photo is already an aligned face)
        blend     "residual" (photo + the GAN's change) or "generated" (the GAN's face)
        """
        check_edit(target, ACCEPTS, FAMILY)

        def direction(face: np.ndarray):
            source = self.read_conditions(face)
            wanted = self._target(source, target)
            with torch.no_grad():
                codes, map_notes = self.map([source, wanted])
            info = {"source_caption": source.prompt, "target_text": self.sentence(wanted)[0],
                    "given": list(target.given), "conditions": target.digest()}
            return codes[1:2] - codes[0:1], info, [n for group in map_notes for n in group]

        return edit_photo(photo, G=self.model.generator, device=self.device,
                          invert=lambda face: self.invert(face, steps=steps, progress=progress, tune_steps=tune_steps),
                          direction=direction, strength=strength, align=align, blend=blend, feather=feather,
                          name=name, inversion=inversion, meta={"backend": FAMILY, "model": self.meta.get("path")})

    @checked_keywords
    def edit_photo(self, photo: np.ndarray, target: Conditions, *, steps: int = 100, strength: float = 1.0,
                   tune_steps: int = 0, blend: str = "residual", align: bool = True, progress: bool = True,
                   name: str = "the photo") -> PhotoResult:
        """`faceweave edit`: align, invert, move along the mapped difference, paste back;
        comparison: aligned face | GAN reconstruction | edited face | conditions (| the crop)."""
        result = self.edit(photo, target, strength=strength, steps=steps, tune_steps=tune_steps, align=align,
                           blend=blend, progress=progress, name=name)
        return edit_result(result, target, self.size, align)

    @checked_keywords
    def invert_photo(self, photo: np.ndarray, *, steps: int = 100, tune_steps: int = 0, align: bool = True,
                     progress: bool = True, name: str = "the photo") -> PhotoResult:
        """`faceweave invert`: find and align the face (unless `align` is False), encode and
        refine it into a W+ code; latent.safetensors holds "wplus" (1, num_ws, w_dim) and the
        noise maps "noise.0", ...; with pivotal tuning also the tuned generator's weights
        ("generator.<name>"), without which the code alone draws the untuned reconstruction."""
        from ...eval.editing import identity_scores

        notes = []
        face = photo
        if align:
            from ...align import align_face
            aligned = align_face(photo, size=self.size, name=str(name))
            face = aligned.image
            if aligned.warning:
                notes.append(aligned.warning)
        inv = self.invert(face, steps=steps, progress=progress, tune_steps=tune_steps)
        tensors = {"wplus": inv.wplus.detach().float().contiguous().cpu(),
                   **{f"noise.{i}": n.detach().float().contiguous().cpu() for i, n in enumerate(inv.noise)}}
        if inv.generator is not None:
            tensors.update({f"generator.{k}": v.detach().float().contiguous().cpu()
                            for k, v in inv.generator.state_dict().items()})
        aligned_face = resize_image(face, self.size)
        identity = identity_scores(aligned_face[None], inv.reconstruction[None], inv.reconstruction[None])
        meta = {**inv.metadata, "reconstruction_psnr": inv.metadata["psnr"],
                "reconstruction_identity_distance": identity["recon_identity_dist"], "aligned": align,
                "notes": notes}
        return PhotoResult(inv.reconstruction, [aligned_face, inv.reconstruction], meta,
                           f"PSNR {inv.metadata['psnr']:.2f} dB", files={"aligned.png": aligned_face},
                           tensors=tensors,
                           tensor_metadata={"model": str(inv.metadata["model"]), "method": inv.metadata["method"]})


class GANBackend(Backend):
    """The registry face of GANPipeline: generate(conditions, seeds, size)."""

    name = FAMILY
    accepts = ACCEPTS

    def __init__(self, model: str | None = None, diversity: float | None = None, truncation: float | None = None,
                 batch_size: int = 64, progress: bool = False):
        self.pipe = GANPipeline.from_pretrained(model or DEFAULT_MODEL)
        # None: the checkpoint's own sampling defaults (config.json "sampling"), as the pipeline reads them
        self.options = {"diversity": self.pipe.sampling["diversity"] if diversity is None else diversity,
                        "truncation": self.pipe.sampling["truncation"] if truncation is None else truncation,
                        "batch_size": batch_size, "progress": progress}

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        out = self.pipe(conditions=conditions, seeds=seeds, **self.options).images
        return out if size == self.pipe.size else [resize_image(im, size) for im in out]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.pipe.meta.get("path"), "size": self.pipe.size,
                **{k: v for k, v in self.options.items() if k != "progress"}}
