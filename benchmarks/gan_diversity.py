"""What the gan backend's --diversity costs and buys: `faceweave evaluate` (prompt + mask,
held-out FaceSynth) at several diversity settings.

    python benchmarks/gan_diversity.py [--model gan-64] [--n 200] [--values 0,0.5,1]

diversity 0: every seed gets the mapped code (seeds differ only by their noise maps);
1: the finest W+ layers belong to each seed's own random w.
"""
from __future__ import annotations

import argparse

from faceweave.eval.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gan-64")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--values", default="0,0.5,1")
    args = ap.parse_args()
    for value in (float(v) for v in args.values.split(",")):
        m = evaluate(backend="gan", model=args.model, given=("prompt", "mask"), n=args.n,
                     backend_options={"diversity": value}, progress=False).metrics
        print(f"diversity {value:.2f}: mask_miou {m['mask_miou']:.4f}  attr_acc {m['attr_acc']:.4f}  "
              f"fd {m['fd']:.2f}  diversity metric {m['diversity']:.4f}", flush=True)


if __name__ == "__main__":
    main()
