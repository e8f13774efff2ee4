"""Backend `collab`: Collaborative Diffusion (Huang et al., CVPR 2023).

Uni-modal diffusion models, trained separately (`faceweave train diffusion --modalities
text`, `... mask`), are frozen collaborators; a small dynamic diffuser (diffuser.py)
predicts per step and per pixel how much each one decides, and their guided predictions
are mixed with those weights.

    import faceweave
    pipe = faceweave.load("collab")                  # a collab checkpoint (it names its collaborators)
    out = pipe(prompt="a smiling woman", mask=mask, seeds=[0, 1], return_influence=True)
    out.images[0], out.influence[0]                  # (k, steps, h, w) mixing weights per seed
    influence_picture(out.influence[0], pipe.names)  # rows = collaborators, columns = steps

`mixing="average"` replaces the learned maps by equal weights for the collaborators whose
condition is given: the paper's naive-average ablation, on exactly the same models.
A collaborator whose condition is absent from a sample is left out of that sample's
softmax; one whose condition is absent from the whole batch is not evaluated at all.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ... import checkpoint
from ...checkpoint import fingerprint
from ...conditions import Conditions
from ...diffusion import guidance as guidance_lib
from ...diffusion.samplers import SCHEDULES, get_sampler
from ...errors import FaceweaveError
from ...io import resize_image
from .diffuser import DiffuserConfig, DynamicDiffuser, active_collaborators, mix
from ...seeds import check_seed, check_seeds
from ..base import Backend, PhotoResult, Pipeline, check_callback, checked_keywords, photo_instrument
from ..diffusion.pipeline import (MODALITY, DiffusionPipeline, PipelineOutput, _to_uint8, check_eta, image_metadata,
                        sampler_noise)

FAMILY = "collab"
DEFAULT_MODEL = "collab-64-real"
MIXINGS = ("learned", "average")
FIELD = {m: f for f, m in MODALITY.items()}          # conditioner modality -> Conditions field


def split_view(ref: str) -> tuple[str, tuple[str, ...] | None]:
    """"CHECKPOINT@text+attributes" -> ("CHECKPOINT", ("text", "attributes")); no "@" -> (ref, None)."""
    ref = str(ref)
    if "@" not in ref:
        return ref, None
    base, _, view = ref.rpartition("@")
    reads = tuple(m.strip() for m in view.split("+") if m.strip())
    unknown = sorted(set(reads) - set(MODALITY.values()))
    if not base or not reads or unknown:
        raise FaceweaveError(f"bad collaborator view {ref!r}; write CHECKPOINT@MODALITY+MODALITY with modalities "
                             f"from {', '.join(MODALITY.values())}, e.g. diffusion-64-real@text+attributes")
    return base, reads


def reads(pipe: DiffusionPipeline) -> tuple[str, ...]:
    """The modalities a collaborator reads: its model's, or the subset its view keeps."""
    return tuple(getattr(pipe, "collab_reads", None) or pipe.model.config.modalities)


def _set_view(pipe: DiffusionPipeline, view, ref: str) -> None:
    """Let `pipe` read only `view` (a non-empty subset of its model's modalities; all of them
    when it names them all). One-line error otherwise."""
    own = tuple(pipe.model.config.modalities)
    extra = [m for m in view if m not in own]
    if not view or extra:
        raise FaceweaveError(f"collaborator {ref} reads {', '.join(own)}, so a view of it cannot read "
                             f"{', '.join(extra) or 'nothing'}; name a subset of its modalities")
    pipe.collab_reads = None if set(view) == set(own) else tuple(m for m in own if m in view)


def load_collaborator(ref: str, base: Path | None = None,
                      view: tuple[str, ...] | list[str] | None = None) -> tuple[DiffusionPipeline, str]:
    """A frozen diffusion model (folder, bundled name, or a path relative to the collab
    checkpoint that names it) and the fingerprint of its weights.

    A multi-modal model can serve as a uni-modal collaborator through a view: `view` (or a
    "@text+attributes" suffix on `ref`) names the modalities it reads here; the others are
    withheld from it, as they were when its training dropped them. The collaborator's
    denoiser then predicts as the model does given that modality alone."""
    ref, suffix = split_view(ref)
    view = tuple(view) if view is not None else suffix
    path = Path(ref)
    if base is not None and not path.is_absolute() and not path.exists() and (base / path).exists():
        path = base / path
    pipe = DiffusionPipeline.from_pretrained(path if path.exists() else ref, device="cpu")
    pipe.model.requires_grad_(False)
    if view is not None:
        _set_view(pipe, view, ref)
    # the loaded weights hash as the file's: fingerprints are taken in fp16
    return pipe, fingerprint(pipe.model.state_dict())


