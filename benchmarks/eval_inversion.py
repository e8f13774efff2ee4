"""GAN inversion quality: reconstruction PSNR and feature distance of the gan backend's
inversion (encoder alone, then encoder + projector) on held-out FaceSynth faces and on the
real photos in ../shared/data/real (aligned first), with a picture of both.

    python benchmarks/eval_inversion.py [--model gan-64] [--n 16] [--steps 100] [--figure docs/gan_inversion.png]

The gap between the two rows is the domain gap of a generator trained on FaceSynth only.
Feature distance: the parser-feature distance of faceweave.projector (lower is closer).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import faceweave
from faceweave.align import align_face
from faceweave.data import FaceSynthDataset
from faceweave.data.sheet import image_grid
from faceweave.errors import FaceweaveError
from faceweave.io import read_image, write_png

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "photos"


def run(pipe, faces: list[np.ndarray], steps: int) -> tuple[dict, list[list[np.ndarray]]]:
    rows, scores = [], {"encoder": [], "projector": []}
    t0 = time.perf_counter()
    for face in faces:
        enc = pipe.invert(face, steps=0)
        proj = pipe.invert(face, steps=steps)
        scores["encoder"].append((enc.metadata["psnr"], enc.metadata["feature_distance"]))
        scores["projector"].append((proj.metadata["psnr"], proj.metadata["feature_distance"]))
        rows.append([face, enc.reconstruction, proj.reconstruction])
    summary = {k: {"psnr": statistics.mean(p for p, _ in v), "feature_distance": statistics.mean(f for _, f in v)}
               for k, v in scores.items()}
    summary["seconds_per_image"] = (time.perf_counter() - t0) / max(1, len(faces))
    return summary, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gan-64")
    ap.add_argument("--n", type=int, default=16, help="FaceSynth faces (the real set: every photo, up to n)")
    ap.add_argument("--steps", type=int, default=100, help="projector steps after the encoder")
    ap.add_argument("--figure", default=None, help="write the picture here (input | encoder | + projector)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    pipe = faceweave.load(args.model)
    size = pipe.size
    synth = FaceSynthDataset(size, n=args.n, split="test")
    faces = [synth.render(i).image for i in range(args.n)]
    results = {"facesynth": run(pipe, faces, args.steps)}
    photos = sorted(REAL.glob("*.jpg"))[: args.n] if REAL.is_dir() else []
    real = []
    for path in photos:
        try:
            real.append(align_face(read_image(path), size=size).image)
        except FaceweaveError as exc:
            print(f"skipped {path.name}: {exc}")
    if real:
        results["real"] = run(pipe, real, args.steps)
    else:
        print(f"real photos: none found under {REAL}")
    for name, (summary, _) in results.items():
        n = args.n if name == "facesynth" else len(real)
        for how in ("encoder", "projector"):
            label = "encoder" if how == "encoder" else f"encoder + {args.steps} projector steps"
            print(f"{name:9s} n={n:3d} {label:32s} PSNR {summary[how]['psnr']:6.2f} dB  "
                  f"feature distance {summary[how]['feature_distance']:.4f}")
        print(f"{name:9s} {summary['seconds_per_image']:.2f} s per image (both inversions)")
    if args.figure:
        rows = [r for _, (_, rs) in results.items() for r in rs[:6]]
        write_png(args.figure, image_grid([im for row in rows for im in row], columns=6))
        print(f"wrote {args.figure}: pairs of rows (input | encoder | + projector), FaceSynth first, then real")


if __name__ == "__main__":
    main()
