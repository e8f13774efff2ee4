"""Backend `diffusion`: one denoiser conditioned on text, attributes, mask and sketch at once.

Giambi & Lisanti 2023 ("Conditioning Diffusion Models via Attributes and Semantic Masks
for Face Generation"), with text and sketches added the same way. The Python API follows
diffusers:

    import faceweave
    pipe = faceweave.load("diffusion")                    # the bundled 64 px real-face model
    out = pipe(prompt="a smiling woman with blond hair", mask=mask, seeds=[0, 1, 2, 3],
               num_inference_steps=20, guidance_scale=2.0)   # or {"prompt": 3, "mask": 1.5}
    out.images[0]                                         # 64 x 64 x 3 uint8
    out.metadata[0]                                       # seed, settings, conditions digest

Image i depends only on (conditions, seeds[i]): every image draws its starting noise from
its own generator, and nothing in the network mixes images of a batch (text encodings are
computed one prompt at a time, padding is masked out of attention).

Given a prompt or attributes but no mask or sketch, each image can follow a FaceSynth label
map drawn from its own seed to have the attributes asked for (the layout prior,
`synth.layout`); `layout_prior=False` lets the model invent the layout. Each checkpoint
says which is its default ("sampling" in config.json; on when it does not say): on for the
FaceSynth diffusion-64, which follows a layout far better than it invents one; a model of
real faces can turn it off, since FaceSynth layouts are not real layouts.

Editing a real photo (`pipe.edit`) inverts it with the probability-flow ODE under its own
conditions, regenerates from that noise under the edited ones, and at every step keeps the
photo's own trajectory outside the region the edit touches (the changed mask pixels,
dilated), so what was not edited stays as it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ... import checkpoint
from ...conditions import CELEBA_ATTRIBUTES, CLASS_ID, Conditions
from ...diffusion import guidance as guidance_lib
from ...diffusion.inversion import invert
from ...diffusion.samplers import SCHEDULES, STOCHASTIC, check_noise_window, get_sampler
from ...errors import FaceweaveError
from ...io import resize_sketch, resize_image, resize_mask
from ...models.denoiser import ConditionalDenoiser, DenoiserConfig
from ...models.vae import downsample_conditions
from ...text import parse_prompt
from ...seeds import check_seeds
from ..base import (Backend, PhotoResult, Pipeline, check_callback, checked_keywords, per_seed_conditions,
                    photo_instrument)

FAMILY = "diffusion"
DEFAULT_MODEL = "diffusion-64-real"     # real photos; "diffusion-64" is the FaceSynth benchmark model
DEFAULT_SAMPLER = "euler_ancestral"     # measured against the ODE solvers in docs/diffusion.md
# Conditions field -> the conditioner's modality name.
MODALITY = {"prompt": "text", "attributes": "attributes", "mask": "mask", "sketch": "sketch"}
GUIDABLE = tuple(MODALITY)
PRECISIONS = ("fp32", "bf16")


@dataclasses.dataclass
class PipelineOutput:
    images: list[np.ndarray]          # H x W x 3 uint8 RGB, one per seed
    metadata: list[dict[str, Any]]    # per image: seed, settings, conditions digest, notes
    # per image: the label map the layout prior drew for it (H x W class ids), or None
    layouts: list[np.ndarray | None] = dataclasses.field(default_factory=list)


def _normalise_scale(scale: float | dict[str, float]) -> float | dict[str, float]:
    """Guidance keys may name Conditions fields or the model's modalities ("text" = "prompt")."""
    if isinstance(scale, dict):
        out = {}
        for key, value in scale.items():
            name = {"text": "prompt"}.get(str(key).strip().lower(), str(key).strip().lower())
            if name not in GUIDABLE:
                raise FaceweaveError(f"cannot guide {key!r}; guidance scales name one of {', '.join(GUIDABLE)}")
            out[name] = value
        return out
    return scale


class GuidedDenoiser:
    """D(x, sigma, step): a guided denoiser (DiffusionPipeline.denoiser). `evaluate(x, sigma,
    subsets)` gives the unguided estimates of several condition subsets in one network call;
    guidance combines them (diffusion.guidance.guide) at the steps inside `window`."""

    def __init__(self, evaluate: Callable, given: frozenset, scale, window=None, num_steps: int | None = None):
        self.evaluate, self.given, self.scale = evaluate, given, scale
        self.window, self.num_steps = window, num_steps
        self.notes: list[list[str]] = []

    def __call__(self, x: torch.Tensor, sigma: float, step: int = 0) -> torch.Tensor:
        on = guidance_lib.active(step, self.num_steps, self.window) if self.num_steps else True
        return guidance_lib.guide(self.evaluate, x, sigma, self.given, self.scale, on)