def _accepted(spec: dict) -> tuple[str, ...]:
    """The fingerprints a collaborator may have: its weights', and those of their int8 storage."""
    return tuple(spec[k] for k in ("fingerprint", "fingerprint_int8") if spec.get(k))


def add_int8_fingerprints(path: str | Path) -> dict:
    """Let a collab checkpoint accept int8-stored copies of its collaborators.

    For each collaborator still holding the recorded weights, the fingerprint its int8 storage
    will have (checkpoint.int8_round_trip) is recorded as "fingerprint_int8"; run it before
    converting the collaborators (scripts/requantize.py does). A collaborator already stored
    as int8 must match a recorded "fingerprint_int8". config.json is rewritten atomically.
    """
    meta = checkpoint.read_config(path, FAMILY)
    for c in meta["config"]["collaborators"]:
        pipe, fp = load_collaborator(c["model"], base=Path(meta["path"]))
        if fp == c.get("fingerprint_int8"):
            continue
        if c.get("fingerprint") and fp != c["fingerprint"]:
            raise FaceweaveError(f"collaborator {c['name']!r} ({c['model']}) is not the model {meta['path']} was "
                                 f"trained with (weights {fp}, expected {c['fingerprint']}); convert the collab "
                                 "checkpoint before its collaborators")
        c["fingerprint_int8"] = fingerprint(checkpoint.int8_round_trip(pipe.model.state_dict()))
    return checkpoint.update_config(meta["path"], config=meta["config"])


def relink(path: str | Path, models: dict[str, str]) -> dict:
    """Point a collab checkpoint's collaborators at other copies of the same weights (e.g. the
    bundled fp16 exports of the run folders it was trained with): {name: folder or bundled
    name}. Each new copy must have the recorded fingerprint (or its int8 storage's,
    add_int8_fingerprints); config.json is rewritten atomically."""
    meta = checkpoint.read_config(path, FAMILY)
    specs = meta["config"]["collaborators"]
    unknown = sorted(set(models) - {c["name"] for c in specs})
    if unknown:
        raise FaceweaveError(f"no collaborator named {', '.join(unknown)}; this checkpoint has "
                             f"{', '.join(c['name'] for c in specs)}")
    for c in specs:
        if c["name"] in models:
            _, fp = load_collaborator(models[c["name"]])
            if c.get("fingerprint") and fp not in _accepted(c):
                raise FaceweaveError(f"{models[c['name']]} is not the {c['name']!r} collaborator this checkpoint "
                                     f"was trained with (weights {fp}, expected {c['fingerprint']})")
            c["model"] = str(models[c["name"]])
    return checkpoint.update_config(path, config=meta["config"])


def check_compatible(pipes: dict[str, DiffusionPipeline]) -> None:
    """Collaborators mix predictions of the same x_t: same side, channels, space and sigma_data."""
    first_name, first = next(iter(pipes.items()))
    key = _space_key(first)
    for name, pipe in pipes.items():
        if _space_key(pipe) != key:
            raise FaceweaveError(f"collaborators {first_name!r} and {name!r} work on different images "
                                 f"({_describe(first)} vs {_describe(pipe)}); collaborators must share "
                                 "resolution, channels and autoencoder")


def _space_key(pipe: DiffusionPipeline) -> tuple:
    cfg = pipe.model.config
    return cfg.size, cfg.channels, cfg.sigma_data, repr(cfg.vae)


def _describe(pipe: DiffusionPipeline) -> str:
    cfg = pipe.model.config
    return f"{pipe.size} px, {cfg.channels} channels at {cfg.size} px" + (", latent" if cfg.vae else "")


@dataclasses.dataclass
class CollabOutput(PipelineOutput):
    influence: list[np.ndarray] | None = None     # per image: (k, steps, h, w) float16 weights
    kept: np.ndarray | None = None                # an edit: H x W bool, photo pixels returned unchanged


