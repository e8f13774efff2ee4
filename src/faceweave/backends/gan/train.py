"""The GAN backend's model families as training tasks (train/tasks.py says what a task is).

    stylegan2   faceweave train stylegan2 --preset s --data facesynth:64 --out runs/stylegan2-64
    mask_ae     faceweave train mask_ae --preset s --data facesynth:64 --out runs/mask-ae-64
    sketch_ae   faceweave train sketch_ae --preset s --data facesynth:64 --out runs/sketch-ae-64
    gan_encoder faceweave train gan_encoder --preset s --data facesynth:64 --out runs/gan-encoder-64 \
                    --set generator=runs/stylegan2-64/best          (image -> W+, encoder_train.py)
    gan         faceweave train gan --preset s --data facesynth:64 --out runs/gan-64 \
                    --set generator=runs/stylegan2-64/best --set mask_ae=runs/mask-ae-64/best \
                    --set sketch_ae=runs/sketch-ae-64/best [--set encoder=runs/gan-encoder-64/best]
                (MM2Latent's mapper; the run's checkpoints hold every part: a whole gan model)

The StyleGAN2 step is one backward pass through `StyleGAN2.forward` (the discriminator's
logistic loss, the generator's non-saturating loss through a gradient-free copy of the
discriminator, and the lazy regularisers on their intervals), so the generic loop with one
AdamW optimiser trains it. Recipes follow the paper's config F where it matters (Adam
betas (0, 0.99), no weight decay, no gradient clipping, constant learning rate, R1 every 16
steps and path length every 4, an EMA generator), scaled down for 64 px on a CPU.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...models import stylegan2 as sg2
from ...train.tasks import unwrap

_GAN: dict[str, Any] = {
    "lr": 2e-3, "betas": [0.0, 0.99], "weight_decay": 0.0, "grad_clip": 0.0, "warmup_steps": 0,
    "min_lr_ratio": 1.0,          # constant learning rate (StyleGAN2 uses no schedule)
    "r1_gamma": 0.2,              # R1 weight gamma (Karras et al. use 0.0002 * pixels / batch ~ 0.1-1 at 64 px)
    "r1_every": 16,               # lazy R1: every N steps, weighted by N
    "pl_weight": 2.0,             # path length weight (0: off)
    "pl_every": 4,                # lazy path length: every N steps, weighted by N
    "style_mixing": 0.9,          # probability of two latents per batch (mixing regularisation)
    "augment": "off",             # "off", "ada" (adapt p towards ada_target) or a fixed p, e.g. "0.2"
    "ada_target": 0.6,            # ADA's r_t = E[sign(D(real))] target
    "ada_kimg": 100,              # images over which p can move from 0 to 1
    "sample_n": 16,               # the grid drawn at each validation (OUT/samples/)
}


class StyleGAN2Task:
    """StyleGAN2 (Karras et al. 2020) on face images; the score is -fd between EMA-generator
    samples and held-out real faces in the attribute classifier's feature space (the `fd`
    of `faceweave evaluate`)."""

    family = "stylegan2"
    architectures = sg2.PRESETS
    needs = ("image",)
    presets: dict[str, dict] = {
        "tiny": {**_GAN, "size": 32, "batch_size": 4, "max_steps": 20, "ckpt_every": 10, "eval_every": 0,
                 "log_every": 5, "val_n": 8, "workers": 0, "arch": "tiny", "sample_n": 4, "r1_every": 2,
                 "pl_every": 3},
        # the bundled CPU model: 64 px, narrow layers, batch 16
        "s": {**_GAN, "arch": "s", "size": 64, "batch_size": 16, "max_steps": 20_000, "ema_decay": 0.999,
              "ckpt_every": 250, "eval_every": 1000, "log_every": 50, "val_n": 256},
        # GPUs: a wider model and a larger batch
        "b": {**_GAN, "arch": "b", "size": 64, "batch_size": 64, "max_steps": 100_000, "ema_decay": 0.9978,
              "ckpt_every": 1000, "eval_every": 5000, "val_n": 1000, "workers": 6},
        "s128": {**_GAN, "arch": "s128", "size": 128, "batch_size": 32, "max_steps": 100_000,
                 "ema_decay": 0.9978, "ckpt_every": 1000, "eval_every": 5000, "val_n": 1000, "workers": 6},
    }

    def __init__(self):
        self._calls = 0
        self._classifier = None

    def build(self, config: dict) -> nn.Module:
        return sg2.StyleGAN2.from_config(config)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self._calls += 1
        k = self._calls
        r1 = float(cfg["r1_gamma"]) * cfg["r1_every"] if cfg["r1_gamma"] and k % cfg["r1_every"] == 0 else 0.0
        pl = float(cfg["pl_weight"]) * cfg["pl_every"] if cfg["pl_weight"] and k % cfg["pl_every"] == 0 else 0.0
        real = batch["image"].contiguous()
        loss, parts, real_logits = model(real, r1_gamma=r1, pl_weight=pl, style_mixing=float(cfg["style_mixing"]))
        self._adapt_augmentation(unwrap(model), real_logits, cfg)
        return loss, parts

    @staticmethod
    def _adapt_augmentation(model: nn.Module, real_logits: torch.Tensor, cfg: dict) -> None:
        """ADA (Karras et al. 2020b, sec. 3): raise p while the discriminator is over-confident on
        real images (E sign D(real) > target), lower it otherwise; a fixed p when given."""
        mode = str(cfg["augment"]).strip().lower()
        if mode == "off":
            return
        if mode != "ada":
            model.aug_p.fill_(float(mode))
            return
        sign = float(real_logits.sign().mean())
        step = real_logits.shape[0] / (float(cfg["ada_kimg"]) * 1000)
        model.aug_p.copy_((model.aug_p + np.sign(sign - float(cfg["ada_target"])) * step).clamp(0, 1))

    def _features(self, images: torch.Tensor) -> np.ndarray:
        """The classifier's features (classifier-64 reads every size once resampled to 64 px)."""
        from ...ruler import load_classifier
        if self._classifier is None:
            self._classifier = load_classifier(size=64)
        if images.shape[-1] != 64:
            images = F.interpolate(images.float(), size=(64, 64), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > 64)
        rgb = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return self._classifier.features(rgb)

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
        """n images from fixed latents (z of `seed`, constant noise): comparable across steps."""
        G = unwrap(model).generator
        z = torch.randn(n, G.config.z_dim, generator=torch.Generator().manual_seed(seed)).to(G.input.device)
        return torch.cat([G([z[i:i + 64]], randomize_noise=False)[0] for i in range(0, n, 64)])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        from ...eval.frechet import fd_from_features
        real = torch.cat([b["image"] for b in batches])
        fake = self.sample(model, real.shape[0], seed=12345)
        with warnings.catch_warnings():                      # a small validation set is expected here
            warnings.simplefilter("ignore")
            fd = fd_from_features(self._features(fake), self._features(real))
        return {"score": -fd, "fd": fd}

    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        from ...data.sheet import image_grid
        from ...io import write_png
        images = self.sample(model, int(cfg["sample_n"]))
        rgb = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(list(rgb), columns=8))