class DiffusionPipeline(Pipeline):
    """A conditional denoiser + the frozen text encoder, ready to sample."""

    family = FAMILY
    # defaults of a call that does not say; a checkpoint's config.json "sampling" overrides them
    SAMPLING = {"num_inference_steps": 20, "guidance_scale": 2.0, "sampler": DEFAULT_SAMPLER, "layout_prior": True}

    def __init__(self, model: ConditionalDenoiser, text_encoder=None, meta: dict | None = None,
                 device: str | torch.device = "cpu", precision: str = "fp32"):
        self.model = model.eval()
        self.device = torch.device(device)
        self.model.to(self.device)
        self.meta = meta or {}
        self._text_encoder = text_encoder
        self.size = model.image_size                 # output side; the denoiser's own is model.config.size
        self.precision = precision

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32, precision: str = "fp32") -> "DiffusionPipeline":
        """precision "bf16" runs the denoiser's matrix products in bfloat16 (autocast; weights,
        norms and the sampler stay float32; weights channels-last): on a 2-core CPU with
        AVX512-BF16, 1.3-2.3x less CPU time per image, images 0.5 grey levels from "fp32" on
        average and the same scores (docs/diffusion.md, "bf16 on the CPU")."""
        meta, state = checkpoint.load(name_or_path, FAMILY)
        try:
            config = DenoiserConfig(**meta["config"])
        except (TypeError, ValueError) as exc:
            raise FaceweaveError(f"{meta['path']}: config.json does not describe a diffusion model ({exc})") from None
        model = ConditionalDenoiser(config).to(dtype)
        checkpoint.load_into(model, state, where=meta["path"])
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, meta=meta, device=device, precision=precision)

    def save_pretrained(self, path: str | Path, storage: str | None = None) -> Path:
        state = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        return checkpoint.save(path, FAMILY, dataclasses.asdict(self.model.config), state, storage=storage,
                               **{"image_size": self.size, **self._saved_meta()})

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        """bf16 also keeps the denoiser's weights channels-last (oneDNN's fast layout for bf16
        convolutions on CPUs); fp32 keeps the layout every measured fp32 figure was taken in."""
        self._precision = check_precision(value)
        self.model.to(memory_format=torch.channels_last if self._precision == "bf16" else torch.contiguous_format)

    def _autocast(self):
        """The context the denoiser runs in: bfloat16 autocast for precision "bf16"."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from ...models.text_encoder import TextEncoder
            self._text_encoder = TextEncoder(self.device)
        return self._text_encoder

    @property
    def modalities(self) -> tuple[str, ...]:
        """The Conditions fields this model reads."""
        return tuple(f for f, m in MODALITY.items() if m in self.model.config.modalities)

    # -- conditions -> tensors ----------------------------------------------------------------
    def condition_tensors(self, conditions: Sequence[Conditions], prompt_attributes: bool = True
                 ) -> tuple[dict[str, Any], list[list[str]]]:
        """Condition tensors for a batch (absent modalities marked absent per sample), and the
        notes to report per image (e.g. a resized mask).

        prompt_attributes: also read the attributes a prompt names (text.parse_prompt) into
        the attribute tokens, for a model that reads both. They belong to the prompt: they
        are on exactly when the prompt is (guidance), and explicit attributes win."""
        n, size = len(conditions), self.size
        slow = self.precision == "bf16" and not native_bf16(self.device)
        emulated = (f"bf16 is not native on this {self.device.type} (a CPU needs AVX512-BF16 or AMX) and is "
                    "likely slower than fp32 here; use precision fp32")
        notes: list[list[str]] = [[emulated] if slow else [] for _ in conditions]
        device = self.device
        present = {m: torch.zeros(n, dtype=torch.bool) for m in MODALITY.values()}
        enc = self.text_encoder.encode([c.prompt for c in conditions]) if any(c.prompt for c in conditions) else None
        attributes = torch.full((n, len(CELEBA_ATTRIBUTES)), -1.0)
        read = prompt_attributes and {"text", "attributes"} <= set(self.model.config.modalities)
        implied = torch.full((n, len(CELEBA_ATTRIBUTES)), -1.0) if read else None
        masks = torch.zeros(n, size, size, dtype=torch.long)
        sketches = torch.zeros(n, 1, size, size)
        for i, c in enumerate(conditions):
            if c.prompt:
                present["text"][i] = True
                count = self.text_encoder.token_count(c.prompt)
                if count > self.text_encoder.max_tokens:
                    notes[i].append(f"the prompt is {count} tokens long; the text encoder reads its first "
                                    f"{self.text_encoder.max_tokens}" + (" (the attributes it names are read "
                                                                         "from all of it)" if read else ""))
                if read:
                    for name, value in parse_prompt(c.prompt).items():
                        implied[i, CELEBA_ATTRIBUTES.index(name)] = float(value)
            if c.attributes:
                present["attributes"][i] = True
                for name, value in c.attributes.items():
                    attributes[i, CELEBA_ATTRIBUTES.index(name)] = float(value)
            if c.mask is not None:
                mask = c.mask
                if mask.shape != (size, size):
                    notes[i].append(f"mask resized from {mask.shape[1]}x{mask.shape[0]} to {size}x{size}")
                    mask = resize_mask(mask, size)
                masks[i] = torch.from_numpy(mask.astype(np.int64))
                present["mask"][i] = True
            if c.sketch is not None:
                sketch = c.sketch
                if sketch.shape != (size, size):
                    notes[i].append(f"sketch resized from {sketch.shape[1]}x{sketch.shape[0]} to {size}x{size}")
                    sketch = resize_sketch(sketch, size)
                sketches[i, 0] = torch.from_numpy(sketch.astype(np.float32) / 255.0)
                present["sketch"][i] = True
        # a latent model takes masks and sketches at its own (latent) side
        masks, sketches = downsample_conditions(masks, sketches, self.model.config.size)
        tensors = {
            "text": enc.tokens if enc is not None else None,
            "text_mask": enc.mask if enc is not None else None,
            "attributes": attributes.to(device), "mask": masks.to(device), "sketch": sketches.to(device),
            "present": {m: p.to(device) for m, p in present.items()},
            "prompt_attributes": implied.to(device) if implied is not None and (implied >= 0).any() else None,
        }
        return tensors, notes

    def evaluator(self, tensors: dict[str, Any]) -> Callable:
        """evaluate(x, sigma, subsets) for guidance: all subsets in one batched network call.

        The condition tokens and spatial channels of a list of subsets do not change from
        step to step, so the conditioner runs once per list (not once per step)."""
        model = self.model
        dtype = next(model.parameters()).dtype
        cache: dict[tuple, tuple] = {}
        autocast = self._autocast

        def attributes_for(subset: frozenset) -> torch.Tensor:
            """The attribute values a subset of the given fields sets (-1 = unknown): the
            prompt's when "prompt" is in it, the explicit ones (which win) when "attributes" is."""
            out = torch.full_like(tensors["attributes"], -1.0)
            if "prompt" in subset and tensors["prompt_attributes"] is not None:
                out = tensors["prompt_attributes"].clone()
            if "attributes" in subset:
                out = torch.where(tensors["attributes"] >= 0, tensors["attributes"], out)
            return out

        def conditions_for(subsets: list[frozenset], n: int) -> tuple:
            key = tuple(subsets)
            if key not in cache:
                k = len(subsets)
                rep = (lambda t: None if t is None else t.repeat(k, *([1] * (t.dim() - 1))))
                present = {m: torch.cat([tensors["present"][m] & (field in s) for s in subsets])
                           for field, m in MODALITY.items()}
                attributes = torch.cat([attributes_for(s) for s in subsets])
                present["attributes"] = (attributes >= 0).any(1)
                text = tensors["text"]
                context, context_mask, spatial = model.conditioner(
                    rep(text).to(dtype) if text is not None else None, rep(tensors["text_mask"]),
                    attributes, rep(tensors["mask"]), rep(tensors["sketch"]).to(dtype), present)
                cache[key] = (context, context_mask, None if spatial is None else spatial.to(dtype))
            return cache[key]

        def evaluate(x: torch.Tensor, sigma: float, subsets: list[frozenset]) -> list[torch.Tensor]:
            k, n = len(subsets), x.shape[0]
            context, context_mask, spatial = conditions_for(subsets, n)
            xs = x.repeat(k, 1, 1, 1).to(dtype)
            with autocast():                            # the conditioner (once per list) stays float32
                out = model.denoiser(xs, torch.full((k * n,), sigma, device=x.device, dtype=dtype),
                                     context=context, context_mask=context_mask, spatial=spatial).float()
            if not torch.isfinite(out).all():
                raise FaceweaveError("the model produced NaN or infinite values; the checkpoint is broken "
                                     "(retrain or re-export it) or its dtype overflows (load it in float32)")
            return list(out.split(n))
        return evaluate

    def guided_denoiser(self, tensors: dict, given: frozenset, scale, window=None,
                        num_steps: int | None = None) -> "GuidedDenoiser":
        """D(x, sigma, step) with classifier-free guidance over the given fields, from prepared
        condition tensors (`condition_tensors`); guidance is on at the steps inside `window`
        (fractions of `num_steps`). Override this to change how the model is guided."""
        return GuidedDenoiser(self.evaluator(tensors), frozenset(given), scale, window, num_steps)

    def denoiser(self, conditions: Conditions | Sequence[Conditions], guidance_scale: float | dict = 1.0, *,
                 guidance_window: tuple[float, float] | None = None, num_steps: int | None = None,
                 prompt_attributes: bool = True) -> "GuidedDenoiser":
        """The public guided denoiser: D(x, sigma, step) -> the guided estimate of the clean
        image (in the model's space) for a batch x of len(conditions), as the samplers of
        diffusion.samplers call it. Modalities the model does not read are left out (how
        Collaborative Diffusion composes several models); `.notes` holds each image's notes."""
        conds = [conditions] if isinstance(conditions, Conditions) else list(conditions)
        _check_conditions(**{f"conditions[{i}]": c for i, c in enumerate(conds)})
        read = set(self.model.config.modalities)
        given = frozenset(g for c in conds for g in c.given if g in MODALITY and MODALITY[g] in read)
        scale = self.check_sampling(num_steps or 1, DEFAULT_SAMPLER, "karras", guidance_scale, guidance_window,
                                    set(given))
        tensors, notes = self.condition_tensors(conds, prompt_attributes)
        tensors["present"] = {m: p if m in read else torch.zeros_like(p) for m, p in tensors["present"].items()}
        denoise = self.guided_denoiser(tensors, given, scale, guidance_window, num_steps)
        denoise.notes = notes
        return denoise

    # -- sampling -----------------------------------------------------------------------------
    def check_sampling(self, num_inference_steps, sampler, schedule, guidance_scale, guidance_window, given):
        """Sampling settings checked (one-line errors); returns the guidance scale normalised."""
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= 1000:
            raise FaceweaveError(f"num_inference_steps must be a whole number from 1 to 1000, "
                                 f"got {num_inference_steps!r} (20 is a good default)")
        get_sampler(sampler)
        if schedule not in SCHEDULES:
            raise FaceweaveError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        scale = _normalise_scale(guidance_scale)
        guidance_lib.check_guidance(scale, given, guidance_window)
        return scale

    def check_guidance_scale(self, scale):
        if not isinstance(scale, dict):
            return scale
        scale = _normalise_scale(scale)
        unread = [m for m in scale if m not in self.modalities]
        if unread:
            raise FaceweaveError(f"--scale {unread[0]}=...: the model does not read {unread[0]} (it reads "
                                 f"{', '.join(self.modalities)}); drop it")
        guidance_lib.check_guidance(scale, scale)
        return scale

    def guidance_for(self, scale, conditions, layout_prior=None):
        if not isinstance(scale, dict):
            return scale
        given = {g for c in conditions for g in c.given}
        if any(self.wants_layout(c, layout_prior) for c in conditions):
            given.add("mask")                               # the drawn layout is a given mask
        return {m: s for m, s in scale.items() if m in given}

    def _conditions(self, conditions, prompt, attributes, mask, sketch, n: int) -> list[Conditions]:
        return per_seed_conditions(conditions, prompt, attributes, mask, sketch, n, self.modalities,
                                   "this diffusion model")

    @property
    def default_layout_prior(self) -> bool:
        """Whether a call that does not say uses the layout prior: the checkpoint's
        "sampling": {"layout_prior": ...} in config.json, else True. A real-face model can turn it
        off: on real photos FaceSynth layouts lowered realism and gender agreement."""
        value = self.sampling["layout_prior"]
        return value if isinstance(value, bool) else True

    def wants_layout(self, c: Conditions, layout_prior: bool | None = None) -> bool:
        """The layout prior's rule: a condition with a prompt or attributes but neither mask
        nor sketch gets a drawn layout. A sketch fixes the layout itself, and a call with no
        condition at all stays unconditional. None: the checkpoint's default."""
        if layout_prior is None:
            layout_prior = self.default_layout_prior
        return (layout_prior and "mask" in self.modalities and c.mask is None and c.sketch is None
                and bool(c.prompt or c.attributes))

    def _with_layouts(self, conds: list[Conditions], seeds: list[int], layout_prior: bool | None
                      ) -> tuple[list[Conditions], list]:
        """Each condition that wants_layout gets the label map of a FaceSynth person with the
        attributes asked for (synth.layout), drawn from its image's own seed."""
        from ...synth.layout import draw_layout
        layouts: list = [None] * len(conds)
        out = []
        for i, (c, seed) in enumerate(zip(conds, seeds)):
            if self.wants_layout(c, layout_prior):
                asked = {**(parse_prompt(c.prompt) if c.prompt else {}), **c.attributes}
                layouts[i] = draw_layout(asked, seed, self.size)
                c = dataclasses.replace(c, mask=layouts[i].mask)
            out.append(c)
        return out, layouts

    @checked_keywords
    def __call__(self, prompt: str | None = None, attributes: dict[str, int] | None = None,
                 mask: np.ndarray | None = None, sketch: np.ndarray | None = None, *,
                 seeds: Sequence[int] = (0,), conditions: Conditions | Sequence[Conditions] | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | dict[str, float] | None = None,
                 guidance_window: tuple[float, float] | None = None, sampler: str | None = None,
                 schedule: str = "karras", batch_size: int = 16, callback: Callable | None = None,
                 progress: bool = True, output_type: str = "np", prompt_attributes: bool = True,
                 eta: float = 0.0, s_tmin: float = 0.0, s_tmax: float | None = None,
                 layout_prior: bool | None = None) -> PipelineOutput:
        """Generate one image per seed. Conditions come as keyword arguments (the same for every
        seed) or as `conditions=` (one Conditions, or one per seed).

        guidance_scale: a float (all given conditions against none) or {modality: scale}
        (each against the rest; 1 = conditioned but not guided). guidance_window = (start,
        end) fractions of the steps where guidance is on. callback(step, sigma, x, denoised)
        is called per step of each batch. output_type "np" (uint8 arrays) or "pt" (float
        tensors in [-1, 1]). prompt_attributes: also condition on the attributes the prompt
        names ("a blond man" -> Blond_Hair, Male), read by text.parse_prompt; explicit
        `attributes` win; False leaves the prompt to the text encoder alone. sampler:
        "euler_ancestral" (the default: fresh noise at every step, drawn from each image's own
        seed; on diffusion-64 it gives lower fd and kid and better masks than the ODE solvers,
        docs/diffusion.md), or the deterministic "dpmpp_2m", "heun", "euler", "ddim". eta
        (sampler "ddim" only): 0 deterministic, 1 ancestral. s_tmin, s_tmax (a stochastic
        sampler only: euler_ancestral, or ddim with eta > 0): fresh noise only at the steps
        from a sigma in [s_tmin, s_tmax] (None: no upper bound), deterministic elsewhere, as
        Karras et al. 2022's S_tmin/S_tmax (measured on diffusion-64 in docs/diffusion.md:
        no setting beat the default 0, None). layout_prior: given a prompt or
        attributes but no mask or sketch, condition each image on a FaceSynth label map
        drawn (from its seed) to have the attributes asked for (`out.layouts`; metadata
        "layout"); False lets the model invent the layout; None (the default) takes the
        checkpoint's own default (`default_layout_prior`). num_inference_steps, guidance_scale
        and sampler of None are the checkpoint's ("sampling" in config.json; `self.sampling`).
        """
        defaults = self.sampling
        num_inference_steps = defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        guidance_scale = defaults["guidance_scale"] if guidance_scale is None else guidance_scale
        sampler = defaults["sampler"] if sampler is None else sampler
        seeds = check_seeds(seeds)
        conds = self._conditions(conditions, prompt, attributes, mask, sketch, len(seeds))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FaceweaveError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output_type not in ("np", "pt"):
            raise FaceweaveError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        if layout_prior is None:
            layout_prior = self.default_layout_prior
        if not isinstance(layout_prior, bool):
            raise FaceweaveError(f"layout_prior must be True, False or None (the model's default), got {layout_prior!r}")
        given = {g for c in conds for g in c.given}
        if any(self.wants_layout(c, layout_prior) for c in conds):
            given.add("mask")                      # a drawn layout is a given mask, which may be guided
        scale = self.check_sampling(num_inference_steps, sampler, schedule, guidance_scale, guidance_window, given)
        callback = check_callback(callback, num_inference_steps)
        eta = check_eta(sampler, eta)
        noise_window = check_s_window(sampler, eta, s_tmin, s_tmax)
        conds, layouts = self._with_layouts(conds, seeds, layout_prior)    # every input checked: now the work
        sigmas = SCHEDULES[schedule](num_inference_steps)
        from tqdm import tqdm
        bar = tqdm(total=len(seeds) * num_inference_steps, disable=not progress, desc="generate",
                   unit="step", dynamic_ncols=True, leave=False)
        images, metadata = [], []
        settings = {"backend": FAMILY, "model": self.meta.get("path"), "steps": num_inference_steps,
                    "sampler": sampler, "schedule": schedule, "guidance_scale": scale,
                    "guidance_window": list(guidance_window) if guidance_window else None,
                    "prompt_attributes": bool(prompt_attributes), "eta": eta if sampler == "ddim" else None,
                    "s_tmin": float(s_tmin) if noise_window else None,
                    "s_tmax": None if not noise_window or s_tmax is None else float(s_tmax),
                    "precision": self.precision, "layout_prior": layout_prior}
        try:
            for start in range(0, len(seeds), batch_size):
                chunk = conds[start:start + batch_size]
                chunk_seeds = seeds[start:start + batch_size]
                t0 = time.perf_counter()
                x0, notes = self._sample(chunk, chunk_seeds, sigmas, sampler, scale, guidance_window,
                                         callback, bar, prompt_attributes, eta, noise_window)
                per_image = (time.perf_counter() - t0) / len(chunk)
                images.extend(_to_uint8(x0) if output_type == "np" else list(x0.cpu()))
                metadata += [image_metadata(c, s, settings, per_image, note, layout)
                             for c, s, note, layout in zip(chunk, chunk_seeds, notes,
                                                           layouts[start:start + batch_size])]
        finally:
            bar.close()
        return PipelineOutput(images, metadata, layouts=[None if lay is None else lay.mask for lay in layouts])

    def initial_noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """Unit Gaussian noise, one generator per seed (CPU generators: the same on every device)."""
        c, s = self.model.config.channels, self.model.config.size
        return torch.stack([torch.randn(c, s, s, generator=torch.Generator().manual_seed(int(seed)))
                            for seed in seeds]).to(self.device)

    @torch.no_grad()
    def _sample(self, conds, seeds, sigmas, sampler, scale, window, callback, bar, prompt_attributes=True,
                eta=0.0, noise_window=None):
        tensors, notes = self.condition_tensors(conds, prompt_attributes)
        given = frozenset(g for c in conds for g in c.given if g in MODALITY)
        sigmas = sigmas.to(torch.float64)           # stays on the CPU: samplers read floats from it
        denoise = self.guided_denoiser(tensors, given, scale, window, len(sigmas) - 1)
        x = self.initial_noise(seeds) * float(sigmas[0])

        def step_callback(i, sigma, xi, denoised):
            if bar is not None:
                bar.update(len(conds))
            if callback is not None:
                callback(i, sigma, xi, denoised)

        fn = get_sampler(sampler)
        kwargs = sampler_noise(sampler, seeds, x.shape[1:], self.device, eta)
        if noise_window:
            kwargs["s_tmin"], kwargs["s_tmax"] = noise_window
        return self.model.space.decode(fn(denoise, x, sigmas, callback=step_callback, **kwargs)).clamp(-1, 1), notes

    # -- editing ------------------------------------------------------------------------------
    def encode_photo(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """A uint8 photo -> (pixels in [-1, 1] at the model's size, what the denoiser models of
        it: the same pixels or their latents, notes such as a resize)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise FaceweaveError(f"the photo must be an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
        notes = []
        if image.shape[:2] != (self.size, self.size):
            notes.append(f"photo resized from {image.shape[1]}x{image.shape[0]} to {self.size}x{self.size}")
            image = resize_image(image, self.size)
        photo = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)
        x0 = self.model.space.encode(photo.to(next(self.model.parameters()).dtype)).float()
        return photo, x0, notes

    @checked_keywords
    @torch.no_grad()
    def edit(self, image: np.ndarray, source: Conditions, target: Conditions, *, num_inference_steps: int = 50,
             guidance_scale: float | dict[str, float] = 1.0, region: np.ndarray | None = None,
             dilate: int = 2, classes: Sequence[str] | None = None, progress: bool = True,
             prompt_attributes: bool = True) -> PipelineOutput:
        """Edit a photo: invert it under `source` (its own conditions), regenerate under `target`.

        region: H x W bool, where the edit may change the photo; by default the pixels whose
        class differs between source.mask and target.mask (dilated by `dilate` pixels), or
        everywhere when the masks are not both given. `classes` (names, e.g. ["mouth", "ear_r"])
        narrows that to changes from or to those classes: with a parsed source mask of a real
        photo, parser mistakes elsewhere then do not count as edits. Outside the region the
        photo's own inversion trajectory replaces the sample after every step, so it comes
        back as it was. prompt_attributes: as in __call__, for both conditions.
        """
        size = self.size
        _check_conditions(source=source, target=target)
        check_classes(classes)                 # before the inversion, not after it
        scale = self.check_sampling(num_inference_steps, "heun", "karras", guidance_scale, None, set(target.given))
        photo, x0, notes = self.encode_photo(image)
        n = num_inference_steps
        sigmas = _edit_sigmas(n)

        # 1. the photo's own path: trajectory[k] = x at sigmas[k]; trajectory[n] = the photo
        src, src_notes = self.condition_tensors([source], prompt_attributes)
        src_given = frozenset(g for g in source.given if g in MODALITY)
        trajectory: list[torch.Tensor | None] = [None] * n + [x0]

        def record(j, sigma, x, denoised):        # invert walks sigmas[n-1], ..., sigmas[1]
            trajectory[n - 1 - j] = x.clone()
        trajectory[0] = invert(self.guided_denoiser(src, src_given, 1.0), x0, sigmas, callback=record)

        # 2. regenerate under the target conditions, pinned to that path outside the region
        if region is None:
            region = changed_region(source.mask, target.mask, size, dilate, classes)
        else:
            region = resize_mask(np.asarray(region).astype(np.uint8), size) > 0
        keep_photo = torch.from_numpy(~region).to(self.device)[None, None].float()
        # in latent space a latent pixel is free when any image pixel it covers is
        keep = 1 - F.adaptive_max_pool2d(1 - keep_photo, self.model.config.size)
        tgt, tgt_notes = self.condition_tensors([target], prompt_attributes)
        denoise = self.guided_denoiser(tgt, frozenset(g for g in target.given if g in MODALITY), scale)
        step = get_sampler("heun")
        from tqdm import tqdm
        x = trajectory[0]
        for i in tqdm(range(n), disable=not progress, desc="edit", unit="step", leave=False):
            x = step(denoise, x, sigmas[i:i + 2])
            x = keep * trajectory[i + 1] + (1 - keep) * x
        # outside the region the photo itself (a VAE's decoder would only approximate it)
        x = keep_photo * photo + (1 - keep_photo) * self.model.space.decode(x).float().clamp(-1, 1)
        meta = {"backend": FAMILY, "model": self.meta.get("path"), "steps": n, "guidance_scale": scale,
                "edited_pixels": int(region.sum()), "source": source.digest(), "conditions": target.digest(),
                "prompt_attributes": bool(prompt_attributes), "precision": self.precision,
                "notes": list(dict.fromkeys(notes + src_notes[0] + tgt_notes[0]))}
        return PipelineOutput(_to_uint8(x), [meta])

    @checked_keywords
    @torch.no_grad()
    def invert(self, image: np.ndarray, conditions: Conditions, num_inference_steps: int = 50,
               prompt_attributes: bool = True) -> tuple[torch.Tensor, np.ndarray, dict[str, Any]]:
        """A photo -> (the noise that regenerates it under `conditions`, that regeneration,
        metadata). The noise is at sigma = sigmas[0] of the editing schedule (Karras, sigma_max
        20, in the model's image space); Heun on the same schedule and conditions takes it back
        to the face (the regeneration returned)."""
        _check_conditions(conditions=conditions)
        self.check_sampling(num_inference_steps, "heun", "karras", 1.0, None, set(conditions.given))
        _, x0, notes = self.encode_photo(image)
        sigmas = _edit_sigmas(num_inference_steps)
        tensors, cond_notes = self.condition_tensors([conditions], prompt_attributes)
        denoise = self.guided_denoiser(tensors, frozenset(g for g in conditions.given if g in MODALITY), 1.0)
        noise = invert(denoise, x0, sigmas)
        back = self.model.space.decode(get_sampler("heun")(denoise, noise, sigmas)).clamp(-1, 1)
        meta = {"backend": FAMILY, "model": self.meta.get("path"), "steps": num_inference_steps,
                "sigma_max": float(sigmas[0]), "schedule": "karras", "conditions": conditions.digest(),
                "given": list(conditions.given), "prompt_attributes": bool(prompt_attributes),
                "precision": self.precision, "notes": list(dict.fromkeys(notes + cond_notes[0]))}
        return noise.cpu(), _to_uint8(back)[0], meta

    @checked_keywords
    @checked_keywords
    def edit_photo(self, photo: np.ndarray, target: Conditions, *, source_mask: np.ndarray | None = None,
                   num_inference_steps: int = 50, guidance_scale: float | dict[str, float] = 1.0,
                   prompt_attributes: bool = True, everywhere: bool = False, classes: Sequence[str] | None = None,
                   progress: bool = True, name: str = "the photo") -> PhotoResult:
        """`faceweave edit`: the photo's own mask (`source_mask`, else parsed by the bundled
        parser) -> `edit` towards `target`, only where the mask changed (everywhere when the
        target has no mask, or with `everywhere`)."""
        from ...data.sheet import condition_panels

        own = source_mask
        if own is None:
            own = photo_instrument(self.meta, "parser").predict(photo)
        source, size = Conditions(mask=own), self.size
        region = np.ones((size, size), bool) if everywhere or target.mask is None else None
        result = self.edit(photo, source, target, num_inference_steps=num_inference_steps,
                           guidance_scale=guidance_scale, region=region, classes=classes, progress=progress,
                           prompt_attributes=prompt_attributes)
        edited, meta = result.images[0], result.metadata[0]
        panels = [resize_image(photo, size), *condition_panels(source, size), *condition_panels(target, size), edited]
        free = region if region is not None else changed_region(own, target.mask, size, 2, classes)
        return PhotoResult(edited, panels, meta, f"{meta['edited_pixels']} pixels free to change", kept=~free)

    @checked_keywords
    def invert_photo(self, photo: np.ndarray, *, mask: np.ndarray | None = None, parse_mask: bool = True,
                     prompt: str | None = None, num_inference_steps: int = 50, progress: bool = True,
                     name: str = "the photo") -> PhotoResult:
        """`faceweave invert`: the noise of the probability-flow ODE under the photo's mask
        (`mask`, else parsed unless `parse_mask` is False) and optional caption."""
        from ...conditions import check_prompt
        from ...eval.metrics import psnr

        if mask is not None and not parse_mask:
            raise FaceweaveError("give --mask or --no-mask, not both")
        prompt = check_prompt(prompt)
        if mask is None and parse_mask:
            mask = photo_instrument(self.meta, "parser").predict(photo)
        noise, back, meta = self.invert(photo, Conditions(prompt=prompt, mask=mask),
                                        num_inference_steps=num_inference_steps)
        meta["reconstruction_psnr"] = round(float(psnr(resize_image(photo, self.size), back)), 3)
        return PhotoResult(back, [resize_image(photo, self.size), back], meta,
                           f"PSNR {meta['reconstruction_psnr']:.2f} dB",
                           tensors={"noise": noise.contiguous()},
                           tensor_metadata={"sigma_max": str(meta["sigma_max"]), "steps": str(num_inference_steps)})

    @checked_keywords
    def reconstruct(self, image: np.ndarray, conditions: Conditions, num_inference_steps: int = 50,
                    progress: bool = False, prompt_attributes: bool = True) -> np.ndarray:
        """Invert then regenerate under the same conditions with nothing pinned: the round trip
        whose error bounds how faithful an edit can be."""
        everywhere = np.ones((self.size, self.size), dtype=bool)
        return self.edit(image, conditions, conditions, num_inference_steps=num_inference_steps,
                         region=everywhere, progress=progress, prompt_attributes=prompt_attributes).images[0]


def _edit_sigmas(steps: int) -> torch.Tensor:
    # Inversion starts from the photo, not from pure noise: sigma_max = 80 would spend most
    # steps where the photo is invisible; 20 is already far beyond the image's scale (~0.5).
    return SCHEDULES["karras"](steps, sigma_max=20.0)


def changed_region(source: np.ndarray | None, target: np.ndarray | None, size: int, dilate: int = 2,
                   classes: Sequence[str] | None = None) -> np.ndarray:
    """size x size bool: where the class differs between two label maps (only changes from or
    to `classes`, if given), dilated by `dilate` pixels; everywhere if a mask is missing."""
    if source is None or target is None:
        return np.ones((size, size), dtype=bool)
    a, b = resize_mask(source, size), resize_mask(target, size)
    diff = a != b
    if classes:
        ids = [CLASS_ID[c] for c in check_classes(classes)]
        diff &= np.isin(a, ids) | np.isin(b, ids)
    changed = torch.from_numpy(diff)[None, None].float()
    if dilate > 0:
        changed = F.max_pool2d(changed, 2 * dilate + 1, stride=1, padding=dilate)
    return changed[0, 0].numpy() > 0


def check_classes(classes: Sequence[str] | None) -> Sequence[str] | None:
    """Class names (conditions.CLASSES) that an edit may count as changed; an unknown one is an error."""
    unknown = [c for c in classes or () if c not in CLASS_ID]
    if unknown:
        raise FaceweaveError(f"unknown class {unknown[0]!r}; classes are {', '.join(CLASS_ID)}")
    return classes


def image_metadata(cond: Conditions, seed: int, settings: dict, per_image: float, notes: list[str],
                   layout=None) -> dict:
    """The metadata of one generated image: its seed, the call's settings, its conditions
    (with the drawn layout as its mask, if the layout prior drew one)."""
    meta = {"seed": seed, **settings, "given": list(cond.given), "prompt": cond.prompt,
            "attributes": cond.attributes, "conditions": cond.digest(),
            "sec_per_image": round(per_image, 4), "notes": notes}
    if settings.get("prompt_attributes") and cond.prompt:
        meta["attributes_from_prompt"] = parse_prompt(cond.prompt)
    if layout is not None:
        meta["layout"] = layout.describe()
        notes.append("no mask or sketch given: each face follows a FaceSynth layout drawn for the attributes "
                     "asked for (layout_prior=False or --no-layout-prior lets the model invent it)")
        if layout.unmatched:
            notes.append(f"no FaceSynth person drawn for the layout had {', '.join(layout.unmatched)} together with "
                         "the other attributes asked for; the layout is one without it, the attribute tokens still "
                         "ask for it")
    return meta


def check_eta(sampler: str, eta) -> float:
    """DDIM's stochasticity: 0 (deterministic, the default) to 1 (ancestral); only ddim has it."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
        raise FaceweaveError(f"eta must be a number from 0 (deterministic) to 1 (ancestral), got {eta!r}")
    if eta and sampler != "ddim":
        raise FaceweaveError(f"eta applies to the ddim sampler, not {sampler}; pass sampler='ddim' or drop eta")
    return float(eta)


def check_s_window(sampler: str, eta: float, s_tmin, s_tmax) -> tuple[float, float] | None:
    """The (s_tmin, s_tmax) a stochastic sampler gets, or None when they are the defaults (0,
    None: fresh noise at every step). Set on a deterministic sampler they are an error."""
    s_tmax_ = math.inf if s_tmax is None else s_tmax
    check_noise_window(s_tmin, s_tmax_)
    if s_tmin == 0 and s_tmax is None:
        return None
    if sampler not in STOCHASTIC and not (sampler == "ddim" and eta):
        raise FaceweaveError(f"s_tmin/s_tmax limit the fresh noise of a stochastic sampler, and {sampler}"
                             f"{' at eta 0' if sampler == 'ddim' else ''} adds none; use sampler='euler_ancestral' "
                             "(or ddim with eta > 0), or drop them")
    return float(s_tmin), float(s_tmax_)


def _check_conditions(**named) -> None:
    for name, value in named.items():
        if not isinstance(value, Conditions):
            raise FaceweaveError(f"{name} must be a faceweave.Conditions, e.g. Conditions(mask=m, prompt='...'), "
                                 f"got {type(value).__name__}")


def check_precision(precision) -> str:
    """fp32 (the default) or bf16 (the denoiser under bfloat16 autocast)."""
    if precision not in PRECISIONS:
        raise FaceweaveError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 products are native here (a CUDA GPU, or a CPU with AVX512-BF16 / AMX);
    elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):             # a torch without these probes: don't claim it
        return False


