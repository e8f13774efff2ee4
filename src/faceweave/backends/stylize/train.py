"""Training the stylizer (train/tasks.py says what a task is): two families, four stages.

    # the joint image-text space: a small image encoder against frozen MiniLM (styles.py pairs)
    faceweave train stylize_joint --preset s --data celebamask1k:64:photos --out runs/stylize-joint
    # stage 1: the encoder, aligned to a frozen StyleGAN2 (photos reconstructed through its decoder)
    faceweave train stylize --preset encoder --data celebamask1k:64:photos --out runs/stylize-enc \
        --set generator=stylegan2-64-real
    # stage 2: the decoder fine-tuned on an artistic domain (a named filter or a folder of images)
    faceweave train stylize --preset domain --data celebamask1k:64:photos --out runs/stylize-cartoon \
        --set base=runs/stylize-enc/best --set style=cartoon
    # zero-shot: the text -> W+ mapper, trained with the directional image-text loss
    faceweave train stylize --preset text --data celebamask1k:64:photos --out runs/stylize-text \
        --set base=runs/stylize-enc/best --set joint=runs/stylize-joint/best

Stage 1 (`stage=encoder`): the generator and its decoder layers stay frozen.
Per step, photos are reconstructed (encoder, then the decoder at the generator's average
codes) under an L1 loss at three scales plus `fm_weight` times the L1 distance of the frozen
discriminator's block features (feature matching); and faces the generator draws (its own
codes up to split, the average codes above, so the decoder reproduces them exactly) give
the encoder its alignment target: the generator's own features and RGB skip at split
(`align_weight`, mean squared error).

Stage 2 (`stage=domain`): the encoder is frozen; the decoder learns to make
the domain (`style`: a named filter of styles.py applied to other photos of the batch, or a
folder of images) against the critic (non-saturating logistic loss, the generator's
discriminator as the start), while `structure_weight` times a structure loss keeps the face:
the L1 distance of the normalised luminance of the output and the photo at a quarter of the
side (layout and shading, not colour or texture).

Zero-shot (`stage=text`): only the mapper trains. A description of styles.py
is embedded by MiniLM; the mapper moves the decoder's codes and re-colours its RGB skip; the directional loss
1 - cos(J(out) - J(neutral), T(text) - T("a photo of a face")) (J: the joint space's image
encoder, frozen; neutral: the same photo without the text) plus `global_weight` times
1 - cos(J(out), T(text)) and the structure loss against the neutral output.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FaceweaveError
from ...train.tasks import TINY_RUN, unwrap
from . import styles
from .networks import JointConfig, JointImageEncoder, Stylizer, StylizerConfig, synthesis_until

STAGES = ("encoder", "domain", "text")
# a stylize call's defaults (StylizePipeline.SAMPLING; a checkpoint's "sampling" block overrides them)
SAMPLING: dict[str, Any] = {"strength": 1.0, "tune_steps": 100, "tune_lr": 5e-3, "colour_lr": 1e-2,
                            "style_weight": 3.0, "colour_weight": 1.0, "structure_weight": 1.0,
                            "style_statistic": "gram", "style_features": "parser-64", "style_blocks": 2}
TEXT_DIM = 384


@dataclasses.dataclass
class StylizeArch:
    split: int = 16              # side where the encoder hands over to the decoder
    encoder_width: int = 64      # the encoder's first-layer channels
    mapper_width: int = 256      # the zero-shot mapper's hidden units


_COMMON: dict[str, Any] = {"stage": "encoder", "generator": None, "base": None, "style": None, "joint": None,
                           "fm_weight": 0.1, "align_weight": 1.0, "structure_weight": 2.0, "adv_weight": 0.5,
                           "global_weight": 0.5, "offset_reg": 1e-3, "weight_decay": 0.0, "sample_n": 8,
                           "betas": [0.0, 0.99], "workers": 0, "ema_decay": 0.0}
_RUN64: dict[str, Any] = {"size": 64, "batch_size": 8, "warmup_steps": 20, "ckpt_every": 50, "eval_every": 100,
                          "log_every": 10, "val_n": 32}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(images, device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(np.stack(images))).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def structure(a: torch.Tensor, b: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """L1 distance of the per-image normalised luminance at 1/factor of the side: the face's
    layout and shading, blind to colour and fine texture (the look a style may change)."""
    def luma(x):
        y = F.avg_pool2d((0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None], factor)
        return (y - y.mean((2, 3), keepdim=True)) / (y.std((2, 3), keepdim=True) + 1e-3)
    return (luma(a.float()) - luma(b.float())).abs().mean()


def multiscale_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    loss = (a - b).abs().mean()
    for factor in (2, 4):
        loss = loss + (F.avg_pool2d(a, factor) - F.avg_pool2d(b, factor)).abs().mean()
    return loss / 3


def load_stylegan(ref: str) -> tuple[dict, dict, dict]:
    """A stylegan2 checkpoint's config, generator weights (EMA when it has them) and
    discriminator weights."""
    from ... import checkpoint
    meta, state = checkpoint.load(ref, "stylegan2")
    folder = Path(meta["path"])
    gen_state = checkpoint.load_tensors(folder, "ema") if (folder / "ema.safetensors").exists() else state
    take = lambda s, prefix: {k[len(prefix):]: v for k, v in s.items() if k.startswith(prefix)}   # noqa: E731
    return meta, take(gen_state, "generator."), take(state, "discriminator.")


def load_joint(ref: str) -> JointImageEncoder:
    from ... import checkpoint
    meta, state = checkpoint.load(ref, "stylize_joint")
    model = JointImageEncoder.from_config(meta["config"])
    checkpoint.load_into(model, state, where=meta["path"])
    return model.eval().requires_grad_(False)


def _text_table(descriptions: list[str]) -> torch.Tensor:
    from ...models.text_encoder import TextEncoder
    return TextEncoder().encode(descriptions, batched=True).pooled


class StylizeTask:
    family = "stylize"
    needs = ("image",)
    architectures = {"tiny": StylizeArch(split=16, encoder_width=8, mapper_width=32),
                     "s": StylizeArch(split=32, encoder_width=64, mapper_width=256),
                     "s16": StylizeArch(split=16, encoder_width=64, mapper_width=256)}
    presets: dict[str, dict] = {
        "tiny": {**_COMMON, **TINY_RUN, "arch": "tiny", "lr": 2e-3, "sample_n": 2},
        # the encoder is not a GAN player: plain Adam momentum (the GAN stages keep beta1 = 0)
        # the measured runs of docs/stylize.md (2-core CPU: about 22, 33 and 6 minutes)
        "encoder": {**_COMMON, **_RUN64, "arch": "s", "lr": 1e-3, "betas": [0.9, 0.999], "max_steps": 700},
        "domain": {**_COMMON, **_RUN64, "stage": "domain", "arch": "s", "lr": 5e-4, "max_steps": 300},
        # a stronger pull of the text's offsets towards zero: without it the mapper drifts to
        # saturated colours the joint space over-rewards (docs/stylize.md, limits)
        "text": {**_COMMON, **_RUN64, "stage": "text", "arch": "s", "lr": 5e-4, "max_steps": 300, "offset_reg": 0.05,
                 "eval_every": 50, "ckpt_every": 50},
    }

    def __init__(self):
        self._parts: dict[str, Any] = {}
        self._calls = 0

    @staticmethod
    def sampling(cfg: dict) -> dict:
        """Nothing a training run learns: the one-shot settings are the pipeline's own (SAMPLING),
        which a checkpoint's "sampling" block may override (checkpoint.update_config)."""
        return {}

    def build(self, config: dict) -> nn.Module:
        return Stylizer.from_config(config["stylizer"])

    # -- the model of a stage ------------------------------------------------------------------
    def init_model(self, cfg: dict) -> nn.Module:
        from ... import checkpoint
        stage = cfg["stage"]
        if stage not in STAGES:
            raise FaceweaveError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
        model_cfg = cfg["model"]
        if "stylizer" in model_cfg:                       # a resumed run: the loop loads its weights
            model = self.build(model_cfg)
        elif stage == "encoder":
            if not cfg.get("generator"):
                raise FaceweaveError("stage encoder needs the StyleGAN2 prior: --set generator=stylegan2-64 "
                                     "(or the real-face stylegan2-64-real, or a stylegan2 checkpoint folder)")
            gmeta, gen, disc = load_stylegan(str(cfg["generator"]))
            if gmeta["config"]["size"] != cfg["size"]:
                raise FaceweaveError(f"the generator makes {gmeta['config']['size']} px faces but this run trains at "
                                     f"{cfg['size']} px; pass --set size={gmeta['config']['size']}")
            arch = StylizerConfig(generator=gmeta["config"], split=model_cfg["split"],
                                  encoder_width=model_cfg["encoder_width"], mapper_width=model_cfg["mapper_width"])
            model = Stylizer(arch)
            checkpoint.load_into(model.generator, gen, where=gmeta["path"])
            checkpoint.load_into(model.critic, disc, where=gmeta["path"])
            model.reset_decoder()
            cfg["model"] = {"stylizer": dataclasses.asdict(arch), "stages": ["encoder"],
                            "generator": {"model": str(cfg["generator"]),
                                          "fingerprint": checkpoint.fingerprint(model.generator.state_dict())}}
        else:
            if not cfg.get("base"):
                raise FaceweaveError(f"stage {stage} starts from a trained stylizer: --set base=runs/stylize-enc/last "
                                     "(a stage-encoder run)")
            meta, state = checkpoint.load(str(cfg["base"]), "stylize")
            arch = StylizerConfig(**meta["config"]["stylizer"])
            if stage == "text":
                arch = dataclasses.replace(arch, text_dim=TEXT_DIM, mapper_width=model_cfg["mapper_width"])
            model = Stylizer(arch)
            own = model.state_dict()
            state = {k: v for k, v in state.items() if k in own}
            state.update({k: v for k, v in own.items() if k not in state})      # a new mapper starts fresh
            checkpoint.load_into(model, state, where=meta["path"])
            cfg["model"] = {**{k: v for k, v in meta["config"].items() if k != "stylizer"},
                            "stylizer": dataclasses.asdict(arch),
                            "stages": [*meta["config"].get("stages", []), stage], "base": str(cfg["base"])}
            if stage == "domain":
                cfg["model"]["domain"] = self._domain_name(cfg)
        if stage == "text" and not cfg.get("joint"):
            raise FaceweaveError("stage text needs the joint image-text space: --set joint=runs/stylize-joint/last "
                                 "(faceweave train stylize_joint)")
        if stage == "domain":
            self._domain_name(cfg)
        trains = {"encoder": ("encoder",), "domain": ("decoder", "critic"), "text": ("mapper",)}[stage]
        model.requires_grad_(False)
        for name in trains:
            getattr(model, name).requires_grad_(True)
        for block in model.decoder.convs:                 # grain is not a style (pipeline.tune keeps them too)
            block.noise.requires_grad_(False)
        return model

    @staticmethod
    def _domain_name(cfg: dict) -> str:
        spec = cfg.get("style")
        if not spec:
            raise FaceweaveError("stage domain needs the artistic domain: --set style=cartoon (a named filter: "
                                 f"{', '.join(styles.FILTERS)}) or --set style=FOLDER of style images")
        if Path(str(spec)).expanduser().is_dir():
            return str(spec)
        name, colour = styles.parse_domain(str(spec))
        return name + colour

    def setup(self, cfg: dict, device) -> None:
        stage = cfg["stage"]
        if stage == "domain":
            spec = str(cfg["style"])
            if Path(spec).expanduser().is_dir():
                from .pipeline import read_style_folder
                self._parts["style_images"] = read_style_folder(spec, cfg["size"])
            else:
                self._parts["domain"] = styles.parse_domain(spec)
        if stage == "text" and "joint" not in self._parts:
            self._parts["joint"] = load_joint(str(cfg["joint"])).to(device)
            texts = [t for t in styles.DESCRIPTIONS if styles.FACESYNTH not in t]
            self._parts["texts"] = texts
            table = _text_table([*texts, styles.NEUTRAL])
            self._parts["text_table"], self._parts["neutral"] = table[:-1].to(device), table[-1].to(device)

    # -- losses --------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self._calls += 1
        gen = torch.Generator().manual_seed(cfg["seed"] * 7919 + self._calls)
        return getattr(self, f"_loss_{cfg['stage']}")(model, batch["image"].float(), cfg, gen)

    def _loss_encoder(self, model, x, cfg, gen):
        m = unwrap(model)
        recon = model(x)
        l1 = multiscale_l1(recon, x)
        fm = sum((a - b).abs().mean() for a, b in zip(m.critic.block_features(recon), m.critic.block_features(x)))
        # alignment: a face the generator draws from its own codes below split and the average above
        G, first = m.generator, m.config.first_code
        with torch.no_grad():
            z = torch.randn(x.shape[0], G.config.z_dim, generator=gen).to(x.device)
            psi = torch.rand(x.shape[0], 1, generator=gen).to(x.device) * 0.4 + 0.6
            w = torch.lerp(G.w_avg[None], G.get_latent(z), psi)[:, None].expand(-1, G.num_ws, -1)
            w = torch.cat([w[:, :first], m.neutral_wplus(x.shape[0])[:, first:]], 1)
            feat, skip = synthesis_until(G, w, m.config.first_block - 1)
            drawn = m.decoder(feat, skip, w).clamp(-1, 1)
        e_feat, e_skip = m.encoder(drawn)
        align = F.mse_loss(e_feat, feat) + F.mse_loss(e_skip, skip)
        loss = l1 + cfg["fm_weight"] * fm + cfg["align_weight"] * align
        return loss, {"l1": float(l1.detach()), "fm": float(fm.detach()), "align": float(align.detach())}

    def _style_batch(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Images of the domain: a folder's images at random, or the batch's other photos filtered."""
        rng = np.random.default_rng(int(torch.randint(1 << 30, (1,), generator=gen)))
        if "style_images" in self._parts:
            pool = self._parts["style_images"]
            picks = [pool[i] for i in rng.integers(len(pool), size=x.shape[0])]
            picks = [p[:, ::-1] if rng.random() < 0.5 else p for p in picks]
        else:
            name, colour = self._parts["domain"]
            picks = [styles.apply(p, name, colour, rng) for p in to_uint8(x.roll(1, 0))]
        return to_tensor(picks, x.device)

    def _loss_domain(self, model, x, cfg, gen):
        m = unwrap(model)
        real = self._style_batch(x, gen)
        fake = model(x)
        d_loss = F.softplus(m.critic(fake.detach())).mean() + F.softplus(-m.critic(real)).mean()
        frozen = {name: t.detach() for name, t in m.critic.named_parameters()}
        g_loss = F.softplus(-torch.func.functional_call(m.critic, frozen, (fake,))).mean()
        struct = structure(fake, x)
        loss = d_loss + cfg["adv_weight"] * g_loss + cfg["structure_weight"] * struct
        return loss, {"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach()), "structure": float(struct.detach())}

    def _text_pick(self, n: int, gen: torch.Generator) -> tuple[list[str], torch.Tensor]:
        idx = torch.randint(len(self._parts["texts"]), (n,), generator=gen)
        return [self._parts["texts"][i] for i in idx], self._parts["text_table"][idx]

    def _directional(self, m, x, text_emb, cfg):
        joint, neutral_t = self._parts["joint"], self._parts["neutral"]
        with torch.no_grad():
            neutral = m(x)
            j_neutral = joint(neutral)
        mapped = m.mapper(text_emb)
        out = m(x, mapped)
        j_out = joint(out)
        direction = 1 - F.cosine_similarity(j_out - j_neutral, text_emb - neutral_t[None], dim=1).mean()
        glob = 1 - F.cosine_similarity(j_out, text_emb, dim=1).mean()
        struct = structure(out, neutral)
        reg = mapped[0].square().mean() + mapped[1].square().mean()
        loss = direction + cfg["global_weight"] * glob + cfg["structure_weight"] * struct + cfg["offset_reg"] * reg
        return loss, out, {"direction": float(direction.detach()), "global": float(glob.detach()),
                           "structure": float(struct.detach()), "offset": float(reg.detach())}

    def _loss_text(self, model, x, cfg, gen):
        _, emb = self._text_pick(x.shape[0], gen)
        loss, _, parts = self._directional(unwrap(model), x, emb.to(x.device), cfg)
        return loss, parts

    # -- validation ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        m, stage = unwrap(model), cfg["stage"]
        sums: dict[str, float] = {}
        count = 0
        for i, batch in enumerate(batches):
            x = batch["image"].float()
            if stage == "encoder":
                out = m(x)
                parts = {"l1": float((out - x).abs().mean()),
                         "psnr": float((10 * torch.log10(4 / ((out.clamp(-1, 1) - x) ** 2).mean((1, 2, 3)))).mean())}
            elif stage == "domain":
                out = m(x)
                parts = {"structure": float(structure(out, x)), "critic_fake": float(m.critic(out).mean())}
            else:
                gen = torch.Generator().manual_seed(1000 + i)
                _, emb = self._text_pick(x.shape[0], gen)
                _, _, parts = self._directional(m, x, emb.to(x.device), cfg)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * x.shape[0]
            count += x.shape[0]
        scores = {k: v / max(count, 1) for k, v in sums.items()}
        scores["score"] = {"encoder": -scores.get("l1", 0.0), "domain": -scores.get("structure", 0.0),
                           "text": -scores.get("direction", 0.0)}[stage]
        return scores

    @torch.no_grad()
    def snapshot(self, model: nn.Module, batches: list[dict], cfg: dict, path) -> None:
        """photo | the model's output (text stage: under three descriptions), per row."""
        from ...data.sheet import image_grid
        from ...io import write_png
        m = unwrap(model)
        x = batches[0]["image"][: int(cfg["sample_n"])].float()
        columns = [to_uint8(x), to_uint8(m(x))]
        if cfg["stage"] == "text":
            for text in ("a pencil sketch", "a watercolor painting in warm colors", "a cartoon in cool blue tones"):
                emb = _text_table([text]).to(x.device).expand(x.shape[0], -1)
                columns.append(to_uint8(m(x, m.mapper(emb))))
        cells = [c[i] for i in range(x.shape[0]) for c in columns]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image_grid(cells, columns=len(columns) * 2))


