"""Speed of the gan backend (one mapper + one generator pass) against the diffusion backend
at its default steps, both at 64 px, in one process on the same conditions.

    python benchmarks/bench_gan.py [--gan gan-64] [--diffusion diffusion-64] [--repeats 3]
    python benchmarks/bench_gan.py --gan gan-64-real --diffusion diffusion-64-real

Conditions: the caption and mask of a held-out FaceSynth face (the time of one pass does not
depend on what the conditions show). Diffusion runs its checkpoint's own sampling defaults
(printed: 20 dpmpp_2m steps, guidance 2 for diffusion-64; 20 euler_ancestral steps for
diffusion-64-real). Images per second at batch 1 and at every batch size in
--batches (median of the repeats, after one untimed warm-up each; a gan timing covers at
least 64 images, one call after another); the ratio is gan over
diffusion, at batch 1 and at each backend's best batch. MM2Latent's headline claim is a
speed-up of two orders of magnitude.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

import faceweave
from faceweave import Conditions
from faceweave.data import FaceSynthDataset


def rate(pipe, cond, batch: int, repeats: int, calls: int = 1, **kw) -> float:
    """Images per second of pipe at this batch size: `calls` back-to-back calls per timing
    (a millisecond call timed alone is mostly timer noise), median of `repeats` timings."""
    seeds = list(range(batch))
    pipe(conditions=cond, seeds=seeds, batch_size=batch, progress=False, **kw)   # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            pipe(conditions=cond, seeds=seeds, batch_size=batch, progress=False, **kw)
        times.append(time.perf_counter() - t0)
    return batch * calls / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gan", default="gan-64")
    ap.add_argument("--diffusion", default="diffusion-64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32,128", help="gan batch sizes (diffusion: 1 and 8)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    face = FaceSynthDataset(64, n=1, split="test").render(0)
    cond = Conditions(prompt=face.captions[0], mask=face.mask)
    gan, diffusion = faceweave.load(args.gan, device=device), faceweave.load(args.diffusion, device=device)
    gan_rates = {b: rate(gan, cond, b, args.repeats, calls=max(1, 64 // b))
                 for b in (int(x) for x in args.batches.split(","))}
    diff_rates = {b: rate(diffusion, cond, b, args.repeats) for b in (1, 8)}
    sampling = diffusion.sampling
    how = f"{sampling['num_inference_steps']} {sampling['sampler']} steps, guidance {sampling['guidance_scale']}"
    for b, r in gan_rates.items():
        print(f"gan       batch {b:4d}: {r:9.1f} images/s  ({1000 / r:8.2f} ms/image)")
    for b, r in diff_rates.items():
        print(f"diffusion batch {b:4d}: {r:9.3f} images/s  ({1000 / r:8.1f} ms/image, {how})")
    best_gan, best_diff = max(gan_rates.values()), max(diff_rates.values())
    print(f"speed-up at batch 1: {gan_rates[min(gan_rates)] / diff_rates[1]:.0f}x; "
          f"at each one's best batch: {best_gan / best_diff:.0f}x")


if __name__ == "__main__":
    main()
