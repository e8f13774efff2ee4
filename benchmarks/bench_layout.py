"""How fast the layout prior draws, and how often it finds every attribute a caption asks for.

    python benchmarks/bench_layout.py --n 300 [--size 64] [--match all|layout] [--json runs/bench_layout.json]

For the first N held-out captions (FaceSynth test split, each face's first caption, as
`faceweave evaluate --given prompt` uses them), draws the layout of seed i for caption i
with `faceweave.synth.layout.draw_layout` and prints: the median and 90th-percentile draw
index (how many people were looked at), the captions no draw within the budget matched
fully, and the wall time per layout (mean and worst). --match layout matches only the
attributes that shape a label map (the older prior); the default matches all of them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="held-out captions")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--match", choices=("all", "layout"), default="all")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from faceweave import synth
    from faceweave.data.unified import facesynth_seed
    from faceweave.synth.layout import DEFAULT_DRAWS, draw_layout
    from faceweave.text import parse_prompt

    test_seed = facesynth_seed("test")
    captions = [synth.render(test_seed, i, args.size).captions[0] for i in range(args.n)]
    draws, seconds, partial = [], [], []
    for i, caption in enumerate(captions):
        asked = parse_prompt(caption)
        t0 = time.perf_counter()
        layout = draw_layout(asked, i, args.size, match=args.match)
        seconds.append(time.perf_counter() - t0)
        draws.append(layout.draw)
        if layout.unmatched:
            partial.append({"caption": caption, "unmatched": layout.unmatched})
    result = {"n": args.n, "size": args.size, "budget": DEFAULT_DRAWS, "match": args.match,
              "median_draw": float(np.median(draws)), "p90_draw": float(np.percentile(draws, 90)),
              "not_fully_matched": len(partial), "mean_ms": 1e3 * float(np.mean(seconds)),
              "worst_ms": 1e3 * float(np.max(seconds)), "partial": partial}
    print(f"{args.n} captions, {args.size} px, match {args.match}, budget {DEFAULT_DRAWS} draws: median draw {result['median_draw']:.0f}, "
          f"90th percentile {result['p90_draw']:.0f}; not fully matched: {len(partial)}; "
          f"{result['mean_ms']:.1f} ms per layout on average, {result['worst_ms']:.0f} ms at worst")
    for p in partial:
        print(f"  lacks {', '.join(p['unmatched'])}: {p['caption']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