class CollabPipeline(Pipeline):
    """Frozen collaborators + a dynamic diffuser (or none: the naive average)."""

    family = FAMILY
    # defaults of a call that does not say; a checkpoint's config.json "sampling" overrides them
    SAMPLING = {"num_inference_steps": 20, "guidance_scale": 2.0, "sampler": "dpmpp_2m", "mixing": "learned"}

    def __init__(self, collaborators: dict[str, DiffusionPipeline], diffuser: DynamicDiffuser | None = None,
                 meta: dict | None = None, device: str | torch.device = "cpu"):
        if len(collaborators) < 2:
            raise FaceweaveError(f"Collaborative Diffusion needs two or more collaborators, got {len(collaborators)}")
        check_compatible(collaborators)
        if diffuser is not None and list(collaborators) != diffuser.config.names:
            raise FaceweaveError(f"the influence network was trained for collaborators {diffuser.config.names}, "
                                 f"got {list(collaborators)}; train one for these with faceweave train collab")
        self.device = torch.device(device)
        self.collaborators = collaborators
        shared = None
        for pipe in collaborators.values():
            pipe.model.to(self.device).eval()
            pipe.device = self.device
            shared = shared or pipe._text_encoder
        for pipe in collaborators.values():           # one text encoder for all
            pipe._text_encoder = shared
        self._first = next(iter(collaborators.values()))
        self.diffuser = None if diffuser is None else diffuser.to(self.device).eval()
        self.meta = meta or {}
        self.size = self._first.size
        self.names = list(collaborators)
        self.config = diffuser.config if diffuser is not None else DiffuserConfig(
            collaborators=[{"name": n, "modalities": list(reads(p)), "model": str(p.meta.get("path"))}
                           for n, p in collaborators.items()],
            channels=self._first.model.config.channels, size=self._first.model.config.size)

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL,
                        device: str | torch.device | None = None) -> "CollabPipeline":
        meta, state = checkpoint.load(name_or_path, FAMILY)
        try:
            config = DiffuserConfig(**meta["config"])
        except (TypeError, ValueError) as exc:
            raise FaceweaveError(f"{meta['path']}: config.json does not describe a dynamic diffuser ({exc})") from None
        pipes, loaded = {}, {}
        for c in config.collaborators:
            if c["model"] in loaded:                  # views of one model share its weights
                pipe, fp = copy.copy(loaded[c["model"]][0]), loaded[c["model"]][1]
            else:
                pipe, fp = loaded[c["model"]] = load_collaborator(c["model"], base=Path(meta["path"]))
            if c.get("fingerprint") and fp not in _accepted(c):
                raise FaceweaveError(f"collaborator {c['name']!r} ({c['model']}) is not the model this influence "
                                     f"network was trained with (weights {fp}, expected {c['fingerprint']}); "
                                     "retrain it with faceweave train collab --collaborators ...")
            _set_view(pipe, c["modalities"], f"{c['name']!r} ({c['model']})")
            pipes[c["name"]] = pipe
        diffuser = DynamicDiffuser(config)
        checkpoint.load_into(diffuser, state, where=meta["path"])
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(pipes, diffuser, meta=meta, device=device)

    def save_pretrained(self, path: str | Path, storage: str | None = None) -> Path:
        """The influence network and its collaborators, each saved in collaborators/NAME/ of
        the folder (so the folder is whole on its own), with their fingerprints."""
        if self.diffuser is None:
            raise FaceweaveError("this pipeline has no influence network (built from collaborators only); "
                                 "train one with faceweave train collab, then save that")
        import tempfile
        path = Path(path)
        config = dataclasses.asdict(self.config)
        with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None) as tmp:
            copies, saved = [], {}
            for spec in config["collaborators"]:
                pipe = self.collaborators[spec["name"]]
                if id(pipe.model) in saved:            # views of one model: one copy
                    spec["model"], spec["fingerprint"] = saved[id(pipe.model)]
                    spec.pop("fingerprint_int8", None)
                    continue
                where = Path(tmp) / "collaborators" / spec["name"]
                pipe.save_pretrained(where, storage=storage)
                _, spec["fingerprint"] = load_collaborator(str(where))
                spec.pop("fingerprint_int8", None)
                spec["model"] = f"collaborators/{spec['name']}"
                saved[id(pipe.model)] = (spec["model"], spec["fingerprint"])
                copies.append(where.parent)
            return checkpoint.save(path, FAMILY, config, self.diffuser.state_dict(), storage=storage,
                                   copy_files=copies[:1], **{"image_size": self.size, **self._saved_meta()})

    @classmethod
    def from_collaborators(cls, models: dict[str, str], device: str | torch.device = "cpu") -> "CollabPipeline":
        """The naive average of uni-modal checkpoints ({name: folder or bundled name}), no diffuser."""
        return cls({name: load_collaborator(ref)[0] for name, ref in models.items()}, None, device=device)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The Conditions fields some collaborator reads."""
        read = {m for p in self.collaborators.values() for m in reads(p)}
        return tuple(f for f, m in MODALITY.items() if m in read)

    # -- sampling -----------------------------------------------------------------------------
    def _scales(self, guidance_scale, given: set[str]) -> dict[str, float]:
        """One guidance scale per collaborator: a float for all, or {collaborator or modality: scale}."""
        if not isinstance(guidance_scale, dict):
            guidance_lib.check_guidance(guidance_scale, given)
            return {n: guidance_scale for n in self.names}
        out = {n: 1.0 for n in self.names}            # unnamed: conditioned, not guided
        for key, value in guidance_scale.items():
            k = {"prompt": "text"}.get(str(key).strip().lower(), str(key).strip().lower())
            hits = [n for n, p in self.collaborators.items() if k == n or k in reads(p)]
            if not hits:
                raise FaceweaveError(f"guidance scale for {key!r}: no collaborator of that name or modality "
                                     f"(collaborators: {', '.join(self.names)})")
            guidance_lib.check_guidance(value, given)
            for n in hits:
                out[n] = value
        return out

    def check_guidance_scale(self, scale):
        self._scales(scale, set(self.modalities))
        return scale

    @checked_keywords
    def __call__(self, prompt: str | None = None, attributes: dict[str, int] | None = None,
                 mask: np.ndarray | None = None, sketch: np.ndarray | None = None, *,
                 seeds: Sequence[int] = (0,), conditions: Conditions | Sequence[Conditions] | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | dict[str, float] | None = None,
                 sampler: str | None = None, schedule: str = "karras", mixing: str | None = None,
                 batch_size: int = 16, callback: Callable | None = None, progress: bool = True,
                 return_influence: bool = False, output_type: str = "np", eta: float = 0.0) -> CollabOutput:
        """Generate one image per seed (same arguments as DiffusionPipeline). guidance_scale: a
        float for every collaborator (each guided against its own unconditional prediction) or
        {collaborator name or modality: scale}. mixing: "learned" (the dynamic diffuser) or
        "average". return_influence: keep the mixing weights of every step. eta: DDIM's
        stochasticity (sampler "ddim" only), as in DiffusionPipeline. num_inference_steps,
        guidance_scale, sampler and mixing of None are the checkpoint's (`self.sampling`)."""
        defaults = self.sampling
        num_inference_steps = defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        sampler = defaults["sampler"] if sampler is None else sampler
        mixing = defaults["mixing"] if mixing is None else mixing
        seeds = check_seeds(seeds)
        callback = check_callback(callback, num_inference_steps)
        if mixing not in MIXINGS:
            raise FaceweaveError(f"unknown mixing {mixing!r}; choose one of {', '.join(MIXINGS)}")
        if mixing == "learned" and self.diffuser is None:
            raise FaceweaveError("this pipeline has no influence network (built from collaborators only); "
                                 "use mixing='average' or load a collab checkpoint")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FaceweaveError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output_type not in ("np", "pt"):
            raise FaceweaveError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        if conditions is None:
            conditions = Conditions(prompt=prompt, attributes=attributes or {}, mask=mask, sketch=sketch)
        conds = [conditions] * len(seeds) if isinstance(conditions, Conditions) else list(conditions)
        if len(conds) != len(seeds):
            raise FaceweaveError(f"{len(conds)} conditions but {len(seeds)} seeds; pass one seed per condition")
        given = {g for c in conds for g in c.given}
        unread = sorted(given - set(self.modalities))
        if unread:
            raise FaceweaveError(f"no collaborator reads {', '.join(unread)}; the collaborators "
                                 f"({', '.join(self.names)}) read {', '.join(self.modalities)}")
        self._first.check_sampling(num_inference_steps, sampler, schedule, 1.0, None, given)
        eta = check_eta(sampler, eta)
        scales = self._scales(guidance_scale, given)
        sigmas = SCHEDULES[schedule](num_inference_steps)
        from tqdm import tqdm
        bar = tqdm(total=len(seeds) * num_inference_steps, disable=not progress, desc="generate (collab)",
                   unit="step", dynamic_ncols=True, leave=False)
        settings = {"backend": FAMILY, "model": self.meta.get("path"), "collaborators": self.names,
                    "mixing": mixing, "steps": num_inference_steps, "sampler": sampler, "schedule": schedule,
                    "guidance_scale": scales, "eta": eta if sampler == "ddim" else None}
        images, metadata, influence = [], [], []
        try:
            for start in range(0, len(seeds), batch_size):
                chunk, chunk_seeds = conds[start:start + batch_size], seeds[start:start + batch_size]
                t0 = time.perf_counter()
                x0, notes, maps = self._sample(chunk, chunk_seeds, sigmas, sampler, scales, mixing,
                                               callback, bar, return_influence, eta)
                per_image = (time.perf_counter() - t0) / len(chunk)
                images.extend(_to_uint8(x0) if output_type == "np" else list(x0.cpu()))
                if return_influence:
                    influence.extend(maps)
                metadata += [image_metadata(c, s, settings, per_image, note)
                             for c, s, note in zip(chunk, chunk_seeds, notes)]
        finally:
            bar.close()
        return CollabOutput(images, metadata, influence=influence if return_influence else None)

    @torch.no_grad()
    def _sample(self, conds, seeds, sigmas, sampler, scales, mixing, callback, bar, keep_maps, eta=0.0):
        tensors, notes = self._first.condition_tensors(conds)     # what the influence network sees
        given = frozenset(g for c in conds for g in c.given if g in MODALITY)
        sigmas = sigmas.to(torch.float64)
        steps = len(sigmas) - 1
        # each collaborator's own guided denoiser sees only its modalities; one with none given sits out
        denoisers, used = [], []
        for k, (name, pipe) in enumerate(self.collaborators.items()):
            own = reads(pipe)
            if any(MODALITY[g] in own for g in given):
                mine = conds if own == tuple(pipe.model.config.modalities) else \
                    [c.only([FIELD[m] for m in own]) for c in conds]
                denoisers.append(pipe.denoiser(mine, scales[name], num_steps=steps))
                used.append(k)
        active = active_collaborators(self.config, tensors["present"])[:, used]
        n = len(conds)
        maps = torch.zeros(n, len(self.names), steps, self.config.size, self.config.size, dtype=torch.float16) \
            if keep_maps else None

        def denoise(x: torch.Tensor, sigma: float, step: int) -> torch.Tensor:
            preds = [d(x, sigma, step) for d in denoisers]
            if len(preds) == 1:
                w = torch.ones(n, 1, *x.shape[2:], device=x.device)
            elif mixing == "average":
                a = (active | ~active.any(1, keepdim=True)).float()
                w = (a / a.sum(1, keepdim=True))[:, :, None, None].expand(-1, -1, *x.shape[2:])
            else:
                w = self.diffuser.weights(x, float(sigma), tensors, active, [self.names[k] for k in used])
            if maps is not None and step < steps:
                maps[:, used, step] = w.to(maps.dtype).cpu()
            return mix(preds, w).to(x.dtype)

        def step_callback(i, sigma, xi, denoised):
            bar.update(n)
            if callback is not None:
                callback(i, sigma, xi, denoised)

        x = self._first.initial_noise(seeds) * float(sigmas[0])
        kwargs = sampler_noise(sampler, seeds, x.shape[1:], self.device, eta)
        x0 = get_sampler(sampler)(denoise, x, sigmas, callback=step_callback, **kwargs)
        image = self._first.model.space.decode(x0).clamp(-1, 1)
        return image, notes, ([m.numpy() for m in maps] if maps is not None else None)


    def influence_pictures(self, result: CollabOutput, n: int | None = None) -> list[np.ndarray]:
        """The first n images' influence maps as pictures (rows = collaborators, columns =
        steps, beside the image): a call made with return_influence=True."""
        if result.influence is None:
            raise FaceweaveError("this result holds no influence maps; call the pipeline with return_influence=True")
        return [influence_picture(maps, self.names, image)
                for maps, image in zip(result.influence[:n], result.images)]

    # -- editing ------------------------------------------------------------------------------
    @checked_keywords
    def edit_photo(self, photo: np.ndarray, target: Conditions, *, source_mask: np.ndarray | None = None,
                   num_inference_steps: int = 20, guidance_scale: float | dict = 2.0, embed_steps: int = 30,
                   finetune_steps: int = 30, eta: float = 0.8, seed: int = 0, progress: bool = True,
                   name: str = "the photo") -> PhotoResult:
        """`faceweave edit`: `edit` with the photo's own mask (`source_mask`, else parsed) when
        the target has a mask; the other settings are edit's."""
        from ...data.sheet import condition_panels

        own = None
        if target.mask is not None:       # the photo's own mask matters only to keep what a new mask leaves
            own = source_mask
            if own is None:
                own = photo_instrument(self.meta, "parser").predict(photo)
        result = self.edit(photo, target, source_mask=own, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, embed_steps=embed_steps, finetune_steps=finetune_steps,
                           eta=eta, seed=seed, progress=progress)
        edited, size, meta = result.images[0], self.size, result.metadata[0]
        panels = [resize_image(photo, size), *condition_panels(target, size), resize_image(edited, size)]
        summary = (f"optimisation {meta['optimise_seconds']} s, sampling {meta['sample_seconds']} s; "
                   f"edited by {', '.join(meta['edited_by'])}")
        return PhotoResult(edited, panels, meta, summary, kept=result.kept)

    @checked_keywords
    def edit(self, image: np.ndarray, target: Conditions, *, source_mask: np.ndarray | None = None,
             embed_steps: int = 30, finetune_steps: int = 30, eta: float = 0.8, embed_lr: float = 1e-2,
             finetune_lr: float = 5e-5, num_inference_steps: int = 20, guidance_scale: float | dict = 2.0,
             seed: int = 0, mixing: str = "learned", dilate: int = 2, progress: bool = True) -> CollabOutput:
        """Collaborative editing of a photo (the paper's sec. 3.4, after Imagic): for every
        collaborator whose condition the target gives,
          1. its condition embedding (context tokens and spatial channels) starts at the target's
             and is optimised `embed_steps` steps to reconstruct the photo;
          2. a copy of the collaborator is fine-tuned `finetune_steps` steps on the photo with
             that embedding (the frozen original is untouched);
          3. it then denoises with eta * target + (1 - eta) * optimised embedding.
        The edited collaborators are mixed by the dynamic diffuser (seeing the target
        conditions) and sampled from noise. With `source_mask` (the photo's own mask) and a
        target mask, the photo is kept outside the pixels whose class changed (dilated, soft
        seam). Returns the edited image at the photo's size; metadata has the optimisation time."""

        from ...diffusion.losses import loss_weight, sample_training_sigmas
        from ..diffusion.pipeline import changed_region
        for name, value, lo in (("embed_steps", embed_steps, 0), ("finetune_steps", finetune_steps, 0),
                                ("num_inference_steps", num_inference_steps, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 5000:
                raise FaceweaveError(f"{name} must be a whole number from {lo} to 5000, got {value!r}")
        seed = check_seed(seed)
        if not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.5:
            raise FaceweaveError(f"eta must be a number from 0 (the photo) to 1 (the target) or a little "
                                 f"beyond, got {eta!r}")
        if mixing not in MIXINGS or (mixing == "learned" and self.diffuser is None):
            raise FaceweaveError(f"mixing must be 'average' or (with an influence network) 'learned', got {mixing!r}")
        given = set(target.given) - {"image"}
        if not given:
            raise FaceweaveError("nothing to edit: give the target a prompt, a mask, attributes or a sketch")
        unread = sorted(given - set(self.modalities))
        if unread:
            raise FaceweaveError(f"no collaborator reads {', '.join(unread)}; the collaborators read "
                                 f"{', '.join(self.modalities)}")
        photo, x0, notes = self._first.encode_photo(image)
        target = target.only(given)
        tensors, more = self._first.condition_tensors([target])
        notes += more[0]
        scales = self._scales(guidance_scale, given)
        gen = torch.Generator().manual_seed(seed + 7919)
        t0 = time.perf_counter()
        edited, used = [], []
        from tqdm import tqdm
        todo = [(k, n, p) for k, (n, p) in enumerate(self.collaborators.items())
                if {FIELD[m] for m in reads(p)} & given]
        bar = tqdm(total=len(todo) * (embed_steps + finetune_steps), disable=not progress, desc="optimise",
                   unit="step", dynamic_ncols=True, leave=False)
        for k, name, pipe in todo:
            model = copy.deepcopy(pipe.model).float().train()
            own = reads(pipe)
            present = {m: p if m in own else torch.zeros_like(p) for m, p in tensors["present"].items()}
            with torch.no_grad():
                ctx, cmask, sp = model.conditioner(tensors["text"], tensors["text_mask"], tensors["attributes"],
                                                   tensors["mask"], tensors["sketch"], present)
                u_ctx, u_mask, u_sp = model.conditioner(
                    tensors["text"], tensors["text_mask"], tensors["attributes"], tensors["mask"],
                    tensors["sketch"], {m: torch.zeros_like(p) for m, p in present.items()})
            e_ctx = ctx.detach().clone().requires_grad_(True)
            e_sp = None if sp is None else sp.detach().clone().requires_grad_(True)

            def recon(c, s, batch=4):
                sigma = sample_training_sigmas(batch, generator=gen).to(x0.device)
                noise = torch.randn((batch, *x0.shape[1:]), generator=gen).to(x0.device)
                d = model.denoiser(x0 + sigma[:, None, None, None] * noise, sigma,
                                   context=c.expand(batch, -1, -1), context_mask=cmask.expand(batch, -1),
                                   spatial=None if s is None else s.expand(batch, -1, -1, -1))
                w = loss_weight("edm", sigma, model.config.sigma_data)
                return (w * (d - x0).square().flatten(1).mean(1)).mean()

            model.requires_grad_(False)
            opt = torch.optim.Adam([t for t in (e_ctx, e_sp) if t is not None], lr=embed_lr)
            for _ in range(embed_steps):
                opt.zero_grad()
                recon(e_ctx, e_sp).backward()
                opt.step()
                bar.update(1)
            e_ctx, e_sp = e_ctx.detach(), None if e_sp is None else e_sp.detach()
            model.denoiser.requires_grad_(True)
            opt = torch.optim.Adam(model.denoiser.parameters(), lr=finetune_lr)
            for _ in range(finetune_steps):
                opt.zero_grad()
                recon(e_ctx, e_sp).backward()
                opt.step()
                bar.update(1)
            model.requires_grad_(False).eval()
            mix_ctx = eta * ctx + (1 - eta) * e_ctx
            mix_sp = None if sp is None else eta * sp + (1 - eta) * e_sp
            edited.append((model, (mix_ctx, cmask, mix_sp), (u_ctx, u_mask, u_sp), scales[name]))
            used.append(k)
        bar.close()
        optimise_s = time.perf_counter() - t0

        sigmas = SCHEDULES["karras"](num_inference_steps).to(torch.float64)
        active = active_collaborators(self.config, tensors["present"])[:, used]

        @torch.no_grad()
        def denoise(x: torch.Tensor, sigma: float, step: int = 0) -> torch.Tensor:
            preds = []
            sig = torch.full((2,), float(sigma), device=x.device)
            for model, (c, cm, sp), (uc, um, usp), scale in edited:
                both = model.denoiser(
                    x.repeat(2, 1, 1, 1), sig, context=_pad_cat(c, uc), context_mask=_pad_cat(cm, um),
                    spatial=None if sp is None else torch.cat([sp, usp]))
                cond, uncond = both[:1], both[1:]
                preds.append(uncond + scale * (cond - uncond))
            if len(preds) == 1:
                return preds[0]
            if mixing == "average":
                return sum(preds) / len(preds)
            w = self.diffuser.weights(x, float(sigma), tensors, active, [self.names[k] for k in used])
            return mix(preds, w).to(x.dtype)

        t1 = time.perf_counter()
        x = self._first.initial_noise([seed]) * float(sigmas[0])
        out = self._first.model.space.decode(get_sampler("dpmpp_2m")(denoise, x, sigmas)).clamp(-1, 1)
        result = _to_uint8(out)[0]
        sample_s = time.perf_counter() - t1
        h, w = np.asarray(image).shape[:2]
        if (h, w) != result.shape[:2]:
            result = resize_image(result, (h, w))
        kept, unchanged = None, None
        if source_mask is not None and target.mask is not None:
            region = changed_region(source_mask, target.mask, min(h, w), dilate)
            region = np.asarray(resize_image(np.repeat(region[..., None].astype(np.uint8) * 255, 3, 2), (h, w)))
            import cv2
            alpha = cv2.GaussianBlur(region[..., :1].astype(np.float32) / 255.0, (0, 0), max(1.0, min(h, w) / 64))
            alpha = alpha.reshape(h, w, 1)
            result = (alpha * result + (1 - alpha) * np.asarray(image)).round().astype(np.uint8)
            kept = float((alpha < 0.5).mean())
            unchanged = alpha[..., 0] * 255 < 0.5            # the blend rounds back to the photo's value
        meta = {"backend": FAMILY, "model": self.meta.get("path"), "edited_by": [self.names[k] for k in used],
                "mixing": mixing, "seed": int(seed), "embed_steps": embed_steps, "finetune_steps": finetune_steps,
                "eta": eta, "steps": num_inference_steps, "guidance_scale": scales,
                "optimise_seconds": round(optimise_s, 2), "sample_seconds": round(sample_s, 2),
                "kept_fraction": kept, "conditions": target.digest(), "notes": notes}
        return CollabOutput([result], [meta], kept=unchanged)


def _pad_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate two context (or context-mask) batches whose token counts may differ."""
    if a.shape[1] != b.shape[1]:
        n = max(a.shape[1], b.shape[1])
        pad = lambda t: torch.cat([t, t.new_zeros(t.shape[0], n - t.shape[1], *t.shape[2:])], 1)  # noqa: E731
        a, b = pad(a), pad(b)
    return torch.cat([a, b])


# -- pictures -----------------------------------------------------------------------------------
def _heat(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB along dark blue - teal - yellow (a perceptually ordered ramp)."""
    stops = np.array([[20, 20, 60], [40, 90, 150], [40, 160, 140], [150, 210, 80], [250, 230, 40]], np.float32)
    pos = np.clip(values, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8)


def influence_picture(influence: np.ndarray, names: Sequence[str], image: np.ndarray | None = None,
                      columns: int = 8, cell: int = 64) -> np.ndarray:
    """Rows = collaborators, columns = sampling steps (evenly picked, first and last kept):
    bright = this collaborator decides this pixel at this step. The generated image, when
    given, closes every row."""
    from PIL import Image, ImageDraw

    k, steps = influence.shape[:2]
    picks = sorted({int(round(i)) for i in np.linspace(0, steps - 1, min(columns, steps))})
    label_w, head_h, pad = 72, 16, 2
    ncols = len(picks) + (image is not None)
    canvas = Image.new("RGB", (label_w + ncols * (cell + pad), head_h + k * (cell + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, step in enumerate(picks):
        draw.text((label_w + j * (cell + pad) + 2, 2), f"step {step + 1}", fill=(0, 0, 0))
    if image is not None:
        draw.text((label_w + len(picks) * (cell + pad) + 2, 2), "result", fill=(0, 0, 0))
    for r in range(k):
        y = head_h + r * (cell + pad)
        draw.text((2, y + cell // 2 - 5), str(names[r])[:11], fill=(0, 0, 0))
        for j, step in enumerate(picks):
            tile = Image.fromarray(_heat(influence[r, step].astype(np.float32))).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (label_w + j * (cell + pad), y))
        if image is not None:
            canvas.paste(Image.fromarray(resize_image(image, cell)), (label_w + len(picks) * (cell + pad), y))
    return np.asarray(canvas)


class CollabBackend(Backend):
    """The registry face of CollabPipeline: generate(conditions, seeds, size)."""

    name = FAMILY
    accepts = tuple(MODALITY)

    def __init__(self, model: str | None = None, steps: int | None = None, guidance: float | dict | None = None,
                 mixing: str | None = None, sampler: str | None = None, batch_size: int = 16, progress: bool = False,
                 eta: float = 0.0):
        if mixing is not None and mixing not in MIXINGS:
            raise FaceweaveError(f"unknown mixing {mixing!r}; choose one of {', '.join(MIXINGS)}")
        self.pipe = CollabPipeline.from_pretrained(model or DEFAULT_MODEL)
        self.accepts = self.pipe.modalities
        chosen = {"num_inference_steps": steps, "guidance_scale": guidance, "mixing": mixing, "sampler": sampler}
        self.options = {**{k: self.pipe.sampling[k] if v is None else v for k, v in chosen.items()},
                        "batch_size": batch_size, "progress": progress}
        self.options["eta"] = check_eta(self.options["sampler"], eta)

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        out = self.pipe(conditions=conditions, seeds=seeds, **self.options).images
        return out if size == self.pipe.size else [resize_image(im, size) for im in out]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.pipe.meta.get("path"), "size": self.pipe.size,
                "collaborators": self.pipe.names, **{k: v for k, v in self.options.items() if k != "progress"}}
