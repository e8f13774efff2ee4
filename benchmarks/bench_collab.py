"""Cost per image: collab (N collaborators per step) next to the joint diffusion model, timed
in one process on the same conditions, alternating, so both see the same machine state.

    python benchmarks/bench_collab.py [--steps 20] [--guidance 2] [--repeats 3]
    python benchmarks/bench_collab.py --joint diffusion-64-real --collab collab-64-real --real

Prompt + mask of a held-out FaceSynth face (--real: of the first celebamask-1k validation
photo, its hand-made map and derived caption), 20 dpmpp_2m steps; seconds per image at
batch 1 and batch 8 (median of the repeats, after one untimed warm-up each), for the joint
`diffusion-64` (--joint), `collab-64` (--collab) with learned mixing and with the naive
average; and the time of one collaborative edit of a real photo at the default budget (30
embedding + 30 fine-tuning steps per edited collaborator) when ../shared/data/real is present.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import faceweave
from faceweave import Conditions
from faceweave.data import FaceSynthDataset

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "photos"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-edit", action="store_true", help="skip the editing timing")
    ap.add_argument("--joint", default="diffusion-64", help="the joint diffusion model [diffusion-64]")
    ap.add_argument("--collab", default="collab-64", help="the collab model [collab-64]")
    ap.add_argument("--real", action="store_true", help="a real validation mask and caption instead of FaceSynth's")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    if args.real:
        from faceweave.data import open_dataset
        record = open_dataset("celebamask1k:64", split="val")[0]
        cond = Conditions(prompt=record["captions"][0], mask=record["mask"].numpy().astype("uint8"))
    else:
        face = FaceSynthDataset(64, n=1, split="test").render(0)
        cond = Conditions(prompt=face.captions[0], mask=face.mask)
    joint, collab = faceweave.load(args.joint), faceweave.load(args.collab)
    jname, cname = Path(args.joint).name, Path(args.collab).name
    runs = {f"{jname} (joint)": (joint, {}), f"{cname} (learned)": (collab, {"mixing": "learned"}),
            f"{cname} (average)": (collab, {"mixing": "average"})}
    for batch in (1, 8):
        times = {name: [] for name in runs}
        for name, (pipe, extra) in runs.items():       # warm-up
            pipe(conditions=cond, seeds=list(range(batch)), num_inference_steps=args.steps,
                 guidance_scale=args.guidance, sampler="dpmpp_2m", progress=False, **extra)
        for _ in range(args.repeats):
            for name, (pipe, extra) in runs.items():
                t0 = time.perf_counter()
                pipe(conditions=cond, seeds=list(range(batch)), num_inference_steps=args.steps,
                     guidance_scale=args.guidance, sampler="dpmpp_2m", progress=False, batch_size=batch,
                     **extra)
                times[name].append((time.perf_counter() - t0) / batch)
        base = statistics.median(times[f"{jname} (joint)"])
        for name, ts in times.items():
            print(f"batch {batch}: {name:30s} {statistics.median(ts):.3f} s/image  ({statistics.median(ts) / base:.2f}x joint)")
    photos = sorted(REAL.glob("*.jpg")) if REAL.is_dir() else []
    if args.no_edit or not photos:
        print("editing: skipped" + ("" if photos else f" (no photos under {REAL})"))
        return
    from faceweave import io
    photo = io.read_image(photos[0])
    out = collab.edit(photo, Conditions(prompt="a smiling woman with blond hair"), progress=False)
    meta = out.metadata[0]
    print(f"collab edit of {photos[0].name} ({photo.shape[1]}x{photo.shape[0]}), prompt only, "
          f"30 + 30 optimisation steps: optimisation {meta['optimise_seconds']} s, sampling "
          f"{meta['sample_seconds']} s ({', '.join(meta['edited_by'])})")


if __name__ == "__main__":
    main()