class ModalityAETask:
    """A mask or sketch autoencoder (modality_ae.py): cross-entropy (masks) or weighted
    BCE (sketches) of the reconstruction; the score is reconstruction mIoU or line F-score."""

    def __init__(self, kind: str):
        from . import modality_ae
        self.kind, self.family = kind, f"{kind}_ae"
        self.architectures = modality_ae.PRESETS[kind]
        self.needs = (kind,)
        base = {"lr": 2e-3, "weight_decay": 0.0, "warmup_steps": 100}
        self.presets = {
            "tiny": {**base, "arch": "tiny", "size": 32, "batch_size": 4, "max_steps": 20, "ckpt_every": 10,
                     "eval_every": 0, "log_every": 5, "val_n": 8, "workers": 0, "warmup_steps": 0},
            "s": {**base, "arch": "s", "size": 64, "batch_size": 32, "max_steps": 2_000, "ckpt_every": 250,
                  "eval_every": 500, "log_every": 50, "val_n": 256},
        }

    def build(self, config: dict) -> nn.Module:
        from .modality_ae import build_autoencoder
        return build_autoencoder(config)

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from .modality_ae import mask_ae_loss, sketch_ae_loss
        if self.kind == "mask":
            return mask_ae_loss(model, batch["mask"])
        return sketch_ae_loss(model, batch["sketch"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        from .modality_ae import mask_ae_scores, sketch_ae_scores
        x = torch.cat([b[self.kind] for b in batches])
        scores = mask_ae_scores(model, x) if self.kind == "mask" else sketch_ae_scores(model, x)
        key = "miou" if self.kind == "mask" else next(k for k in scores if k.startswith("f"))
        return {"score": scores[key], **scores}


def load_generator(ref: str) -> tuple[sg2.Generator, dict]:
    """The generator of a stylegan2 checkpoint (its EMA weights when the folder has them)."""
    from ... import checkpoint
    meta, state = checkpoint.load(ref, "stylegan2")
    folder = Path(meta["path"])
    if (folder / "ema.safetensors").exists():
        state = checkpoint.load_tensors(folder, "ema")
    G = sg2.Generator.from_config(meta["config"])
    checkpoint.load_into(G, {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")},
                         where=meta["path"])
    return G.eval().requires_grad_(False), meta


def load_discriminator(ref: str) -> sg2.Discriminator:
    """The discriminator of a stylegan2 training checkpoint, frozen (the mapper's perceptual
    space). Bundled generators and exports without one are a one-line error."""
    from ... import checkpoint
    from ...errors import FaceweaveError
    meta, state = checkpoint.load(ref, "stylegan2")
    disc = {k[len("discriminator."):]: v for k, v in state.items() if k.startswith("discriminator.")}
    if not disc:
        raise FaceweaveError(f"{meta['path']} holds no discriminator, which feature_weight needs; pass a "
                             "stylegan2 training checkpoint (runs/NAME/last) or --set feature_weight=0")
    D = sg2.Discriminator.from_config(meta["config"])
    checkpoint.load_into(D, disc, where=meta["path"])
    return D.eval().requires_grad_(False)


def feature_distance(critic: sg2.Discriminator, made: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """Mean over the discriminator's blocks of the L1 between the block features of `made` and
    `wanted`, each divided by the mean magnitude of `wanted`'s features there (so no block
    dominates by its scale). Gradients reach `made` only."""
    with torch.no_grad():
        targets = critic.block_features(wanted.float())
    total = made.new_zeros(())
    for a, b in zip(critic.block_features(made.float()), targets):
        total = total + (a - b).abs().mean() / b.abs().mean().clamp(min=1e-6)
    return total / len(targets)


def _load_part(ref: str, family: str) -> tuple[nn.Module, dict]:
    from ... import checkpoint
    from .modality_ae import build_autoencoder
    meta, state = checkpoint.load(ref, family)
    if family == "gan_encoder":
        from ...models.gan_encoder import GANEncoder
        model = GANEncoder.from_config(meta["config"])
    else:
        model = build_autoencoder(meta["config"])
    checkpoint.load_into(model, state, where=meta["path"])
    return model.eval().requires_grad_(False), meta


def extract_part(gan: str, part: str, dest: str) -> Path:
    """One part of a gan model ("mask_ae", "sketch_ae", "encoder", "generator") written as a
    checkpoint of its own family, so that a mapper for another generator can be trained with
    the same autoencoders: `--set mask_ae=DEST`."""
    from ... import checkpoint
    from ...errors import FaceweaveError
    families = {"mask_ae": "mask_ae", "sketch_ae": "sketch_ae", "encoder": "gan_encoder", "generator": "stylegan2"}
    if part not in families:
        raise FaceweaveError(f"unknown gan part {part!r}; choose one of {', '.join(families)}")
    meta, state = checkpoint.load(gan, "gan")
    if part not in meta["config"] or meta["config"][part] is None:
        raise FaceweaveError(f"{gan} has no {part}")
    own = {k[len(part) + 1:]: v.float() for k, v in state.items() if k.startswith(part + ".")}
    return checkpoint.save(dest, families[part], meta["config"][part], own, extracted_from=str(meta["path"]))


def attach_encoder(gan: str, encoder: str, dest: str, dtype: torch.dtype = torch.float16) -> Path:
    """A gan checkpoint with another run's inversion encoder put in: a mapper trained on
    generated pairs needs no encoder, so the one trained beside it (for the same generator)
    joins it for shipping. The generator configs must agree."""
    from ... import checkpoint
    from ...errors import FaceweaveError
    meta, state = checkpoint.load(gan, "gan")
    emeta, estate = checkpoint.load(encoder, "gan_encoder")
    if emeta["config"].get("generator") != meta["config"]["generator"]:
        raise FaceweaveError(f"the encoder {encoder} inverts another generator than the one in {gan}; "
                             "train it with --set generator= the gan model's generator")
    if (Path(emeta["path"]) / "ema.safetensors").exists():
        estate = checkpoint.load_tensors(emeta["path"], "ema")
    state = {**{k: v for k, v in state.items() if not k.startswith("encoder.")},
             **{f"encoder.{k}": v for k, v in estate.items()}}
    config = {**meta["config"], "encoder": emeta["config"]}
    extra = {k: v for k, v in meta.items() if k not in ("format", "format_version", "family", "config", "path")}
    return checkpoint.save(dest, "gan", config, state, dtype=dtype, **extra,
                           encoder_training=emeta.get("training") or {"path": emeta["path"], "step": emeta.get("step")})


def _rgb(images: torch.Tensor) -> np.ndarray:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def _layout(parser: nn.Module, size: int, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What a parser network (reading `size` px) sees in images (N, 3, S, S): the label maps
    (N, S, S) int64 and their boundaries as sketches (N, 1, S, S) in [0, 1]."""
    from ...io import sketch_from_mask
    from ...train.guide import _at_size
    logits = parser(_at_size(images, size)).float()
    if size != images.shape[-1]:
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    masks = logits.argmax(1)
    sketches = torch.from_numpy(np.stack([sketch_from_mask(m) for m in masks.to(torch.uint8).cpu().numpy()]))
    return masks, sketches.to(images.device).float().unsqueeze(1) / 255.0


class GANTask:
    """MM2Latent's mapper (mapper.py) on pairs the generator makes for itself.

    Each step samples w, renders G(w) with the constant noise, and reads the conditions off
    the picture as MM2Latent does: the mask by the bundled parser, the sketch as the parsed
    mask's part boundaries (FaceSynth's own sketches are drawn the same way, plus a few
    lines), and the text from the attribute classifier: the attributes it is confident of
    (p < 0.2 or > 0.8) become a caption in FaceSynth's caption grammar
    (text.captions_from_attributes), encoded by MiniLM. We have no CLIP to put images and
    text in one space, so this replaces the paper's image-side CLIP embedding. The mapper
    regresses w (the paper's latent loss) with every modality hidden at random (`drop`), so
    any subset works. Beyond the latent loss, two optional terms judge the face the mapped
    code renders against the pair's image (the generated face, or the real photo with
    pairs=inverted, so the mapper is no longer bounded by the encoder's codes): an L1 in pixels
    and a perceptual distance in the block features of the generator's own StyleGAN2
    discriminator (from the generator checkpoint; no network of the ruler is involved).
    Validation feeds the *true* conditions of held-out FaceSynth faces and scores the
    generated faces with the ruler (mask mIoU, attribute accuracy).

    Recipe keys beyond COMMON_DEFAULTS:
        generator, mask_ae, sketch_ae, encoder   checkpoints copied into the model (encoder optional)
        pairs          "generated" (the above), "inverted": real faces with their true captions,
                       masks and sketches, the target being the encoder's W+ code of the image
                       (needs encoder), or "projected": the same faces, the target being the
                       photo's code in a bank made by inverting every photo with projector
                       steps (`codes`; a mirrored sample, whose code is not in the bank, keeps
                       only the image, feature and mask terms)
        codes          the bank's file (scripts/project_codes.py), for pairs=projected
        drop           probability of hiding each modality per sample
        confident      classifier probabilities beyond this distance from 0.5 are named in captions
        truncation     psi of the sampled training latents (1: the full distribution)
        image_weight   weight of the pixel L1 between G(mapped code) and the pair's image (0: off)
        feature_weight weight of the L1 between the discriminator's block features of the two
                       images, each block's distance divided by its mean feature magnitude on
                       the target (0: off; needs the generator checkpoint's discriminator)
        mask_weight    weight of the cross-entropy between the pair's mask and what a guide
                       parser reads off G(mapped code), for the samples whose mask was given
                       (0: off); the guide is not the ruler: `guide_parser`, e.g. one made by
                       `faceweave train parser --preset guide64`
        iou_weight     weight of 1 - the soft mIoU between the pair's mask and the same guide
                       reading (train/guide.py soft_iou_loss; 0: off): the cross-entropy weighs
                       classes by their area, mIoU, which the ruler reports, weighs each class
                       alike, so eyes, brows, mouth and glasses pull as much as the background
        guide_parser   the guide's checkpoint folder (needed by mask_weight and iou_weight)
        noise          the generator's noise maps when the loss renders G(mapped code): "fixed"
                       (its stored buffers) or "random" (fresh maps per sample, drawn as the
                       backend draws one per seed), so the mapper learns codes whose layout
                       holds under the noise it is sampled with
        attr_weight    weight of the binary cross-entropy between the photo's known attributes
                       and what a guide classifier reads off G(mapped code), for the samples
                       whose text was given (0: off; pairs inverted or projected); the guide is
                       not a bundled classifier: `guide_classifier`, e.g. one made by
                       `faceweave train classifier --preset guide64 --data celebamask1k:64`
        sampled_n      with pairs inverted or projected: this many generated pairs joined to
                       each batch of photos (0: none): a random w of the generator, the face it
                       draws, the guide parser's reading of that face as mask (and its
                       boundaries as sketch), no text; the target is w itself. The photos teach
                       the mapper real layouts; these pairs teach it which codes draw a layout
                       the guide reads back (needs guide_parser)
        val_parser     the parser that scores validation (None: the bundled one of the size;
                       parser-real-64 for real photos)
    """
    # a model of real faces reads a photo's own conditions with the real-face parser
    # (data.unified.photo_instruments, recorded by the loop as config.json "instruments")
    reads_photos = True

    family = "gan"

    @staticmethod
    def sampling(cfg: dict) -> dict:
        """The sampling defaults written into the run's checkpoints (Pipeline.sampling)."""
        from .pipeline import GANPipeline
        return dict(GANPipeline.SAMPLING)

    @staticmethod
    def init_keeps(cfg: dict) -> tuple[str, ...]:
        """With init=, the frozen parts named by the recipe stay as loaded (a mapper carried
        over to a generator trained further); init= supplies the mapper."""
        return tuple(f"{part}." for part in ("generator", "mask_ae", "sketch_ae", "encoder") if cfg.get(part))

    @staticmethod
    def instruments(cfg: dict) -> dict:
        """The parser a trained model's pipeline reads photos with (edits), when the run named
        one: a model of real faces wants the real-face parser, not the FaceSynth default."""
        return {"parser": str(cfg["val_parser"])} if cfg.get("val_parser") else {}

    needs = ("image", "mask", "sketch", "attributes", "captions")
    _MAPPER = {"generator": None, "mask_ae": None, "sketch_ae": None, "encoder": None, "pairs": "generated",
               "codes": None, "drop": 0.3,
               "confident": 0.3, "truncation": 1.0, "weight_decay": 0.0, "sample_n": 8,
               "image_weight": 0.0, "feature_weight": 0.0, "mask_weight": 0.0, "iou_weight": 0.0, "noise": "fixed",
               "guide_parser": None, "val_parser": None, "attr_weight": 0.0, "guide_classifier": None, "sampled_n": 0}
    presets: dict[str, dict] = {
        "tiny": {**_MAPPER, "arch": "tiny", "size": 32, "batch_size": 4, "max_steps": 20, "ckpt_every": 10,
                 "eval_every": 0, "log_every": 5, "val_n": 8, "workers": 0, "lr": 1e-3, "warmup_steps": 0,
                 "sample_n": 4},
        "s": {**_MAPPER, "arch": "s", "size": 64, "batch_size": 32, "max_steps": 3_000, "lr": 1e-3,
              "warmup_steps": 100, "ema_decay": 0.995, "ckpt_every": 250, "eval_every": 500, "log_every": 50,
              "val_n": 128, "workers": 0},
    }

    def __init__(self):
        self._helpers: dict[str, Any] = {}
        self._codes: dict[str, torch.Tensor] = {}
        self._calls = 0

    @property
    def architectures(self):
        from .mapper import PRESETS
        return PRESETS

    def build(self, config: dict) -> nn.Module:
        from .mm2latent import MM2Latent
        return MM2Latent.from_config(config)

    def init_model(self, cfg: dict) -> nn.Module:
        """Mapper config from the arch, fitted to the generator and autoencoders; the frozen
        parts' configs and weights copied in."""
        from ...errors import FaceweaveError
        missing = [k for k in ("generator", "mask_ae", "sketch_ae") if not cfg.get(k)]
        if missing:
            raise FaceweaveError(f"faceweave train gan needs {', '.join(missing)}: e.g. --set "
                                 "generator=runs/stylegan2-64/best --set mask_ae=runs/mask-ae-64/best "
                                 "--set sketch_ae=runs/sketch-ae-64/best")
        G, gmeta = load_generator(cfg["generator"])
        mask_ae, mmeta = _load_part(cfg["mask_ae"], "mask_ae")
        sketch_ae, smeta = _load_part(cfg["sketch_ae"], "sketch_ae")
        encoder, emeta = _load_part(cfg["encoder"], "gan_encoder") if cfg.get("encoder") else (None, None)
        if cfg["pairs"] not in ("generated", "inverted", "projected"):
            raise FaceweaveError(f"pairs must be 'generated', 'inverted' or 'projected', got {cfg['pairs']!r}")
        if cfg["pairs"] == "inverted" and encoder is None:
            raise FaceweaveError("pairs=inverted needs an inversion encoder: --set encoder=runs/gan-encoder-64/best")
        if cfg["pairs"] == "projected":
            from ...checkpoint import fingerprint
            from .codes import codes_for
            self._codes = codes_for(cfg.get("codes"), fingerprint(G.state_dict()), "pairs=projected")
        if G.config.size != cfg["size"]:
            raise FaceweaveError(f"the generator makes {G.config.size} px faces but this run is at {cfg['size']} px; "
                                 f"pass --set size={G.config.size}")
        mapper_cfg = dict(cfg["model"].get("mapper") or cfg["model"])    # a resumed run stored the whole model
        code = cfg["size"] // mask_ae.config.factor
        mapper_cfg.update(w_dim=G.config.w_dim, num_ws=G.config.num_ws, code_size=code,
                          mask_code_channels=mask_ae.config.code_channels,
                          sketch_code_channels=sketch_ae.config.code_channels)
        cfg["model"] = {"generator": gmeta["config"], "mask_ae": mmeta["config"], "sketch_ae": smeta["config"],
                        "mapper": mapper_cfg, "encoder": emeta["config"] if emeta else None}
        model = self.build(cfg["model"])
        model.generator.load_state_dict(G.state_dict())
        model.mask_ae.load_state_dict(mask_ae.state_dict())
        model.sketch_ae.load_state_dict(sketch_ae.state_dict())
        if encoder is not None:
            model.encoder.load_state_dict(encoder.state_dict())
        for part in (model.generator, model.mask_ae, model.sketch_ae, model.encoder):
            if part is not None:
                part.requires_grad_(False)
        model.mapper.set_w_avg(model.generator.w_avg)
        return model

    def setup(self, cfg: dict, device) -> None:
        from ...models.text_encoder import TextEncoder
        from ...ruler import load_classifier, load_parser
        if "text" not in self._helpers:
            self._helpers["text"] = TextEncoder(device=device)
        self._helpers["parser"] = load_parser(cfg.get("val_parser") or None, size=64, device=device)
        self._helpers["classifier"] = load_classifier(size=64, device=device)
        if float(cfg.get("feature_weight") or 0) > 0:
            self._helpers["critic"] = load_discriminator(cfg["generator"]).to(device)
        if int(cfg.get("sampled_n") or 0) > 0 and cfg["pairs"] == "generated":
            from ...errors import FaceweaveError
            raise FaceweaveError("sampled_n joins generated pairs to photos: use it with pairs=inverted or "
                                 "pairs=projected")
        if cfg.get("noise", "fixed") not in ("fixed", "random"):
            from ...errors import FaceweaveError
            raise FaceweaveError(f"noise={cfg.get('noise')!r}: use noise=fixed or noise=random")
        if (float(cfg.get("mask_weight") or 0) > 0 or float(cfg.get("iou_weight") or 0) > 0
                or int(cfg.get("sampled_n") or 0) > 0):
            from ...train.guide import load_guide
            self._helpers["guide"] = load_guide(cfg.get("guide_parser"), device, ruler=cfg.get("val_parser"))
        if float(cfg.get("attr_weight") or 0) > 0:
            from ...errors import FaceweaveError
            from ...train.guide import load_guide_classifier
            if cfg["pairs"] == "generated":
                raise FaceweaveError("attr_weight reads the photos' own labels: use it with pairs=inverted or "
                                     "pairs=projected")
            self._helpers["guide_classifier"] = load_guide_classifier(cfg.get("guide_classifier"), device)

    def _at64(self, images: torch.Tensor) -> torch.Tensor:
        from ...train.guide import _at_size
        return _at_size(images, 64)

    @torch.no_grad()
    def pairs(self, model: nn.Module, n: int, cfg: dict, generator: torch.Generator) -> dict[str, Any]:
        """n generated training pairs: w (N, w_dim), image, mask, sketch, captions, text vectors."""
        from ...text import captions_from_attributes
        G = model.generator
        dev = G.input.device
        z = torch.randn(n, G.config.z_dim, generator=generator).to(dev)
        w = G.get_latent(z)
        if cfg["truncation"] < 1:
            w = torch.lerp(G.w_avg[None], w, float(cfg["truncation"]))
        images = G([w], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
        small = self._at64(images)
        masks, sketches = _layout(self._helpers["parser"].model, 64, images)
        clf = self._helpers["classifier"]
        probs = torch.sigmoid(clf.model(small).float()).cpu().numpy()
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 31, (), generator=generator)))
        margin = float(cfg["confident"])
        captions = []
        for row in probs:
            attrs = {a: int(p > 0.5) for a, p in zip(clf.attributes, row) if abs(p - 0.5) >= margin}
            captions.append(captions_from_attributes(attrs, rng, n=1)[0] if attrs else "a face")
        text = self._helpers["text"].encode(captions).pooled.to(dev)
        return {"w": w, "images": images, "mask": masks, "sketch": sketches, "captions": captions, "text": text}

    @torch.no_grad()
    def inverted_pairs(self, model: nn.Module, batch: dict, generator: torch.Generator,
                       encode: bool = True) -> dict[str, Any]:
        """Pairs from the data's faces: their own caption (one at random), mask and sketch,
        and the W+ code the inversion encoder finds for the image (encode=False: none)."""
        pick = torch.randint(0, 1 << 30, (len(batch["captions"]),), generator=generator).tolist()
        captions = [c[k % len(c)] if c else "" for c, k in zip(batch["captions"], pick)]
        text = self._helpers["text"].encode(captions).pooled.to(batch["image"].device)
        return {"w": model.encoder(batch["image"]) if encode else None, "mask": batch["mask"],
                "sketch": batch["sketch"], "captions": captions, "text": text}

    @torch.no_grad()
    def projected_pairs(self, model: nn.Module, batch: dict, generator: torch.Generator) -> dict[str, Any]:
        """inverted_pairs with the bank's code of each photo as the target; `known` is 0 for a
        sample the bank has no code for (a mirrored photo, a file not projected)."""
        from .codes import known as in_bank
        pair = self.inverted_pairs(model, batch, generator, encode=False)
        known = in_bank(self._codes, batch)
        device = batch["image"].device
        shape = next(iter(self._codes.values())).shape
        pair["w"] = torch.stack([self._codes[f] if k else torch.zeros(shape)
                                 for f, k in zip(batch["file"], known)]).to(device)
        pair["known"] = torch.tensor(known, dtype=torch.float32, device=device)
        return pair

    @torch.no_grad()
    def sampled_pairs(self, model: nn.Module, n: int, generator: torch.Generator) -> dict[str, Any]:
        """n pairs drawn from the generator and read by the guide parser (sampled_n): w as W+
        (n, num_ws, w_dim), the image, the guide's mask and its boundaries as sketch, a blank
        text vector (the text is hidden from the mapper)."""
        G = model.generator
        dev = G.input.device
        z = torch.randn(n, G.config.z_dim, generator=generator).to(dev)
        w = G.get_latent(z)
        images = G([w], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
        masks, sketches = _layout(*self._helpers["guide"], images)
        return {"w": w[:, None].expand(-1, G.num_ws, -1), "images": images, "mask": masks, "sketch": sketches,
                "text": torch.zeros(n, model.mapper.config.text_dim, device=dev)}

    def _join_sampled(self, pair: dict, batch: dict, model: nn.Module, k: int, generator: torch.Generator) -> dict:
        """The photos' pairs followed by k sampled ones; `known` (whose code is a target) and
        `images` (what the rendered code is compared with) cover both."""
        extra = self.sampled_pairs(model, k, generator)
        n, dev = pair["mask"].shape[0], pair["mask"].device
        known = pair.get("known", torch.ones(n, device=dev))
        return {"w": torch.cat([pair["w"].float(), extra["w"].float()]),
                "mask": torch.cat([pair["mask"].long(), extra["mask"].long()]),
                "sketch": torch.cat([pair["sketch"].float(), extra["sketch"].float()]),
                "text": torch.cat([pair["text"].float(), extra["text"].float()]),
                "images": torch.cat([batch["image"].float(), extra["images"].float()]),
                "known": torch.cat([known, torch.ones(k, device=dev)]), "photos": n}

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        from ...train.guide import guide_mask_losses
        from .mapper import modality_dropout
        bare = unwrap(model)
        self._calls += 1
        gen = torch.Generator().manual_seed(cfg["seed"] * 7919 + self._calls)
        if cfg["pairs"] == "inverted":
            pair = self.inverted_pairs(bare, batch, gen)
        elif cfg["pairs"] == "projected":
            pair = self.projected_pairs(bare, batch, gen)
        else:
            pair = self.pairs(bare, batch["image"].shape[0], cfg, gen)
        sampled = int(cfg.get("sampled_n") or 0)
        if sampled > 0:
            pair = self._join_sampled(pair, batch, bare, sampled, gen)
        n = pair["w"].shape[0]
        photos = pair.get("photos", n)                 # the rows that are the data's own faces
        present = modality_dropout(torch.ones(n, 3, dtype=torch.bool), float(cfg["drop"]), gen).to(pair["w"].device)
        present[photos:, 0] = False                   # sampled pairs have no text
        pred = bare.map(text=pair["text"], mask=pair["mask"], sketch=pair["sketch"], present=present)
        target = pair["w"][:, None].expand_as(pred) if pair["w"].ndim == 2 else pair["w"]
        if "known" in pair:               # only the samples whose code the bank holds
            known = pair["known"]
            per = (pred.float() - target).square().mean(dim=(1, 2))
            mse = (per * known).sum() / known.sum().clamp(min=1)
        else:
            mse = (pred.float() - target).square().mean()
        logs = {"w_mse": float(mse.detach()), "kept": float(present.float().mean())}
        total = mse
        image_weight, feature_weight = float(cfg["image_weight"]), float(cfg["feature_weight"])
        mask_weight, iou_weight = float(cfg.get("mask_weight") or 0), float(cfg.get("iou_weight") or 0)
        noise = bare.generator.make_noise(n, gen) if cfg.get("noise") == "random" else None

        def render() -> torch.Tensor:
            return bare.generator([pred], input_is_latent=True, noise=noise, randomize_noise=False)[0]

        made = None
        if image_weight > 0 or feature_weight > 0:
            wanted = pair["images"] if "images" in pair else batch["image"]
            made = render()
            if image_weight > 0:
                l1 = (made.float() - wanted.float()).abs().mean()
                total = total + image_weight * l1
                logs["image_l1"] = float(l1.detach())
            if feature_weight > 0:
                dist = feature_distance(self._helpers["critic"], made, wanted)
                total = total + feature_weight * dist
                logs["feature"] = float(dist.detach())
        if mask_weight > 0 or iou_weight > 0:
            given = present[:, 1].float()                                  # hidden masks owe nothing
            if made is None:
                made = render()
            ce, iou = guide_mask_losses(self._helpers["guide"], made, pair["mask"], given)
            total = total + mask_weight * ce + iou_weight * iou
            logs["mask_ce"] = float(ce.detach())
            if iou_weight > 0:
                logs["mask_iou_loss"] = float(iou.detach())
        attr_weight = float(cfg.get("attr_weight") or 0)
        if attr_weight > 0:
            from ...train.guide import guide_bce
            told = present[:photos, 0].float()
            if made is None:
                made = render()
            bce = (guide_bce(self._helpers["guide_classifier"], made[:photos], batch["attributes"]) * told).mean()
            total = total + attr_weight * bce                                  # hidden texts owe nothing
            logs["attr_bce"] = float(bce.detach())
        return total, logs

    @torch.no_grad()
    def generate_from_batch(self, model: nn.Module, batch: dict, which: tuple[str, ...]) -> torch.Tensor:
        """Images from held-out faces' true conditions (`which` of text, mask, sketch)."""
        bare = unwrap(model)
        n = batch["image"].shape[0]
        captions = [c[0] if c else "" for c in batch["captions"]]
        text = self._helpers["text"].encode(captions).pooled.to(batch["image"].device)
        present = torch.tensor([[m in which for m in ("text", "mask", "sketch")]] * n, device=text.device)
        w = bare.map(text=text, mask=batch["mask"], sketch=batch["sketch"], present=present)
        return bare.generator([w], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        from ...conditions import ATTRIBUTE_INDEX
        from ...eval.metrics import attribute_accuracy, mask_scores
        parser, clf = self._helpers["parser"], self._helpers["classifier"]
        cols = [ATTRIBUTE_INDEX[a] for a in clf.attributes]
        out: dict[str, float] = {}
        for name, which in (("all", ("text", "mask", "sketch")), ("text", ("text",)), ("mask", ("mask",))):
            preds, targets, probs, wanted = [], [], [], []
            for batch in batches:
                small = self._at64(self.generate_from_batch(model, batch, which))
                logits = parser.model(small).float()
                if batch["mask"].shape[-1] != 64:
                    logits = F.interpolate(logits, size=batch["mask"].shape[-2:], mode="bilinear",
                                           align_corners=False)
                preds.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
                targets.append(batch["mask"].to(torch.uint8).cpu().numpy())
                probs.append(torch.sigmoid(clf.model(small).float()).cpu().numpy())
                wanted.append(batch["attributes"][:, cols].cpu().numpy())
            out[f"miou_{name}"] = mask_scores(np.concatenate(preds), np.concatenate(targets))["miou"]
            out[f"attr_acc_{name}"] = attribute_accuracy(np.concatenate(probs), np.concatenate(wanted),
                                                         names=list(clf.attributes))["attr_acc"]
        out["score"] = (out["miou_all"] + out["attr_acc_all"]) / 2
        return out

    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        from ...conditions import colorize_mask
        from ...data.sheet import image_grid
        from ...io import write_png
        batch = {k: v[: int(cfg["sample_n"])] for k, v in batches[0].items()}
        rows = []
        made = {w: _rgb(self.generate_from_batch(model, batch, w)) for w in
                (("text", "mask", "sketch"), ("text",), ("mask",), ("sketch",))}
        for i in range(batch["image"].shape[0]):
            sketch = (batch["sketch"][i, 0].cpu().numpy() * 255).astype(np.uint8)
            rows += [_rgb(batch["image"][i:i + 1])[0], colorize_mask(batch["mask"][i].cpu().numpy().astype(np.uint8)),
                     np.repeat(sketch[..., None], 3, 2), *[m[i] for m in made.values()]]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(rows, columns=7))


# the two modality autoencoders share one task class
MASK_AE = ModalityAETask("mask")
SKETCH_AE = ModalityAETask("sketch")


def tiny_checkpoint(root: Path) -> Path:
    """A whole tiny gan model (32 px: generator, autoencoders, inversion encoder, mapper), each
    part trained a few steps on FaceSynth: the contract tests' gan model. Returns ROOT/gan/last."""
    from ...train.loop import train
    root = Path(root)
    for family in ("stylegan2", "mask_ae", "sketch_ae"):
        train(family, "tiny", "facesynth:32", root / family, overrides={"max_steps": 4}, progress=False)
    train("gan_encoder", "tiny", "facesynth:32", root / "encoder", progress=False,
          overrides={"max_steps": 4, "generator": str(root / "stylegan2" / "last")})
    train("gan", "tiny", "facesynth:32", root / "gan", progress=False,
          overrides={"max_steps": 6, "generator": str(root / "stylegan2" / "last"),
                     "mask_ae": str(root / "mask_ae" / "last"), "sketch_ae": str(root / "sketch_ae" / "last"),
                     "encoder": str(root / "encoder" / "last")})
    return root / "gan" / "last"