def sampler_noise(sampler: str, seeds: Sequence[int], shape, device, eta: float = 0.0) -> dict:
    """Extra sampler arguments: for a stochastic sampler (euler_ancestral, or DDIM with eta > 0)
    its per-step noise, one generator per seed (seed + 1), so image i stays a function of seed i."""
    if sampler not in STOCHASTIC and not (sampler == "ddim" and eta):
        return {}
    gens = [torch.Generator().manual_seed(int(s) + 1) for s in seeds]
    extra = {"eta": float(eta)} if sampler == "ddim" else {}
    return {**extra, "noise": lambda i: torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)}


def _to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [a for a in arr]


class DiffusionBackend(Backend):
    """The registry face of DiffusionPipeline: generate(conditions, seeds, size)."""

    name = FAMILY
    accepts = GUIDABLE

    def __init__(self, model: str | None = None, steps: int | None = None, guidance: float | dict | None = None,
                 sampler: str | None = None, batch_size: int = 16, progress: bool = False,
                 prompt_attributes: bool = True, eta: float = 0.0, guidance_window: tuple[float, float] | None = None,
                 precision: str = "fp32", layout_prior: bool | None = None, s_tmin: float = 0.0,
                 s_tmax: float | None = None):
        if sampler is not None:
            eta = check_eta(sampler, eta)
            check_s_window(sampler, eta, s_tmin, s_tmax)            # both before the weights load
        self.pipe = DiffusionPipeline.from_pretrained(model or DEFAULT_MODEL, precision=precision)
        defaults = self.pipe.sampling                               # what the call would take by itself
        steps = defaults["num_inference_steps"] if steps is None else steps
        guidance = defaults["guidance_scale"] if guidance is None else guidance
        if sampler is None:
            sampler = defaults["sampler"]
            eta = check_eta(sampler, eta)
            check_s_window(sampler, eta, s_tmin, s_tmax)
        self.accepts = self.pipe.modalities
        self.options = {"num_inference_steps": steps, "guidance_scale": _normalise_scale(guidance), "sampler": sampler,
                        "eta": eta, "guidance_window": guidance_window,
                        "s_tmin": s_tmin, "s_tmax": s_tmax,
                        "batch_size": batch_size, "progress": progress, "prompt_attributes": prompt_attributes,
                        "layout_prior": self.pipe.default_layout_prior if layout_prior is None else layout_prior}

    def _generate(self, conditions: list[Conditions], seeds: list[int], size: int) -> list[np.ndarray]:
        out = self.pipe(conditions=conditions, seeds=seeds, **self.options).images
        if size != self.pipe.size:
            out = [resize_image(im, size) for im in out]
        return out

    def edit(self, image: np.ndarray, source: Conditions, target: Conditions, steps: int = 50) -> np.ndarray:
        """The photo edited from its own conditions to the target ones, at the photo's size."""
        out = self.pipe.edit(image, source, target, num_inference_steps=steps, progress=False,
                             prompt_attributes=self.options["prompt_attributes"]).images[0]
        return out if out.shape[:2] == image.shape[:2] else resize_image(out, image.shape[:2])

    def reconstruct(self, image: np.ndarray, conditions: Conditions, steps: int = 50) -> np.ndarray:
        out = self.pipe.reconstruct(image, conditions, num_inference_steps=steps,
                                    prompt_attributes=self.options["prompt_attributes"])
        return out if out.shape[:2] == image.shape[:2] else resize_image(out, image.shape[:2])

    def describe(self) -> dict[str, Any]:
        from ...synth.layout import DEFAULT_MATCH as LAYOUT_MATCH
        return {"backend": self.name, "model": self.pipe.meta.get("path"), "size": self.pipe.size,
                "precision": self.pipe.precision, **{k: v for k, v in self.options.items() if k != "progress"},
                "layout_match": LAYOUT_MATCH if self.options["layout_prior"] else None}
