"""Speed of the gan backend (one mapper + one generator pass) against the diffusion backend
at its default steps, both at 64 px, in one process on the same conditions.

    python benchmarks/bench_gan.py [--gan gan-64] [--diffusion diffusion-64] [--repeats 3]
    python benchmarks/bench_gan.py --gan gan-64-real --diffusion diffusion-64-real

Conditions: the caption and mask of a held-out FaceSynth face (the time of one pass does not
depend on what the conditions show). Diffusion runs its checkpoint's own sampling defaults
(printed with its timings; 20 euler_ancestral steps for diffusion-64 and diffusion-64-real).
Images per second at batch 1 and at every batch size in --batches (median of the repeats,
after one untimed warm-up each; a gan timing covers at least 64 images, one call after
another); the ratio is gan over diffusion, at batch 1 and at each backend's best batch. MM2Latent's headline claim is a
speed-up of two orders of magnitude. With --new-captions every image gets a caption the text
encoder has not seen (the caption and a fresh number), for both backends, so the timings
include encoding it, as an evaluation's batches do:

    python benchmarks/bench_gan.py --gan gan-64-real --diffusion diffusion-64-real --batches 1,16 --new-captions
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

import torch

import faceweave
from faceweave import Conditions
from faceweave.data import FaceSynthDataset


def rate(pipe, cond, batch: int, repeats: int, calls: int = 1, new_captions: bool = False, **kw) -> float:
    """Images per second of pipe at this batch size: `calls` back-to-back calls per timing
    (a millisecond call timed alone is mostly timer noise), median of `repeats` timings.
    new_captions: every image of every call gets a caption the text encoder has not seen (the
    caption with a fresh number), so its encoding is timed too, as in an evaluation."""
    seeds = list(range(batch))
    serial = iter(range(10 ** 9))

    def conditions():
        if not new_captions:
            return cond
        return [dataclasses.replace(cond, prompt=f"{cond.prompt} {next(serial)}") for _ in seeds]

    pipe(conditions=conditions(), seeds=seeds, batch_size=batch, progress=False, **kw)   # warm-up
    times = []
    for _ in range(repeats):
        jobs = [conditions() for _ in range(calls)]
        t0 = time.perf_counter()
        for job in jobs:
            pipe(conditions=job, seeds=seeds, batch_size=batch, progress=False, **kw)
        times.append(time.perf_counter() - t0)
    return batch * calls / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gan", default="gan-64")
    ap.add_argument("--diffusion", default="diffusion-64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,8,32,128", help="gan batch sizes (diffusion: 1 and 8)")
    ap.add_argument("--new-captions", action="store_true",
                    help="a caption the text encoder has not seen for every image (its encoding timed too)")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    face = FaceSynthDataset(64, n=1, split="test").render(0)
    cond = Conditions(prompt=face.captions[0], mask=face.mask)
    gan, diffusion = faceweave.load(args.gan, device=device), faceweave.load(args.diffusion, device=device)
    gan_rates = {b: rate(gan, cond, b, args.repeats, calls=max(1, 64 // b), new_captions=args.new_captions)
                 for b in (int(x) for x in args.batches.split(","))}
    diff_rates = {b: rate(diffusion, cond, b, args.repeats, new_captions=args.new_captions) for b in (1, 8)}
    if args.new_captions:
        print("every image with a caption not seen before (its text encoding timed)")
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
