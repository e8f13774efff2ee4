"""Time of the frozen MiniLM text encoder for prompts it has not seen (its cache misses), the
share of a gan image's time that goes to reading its caption.

    python benchmarks/bench_text_encoder.py [--batches 1,16] [--repeats 5]

Each timing encodes a batch of new captions (a fresh run number in every prompt, so nothing
comes from the cache) through TextEncoder.encode, as generation does; median of the repeats,
after one untimed warm-up per batch size. Also times one raw forward pass of the model on a
16-token input, to show how much of a one-prompt call is per-pass overhead.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from faceweave.models.text_encoder import TextEncoder

CAPTION = "a smiling woman with blond hair and eyeglasses, photo {}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    encoder = TextEncoder()
    serial = iter(range(10 ** 9))
    for batch in (int(b) for b in args.batches.split(",")):
        encoder.encode([CAPTION.format(next(serial)) for _ in range(batch)])          # warm-up
        times = []
        for _ in range(args.repeats):
            prompts = [CAPTION.format(next(serial)) for _ in range(batch)]
            t0 = time.perf_counter()
            encoder.encode(prompts)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        print(f"encode, batch {batch:3d}: {1000 * t:8.1f} ms per call, {1000 * t / batch:6.1f} ms per new prompt")
    tokens = encoder.tokenizer([CAPTION.format(0)] * 8, padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        for rows in (1, 8):
            one = {k: v[:rows] for k, v in tokens.items()}
            encoder.model(**one)
            t0 = time.perf_counter()
            for _ in range(args.repeats * 4):
                encoder.model(**one)
            t = (time.perf_counter() - t0) / (args.repeats * 4)
            print(f"one forward pass, {rows} prompt(s) of 16 tokens: {1000 * t:6.1f} ms")


if __name__ == "__main__":
    main()
