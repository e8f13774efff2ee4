"""How far can a gan model's generator follow a real mask? Per-face W+ optimisation as a bound.

    python benchmarks/gan_mask_ceiling.py --model gan-64-real --guide runs/guide-parser-64/best [--n 16]

For the first n celebamask-1k validation photos (name order): map the photo's first caption
and label map to W+ with the model's mapper, then optimise each face's W+ code directly
(Adam, `--steps`, `--lr`) against the guide parser's cross-entropy to the label map, once
alone and once with the pixel L1 to the photo beside it. At the given steps, print the
ruler's mask mIoU (parser-real-64, as `faceweave evaluate --data celebamask1k` reads it)
and the loss. A mapper makes a code in one pass and cannot be expected to beat this: if the
optimised codes stay below a target, the generator is what limits. With `--invert-steps`
(e.g. 0,100) the photos themselves are also inverted (the model's encoder, then that many
projector steps: `GANPipeline.invert`) and their reconstructions scored the same way: how
much of a real layout the W+ code of the real face keeps. With `--invert-mask-weight W` as well,
each such inversion is also run with the guide's cross-entropy to the photo's label map
(weight W) in the projector's loss, as `scripts/project_codes.py --guide` makes a mapper's
targets: how much closer to the layout such codes come, and at what PSNR to the photo.
With `--iou-weight W` a third optimisation adds W times the guide's soft-mIoU loss over the
n faces (train/guide.py soft_iou_loss, the gan training's `iou_weight` term) to the
cross-entropy: whether a term that weighs every class alike lifts the bound.

The guide must not be the ruler (train/guide.py refuses bundled parsers): the optimisation
would then fool the very network that scores it.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from faceweave import Conditions, io
from faceweave.backends.gan.pipeline import GANPipeline
from faceweave.data import celebamask1k
from faceweave.data.unified import CAPTIONS_FILE, IMAGES, MASKS, read_records
from faceweave.eval import mask_scores
from faceweave.eval.real import real_parser
from faceweave.train.guide import guide_ce, guide_mask_losses, load_guide


def guided_inversion(pipe, G, guide, photos: np.ndarray, masks: np.ndarray, steps: int, weight: float,
                     ruler) -> tuple[float, float]:
    """Encoder + `steps` projector steps with the guide's mask term, each photo alone as
    `faceweave invert` runs it (seed 0): the ruler's mIoU and the mean PSNR to the photos."""
    from faceweave.projector import project, psnr
    made, quality = [], []
    for photo, mask in zip(photos, masks):
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            start = pipe.model.encoder(x)
        target = torch.from_numpy(mask)[None].long()
        result = project(G, x, init_wplus=start, steps=steps, generator=torch.Generator().manual_seed(0),
                         extra_loss=lambda images, t=target: weight * guide_ce(guide, images, t))
        image = result.image.clamp(-1, 1)
        quality.append(float(psnr(image, x)[0]))
        made.append(((image[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy())
    return float(mask_scores(ruler.predict(np.stack(made)), masks)["miou"]), float(np.mean(quality))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gan-64-real")
    ap.add_argument("--guide", required=True, help="a guide parser's folder (faceweave train parser --preset guide64)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--invert-steps", default="", help="comma list of projector steps for the inversion rows")
    ap.add_argument("--invert-mask-weight", type=float, default=0.0,
                    help="also invert with the guide's mask term at this weight (the guided code bank)")
    ap.add_argument("--iou-weight", type=float, default=0.0,
                    help="also optimise with the guide's soft-mIoU loss at this weight beside the cross-entropy")
    ap.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    pipe = GANPipeline.from_pretrained(args.model)
    G = pipe.model.generator.requires_grad_(False)
    guide = load_guide(args.guide, "cpu")
    ruler = real_parser(None, pipe.size)
    root = celebamask1k.prepared(pipe.size, progress=False)
    records = [r for r in read_records(root / CAPTIONS_FILE) if r.get("split") == "val"][: args.n]
    masks = np.stack([io.read_mask(root / MASKS / r["file"]) for r in records])
    photos = np.stack([io.read_image(root / IMAGES / r["file"]) for r in records])
    with torch.no_grad():
        start, _ = pipe.map([Conditions(prompt=r["captions"][0], mask=m) for r, m in zip(records, masks)])

    def render(w: torch.Tensor) -> torch.Tensor:
        return G([w], input_is_latent=True, randomize_noise=False)[0]

    def miou(w: torch.Tensor) -> float:
        with torch.no_grad():
            made = ((render(w).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return float(mask_scores(ruler.predict(made), masks)["miou"])

    results = {"model": args.model, "guide": args.guide, "n": len(records), "mapped": round(miou(start), 4)}
    print(f"mapper's codes: ruler mIoU {results['mapped']:.4f}")
    for steps in [int(v) for v in args.invert_steps.split(",") if v.strip()]:
        inverted = [pipe.invert(face, steps=steps) for face in photos]
        made = np.stack([inv.reconstruction for inv in inverted])
        score = float(mask_scores(ruler.predict(made), masks)["miou"])
        quality = float(np.mean([inv.metadata["psnr"] for inv in inverted]))
        results[f"inverted_{steps}_steps"] = round(score, 4)
        results[f"inverted_{steps}_steps_psnr"] = round(quality, 3)
        print(f"the photos inverted (encoder + {steps} projector steps): ruler mIoU {score:.4f}, "
              f"PSNR {quality:.2f} dB", flush=True)
        if args.invert_mask_weight and steps:
            score, quality = guided_inversion(pipe, G, guide, photos, masks, steps, args.invert_mask_weight, ruler)
            results[f"inverted_{steps}_steps_guided"] = {"miou": round(score, 4), "psnr": round(quality, 3)}
            print(f"the same with the guide's mask term x {args.invert_mask_weight}: ruler mIoU {score:.4f}, "
                  f"PSNR {quality:.2f} dB", flush=True)
    target = torch.from_numpy(masks).long()
    photo = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 127.5 - 1
    checkpoints = sorted({max(1, args.steps // 4), max(1, args.steps // 2), args.steps})
    rows = [("guide", 0.0, 0.0), ("guide+pixels", 1.0, 0.0)]
    if args.iou_weight:
        rows.append(("guide+iou", 0.0, args.iou_weight))
    everyone = torch.ones(len(records))
    for name, pixel_weight, iou_weight in rows:
        w = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=args.lr)
        for step in range(1, args.steps + 1):
            made = render(w)
            ce, iou = guide_mask_losses(guide, made, target, everyone)
            loss = ce + iou_weight * iou + pixel_weight * (made - photo).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step in checkpoints:
                score = miou(w.detach())
                results[f"{name}_step{step}"] = {"miou": round(score, 4), "loss": round(float(loss.detach()), 4)}
                print(f"{name}, step {step}: ruler mIoU {score:.4f}, loss {float(loss.detach()):.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
