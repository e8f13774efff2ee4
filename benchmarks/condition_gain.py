"""How much each condition lowers a diffusion model's denoising error: a quick check that a
model uses its prompt, attributes, mask and sketch at all (no sampling, no ruler).

    python benchmarks/condition_gain.py --model diffusion-64
    python benchmarks/condition_gain.py --model runs/diffusion64p/best --n 128
    python benchmarks/condition_gain.py --model diffusion-64 --pooled-off   # without its pooled path

For held-out FaceSynth faces (the validation split) and fixed noise, it prints the
EDM-weighted denoising loss at each noise level with no condition, one condition at a time,
and all of them, then each condition's gain: the relative drop in loss from "none",
averaged over the noise levels. A condition whose gain is ~0 % is ignored by the model.
--pooled-off zeroes the last layer of a model's pooled path (models/unet.py), so the
prompt and attributes reach it through cross-attention alone: what the path contributes.
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
    from faceweave.train.tasks import DiffusionTask

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="diffusion-64", help="bundled name or checkpoint folder")
    ap.add_argument("--n", type=int, default=64, help="validation faces")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pooled-off", action="store_true", help="zero the pooled path's last layer")
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


if __name__ == "__main__":
    main()
