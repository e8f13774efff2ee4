"""FaceSynth render speed on one core: samples/s at 64, 128 and 256 px.

    python benchmarks/bench_facesynth.py [--n 300] [--sizes 64,128,256] [--no-captions]

A sample is everything `render()` returns: image, exact label map, sketch, attributes and
five captions. Targets: >= 300/s at 64 px, >= 60/s at 256 px on one core.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402

from faceweave.synth import render  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="samples per size")
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--no-captions", action="store_true", help="skip caption writing")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})   # one core, honestly
    captions = 0 if args.no_captions else 5
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, pinned to 1")
    for size in (int(s) for s in args.sizes.split(",")):
        for i in range(10):   # warm caches (noise bank, tables)
            render(0, i, size, captions=captions)
        t = time.perf_counter()
        for i in range(args.n):
            render(1, i, size, captions=captions)
        dt = time.perf_counter() - t
        print(f"size {size:4d}px: {args.n / dt:7.1f} samples/s  ({1000 * dt / args.n:.2f} ms/sample, n={args.n})")


if __name__ == "__main__":
    main()
