"""What the gan backend's --diversity costs and buys: `faceweave evaluate` (prompt + mask)
at several diversity settings, on held-out FaceSynth faces or on the real protocol.

    python benchmarks/gan_diversity.py [--model gan-64] [--n 200] [--values 0,0.5,1]
    python benchmarks/gan_diversity.py --model gan-64-real --data celebamask1k --n 69 \
        --seeds-per-condition 4 --values 0,0.25,0.5

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
    ap.add_argument("--data", default="facesynth", help="facesynth or celebamask1k (the real protocol)")
    ap.add_argument("--seeds-per-condition", type=int, default=4, help="images per condition for the "
                    "diversity metric (first 32 conditions)")
    args = ap.parse_args()
    for value in (float(v) for v in args.values.split(",")):
        m = evaluate(backend="gan", model=args.model, given=("prompt", "mask"), n=args.n, data=args.data,
                     seeds_per_condition=args.seeds_per_condition,
                     backend_options={"diversity": value}, progress=False).metrics
        male = (m.get("details", {}).get("run", {}).get("per_attribute") or {}).get("Male")
        print(f"diversity {value:.2f}: mask_miou {m['mask_miou']:.4f}  attr_acc {m['attr_acc']:.4f}  "
              f"fd {m['fd']:.4f}  diversity metric {m['diversity']:.4f}"
              + ("" if male is None else f"  Male follows {male:.3f}"), flush=True)


if __name__ == "__main__":
    main()