class StylizeJointTask:
    """The joint image-text space: JointImageEncoder against the frozen MiniLM encoder, InfoNCE
    over (styled photo, description) pairs made on the fly by styles.py."""

    family = "stylize_joint"
    needs = ("image",)
    architectures = {"tiny": JointConfig(size=32, width=8), "s": JointConfig(size=64, width=32)}
    presets: dict[str, dict] = {
        "tiny": {**TINY_RUN, "arch": "tiny", "lr": 2e-3, "weight_decay": 0.0, "photo_share": 0.1},
        "s": {"arch": "s", "size": 64, "batch_size": 32, "lr": 1e-3, "warmup_steps": 30, "max_steps": 800,
              "ckpt_every": 100, "eval_every": 200, "log_every": 20, "val_n": 64, "workers": 0,
              "weight_decay": 1e-4, "photo_share": 0.1},
    }

    def __init__(self):
        self._table: dict[str, torch.Tensor] = {}
        self._calls = 0

    def build(self, config: dict) -> nn.Module:
        return JointImageEncoder.from_config(config)

    def setup(self, cfg: dict, device) -> None:
        if not self._table:
            texts = [*styles.DESCRIPTIONS, styles.NEUTRAL]
            self._table = dict(zip(texts, _text_table(texts)))

    def pairs(self, x: torch.Tensor, rng: np.random.Generator, share: float) -> tuple[torch.Tensor, list[str]]:
        images, texts = [], []
        for photo in to_uint8(x):
            if rng.random() < share:
                images.append(photo)
                texts.append(styles.NEUTRAL)
            else:
                image, text = styles.stylize_photo(photo, rng)
                images.append(image)
                texts.append(text)
        return to_tensor(images, x.device), texts

    def _logits(self, model, images, texts):
        unique = sorted(set(texts))
        table = torch.stack([self._table[t] for t in unique]).to(images.device)
        target = torch.tensor([unique.index(t) for t in texts], device=images.device)
        emb = model(images)
        logits = unwrap(model).logit_scale.exp().clamp(max=100) * emb @ table.T       # (N images, T texts)
        return logits, target

    def loss(self, model: nn.Module, batch: dict, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        self._calls += 1
        rng = np.random.default_rng(cfg["seed"] * 7919 + self._calls)
        images, texts = self.pairs(batch["image"].float(), rng, cfg["photo_share"])
        logits, target = self._logits(model, images, texts)
        to_text = F.cross_entropy(logits, target)
        # text -> image: each description's images are all its positives
        positives = F.one_hot(target, logits.shape[1]).T.float()                  # (T, N)
        log_p = logits.T.log_softmax(1)
        to_image = -((log_p * positives).sum(1) / positives.sum(1)).mean()
        acc = (logits.argmax(1) == target).float().mean()
        return (to_text + to_image) / 2, {"to_text": float(to_text.detach()), "to_image": float(to_image.detach()),
                                          "acc": float(acc)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Iterable[dict], cfg: dict) -> dict[str, float]:
        """Which look a held-out styled photo has, read off the nearest of the plain
        descriptions "a FILTER" (and the neutral photo): top-1 accuracy over 9 looks."""
        looks = [f"a {f}" for f in styles.FILTERS] + [f"a {styles.FACESYNTH}", styles.NEUTRAL]
        from ...models.text_encoder import TextEncoder
        table = TextEncoder().encode(looks).pooled
        right = total = 0
        for i, batch in enumerate(batches):
            rng = np.random.default_rng(10_000 + i)
            images, texts = self.pairs(batch["image"].float(), rng, cfg["photo_share"])
            emb = model(images).cpu()
            guess = (emb @ table.T).argmax(1)
            truth = [next(j for j, look in enumerate(looks[:-1]) if look[2:] in t) if t != styles.NEUTRAL
                     else len(looks) - 1 for t in texts]
            right += int((guess == torch.tensor(truth)).sum())
            total += len(texts)
        acc = right / max(total, 1)
        return {"score": acc, "look_acc": acc}


def tiny_checkpoint(root: Path) -> Path:
    """A tiny 32 px stylizer (stage 1, a few steps) on a tiny StyleGAN2 trained 2 steps on
    FaceSynth (seconds on a CPU): the contract tests' stylize model. Returns ROOT/stylize/last."""
    from ...train.loop import train
    root = Path(root)
    train("stylegan2", "tiny", "facesynth:32", root / "stylegan2", overrides={"max_steps": 2}, progress=False)
    train("stylize", "tiny", "facesynth:32", root / "stylize", progress=False,
          overrides={"max_steps": 4, "generator": str(root / "stylegan2" / "last")})
    return root / "stylize" / "last"
