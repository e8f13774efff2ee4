"""How much each condition lowers a diffusion model's denoising error: a quick check that a
model uses its prompt, attributes, mask and sketch at all (no sampling, no ruler).

    python benchmarks/condition_gain.py --model diffusion-64
    python benchmarks/condition_gain.py --model runs/diffusion64p/best --n 128
    python benchmarks/condition_gain.py --model diffusion-64 --pooled-off   # without its pooled path
    python benchmarks/condition_gain.py --model diffusion-64 --n 256 --bound  # vs what attributes could give

For held-out FaceSynth faces (the validation split) and fixed noise, it prints the
EDM-weighted denoising loss at each noise level with no condition, one condition at a time,
and all of them, then each condition's gain: the relative drop in loss from "none",
averaged over the noise levels. A condition whose gain is ~0 % is ignored by the model.
--pooled-off zeroes the last layer of a model's pooled path (models/unet.py), so the
prompt and attributes reach it through cross-attention alone: what the path contributes.

--bound asks how much of that gain there is to have. At very high noise the best denoiser
returns E[x0 | condition], so its loss relative to "none" is the fraction of the pixel
variance the condition leaves unexplained. A least-squares fit of the pixels on the 40
attribute values (fitted on --fit training faces, scored on the same validation faces)
explains part of it; the best attribute-conditioned denoiser explains at least that much.
The model's own drop at sigma 80 (the samplers' sigma_max) is printed beside it.
"""
from __future__ import annotations

import argparse
import platform

import torch

SUBSETS = {
    "none": (),
    "text": ("text",),
    "attributes": ("attributes",),
    "mask": ("mask",),
    "sketch": ("sketch",),
    "text+attributes": ("text", "attributes"),
    "all": ("text", "attributes", "mask", "sketch"),
}
LEVELS = (0.2, 0.5, 1.0, 2.0, 5.0, 20.0)


def condition_losses(model_path: str, n: int = 64, levels=LEVELS, seed: int = 0,
                     pooled_off: bool = False) -> dict[str, list[float]]:
    """{subset: [loss at each level]} on the first n validation faces at the model's size."""
    from faceweave import checkpoint
    from faceweave.data import collate, open_dataset
    from faceweave.diffusion.losses import denoising_loss
    from faceweave.backends.diffusion.train import DiffusionTask

    task = DiffusionTask()
    meta, state = checkpoint.load(model_path, "diffusion")
    model = task.build(meta["config"]).float()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.eval()
    if pooled_off:
        if not model.config.pooled:
            raise SystemExit(f"{model_path} has no pooled path")
        last = model.denoiser.net.pool[-1]
        last.weight.data.zero_()
        last.bias.data.zero_()
    size = model.image_size
    val = open_dataset(f"facesynth:{size}", size=size, split="val")
    batch = collate([val[i] for i in range(n)])
    cond = task._conditions(batch, {}, train=False)
    x0 = task._target(model, batch, cond)
    own = set(model.config.modalities)
    out = {name: [] for name, mods in SUBSETS.items() if set(mods) <= own}
    with torch.no_grad():
        for j, level in enumerate(levels):
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed * 1000 + j))
            sigma = torch.full((n,), float(level))
            for name in out:
                keep = {m: p & (m in SUBSETS[name]) for m, p in cond["present"].items()}
                c = {**cond, "present": keep}
                out[name].append(float(denoising_loss(model, x0, sigma, "edm", model.config.sigma_data,
                                                      noise=noise, **c)))
    return out


def attribute_bound(model_path: str, n: int = 64, fit: int = 2000, seed: int = 0,
                    pooled_off: bool = False) -> dict[str, float]:
    """Loss drop from "none" at sigma 80 for the model given attributes or text, and the drop a
    linear fit of the pixels on the attributes achieves at infinite noise (see the docstring)."""
    import numpy as np

    from faceweave import checkpoint
    from faceweave.data import collate, open_dataset

    size = checkpoint.read_config(model_path, "diffusion")["image_size"]
    losses = condition_losses(model_path, n, levels=(80.0,), seed=seed, pooled_off=pooled_off)
    out = {f"model, {k}": 1 - losses[k][0] / losses["none"][0] for k in ("text", "attributes") if k in losses}

    def pixels_and_attributes(split: str, count: int):
        data = open_dataset(f"facesynth:{size}", size=size, split=split)
        batch = collate([data[i] for i in range(count)])
        x = batch["image"].reshape(count, -1).double().numpy()
        a = batch["attributes"].double().numpy()
        a = np.where(a < 0, 0.5, a)                      # unknown: halfway
        return x, np.concatenate([a, np.ones((count, 1))], 1)

    x_fit, a_fit = pixels_and_attributes("train", fit)
    x_val, a_val = pixels_and_attributes("val", n)
    weights = np.linalg.lstsq(a_fit, x_fit, rcond=None)[0]
    unexplained = ((x_val - a_val @ weights) ** 2).mean() / ((x_val - x_fit.mean(0)) ** 2).mean()
    out["linear fit on attributes, sigma -> inf"] = 1 - float(unexplained)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="diffusion-64", help="bundled name or checkpoint folder")
    ap.add_argument("--n", type=int, default=64, help="validation faces")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pooled-off", action="store_true", help="zero the pooled path's last layer")
    ap.add_argument("--bound", action="store_true",
                    help="also print the attribute gain at sigma 80 beside a linear-fit lower bound on the best")
    ap.add_argument("--fit", type=int, default=2000, help="--bound: training faces for the linear fit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    losses = condition_losses(args.model, args.n, pooled_off=args.pooled_off)
    print(f"model {args.model}{' with its pooled path off' if args.pooled_off else ''}, {args.n} validation faces, machine {platform.machine()} "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    names = list(losses)
    print("| sigma | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for j, level in enumerate(LEVELS):
        print(f"| {level} | " + " | ".join(f"{losses[k][j]:.4f}" for k in names) + " |")
    none = losses["none"]
    gains = {k: sum(1 - v / b for v, b in zip(losses[k], none)) / len(none) for k in names if k != "none"}
    print("| gain vs none (mean over levels) | — | " + " | ".join(f"{100 * g:.1f} %" for g in gains.values()) + " |")
    if args.bound:
        print("\n| at very high noise | loss drop from none |\n|---|---|")
        for name, drop in attribute_bound(args.model, args.n, args.fit, pooled_off=args.pooled_off).items():
            print(f"| {name} | {100 * drop:.1f} % |")


if __name__ == "__main__":
    main()
