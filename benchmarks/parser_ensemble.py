"""The real parser's inference options on the celebamask-1k validation photos at 128 px:
ensemble weights and test-time input scales.

    python benchmarks/parser_ensemble.py [--parser parser-real-128] [--partner parser-real-64]

Both parsers are read flip-averaged, each at its own size, as `ruler.Parser` does; the
parser's own config.json ensemble is not used here, so each row is one choice:

weights   mIoU of (1 - w) * parser + w * partner, for w in --weights (0: the parser alone)
scales    mIoU of the parser alone, its scores averaged over the photo resized by each factor
          (to a multiple of 8) and resized back
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faceweave import io
from faceweave.conditions import MIRRORED_CLASSES
from faceweave.data import celebamask1k
from faceweave.data.unified import CAPTIONS_FILE, IMAGES, MASKS, read_records
from faceweave.eval import mask_scores
from faceweave.ruler import Parser


@torch.no_grad()
def flip_averaged(parser: Parser, x: torch.Tensor, side: int, out: int) -> torch.Tensor:
    """Flip-averaged probabilities of `x` read at `side` px, resized to `out` px."""
    mirror = torch.as_tensor(MIRRORED_CLASSES, dtype=torch.long)
    if side != x.shape[-1]:
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=side < x.shape[-1])
    parts = []
    for start in range(0, len(x), 16):
        b = x[start:start + 16]
        p = (parser.model(b).float().softmax(1) + parser.model(b.flip(3)).float().softmax(1).flip(3)[:, mirror]) / 2
        parts.append(p if side == out else F.interpolate(p, size=(out, out), mode="bilinear", align_corners=False))
    return torch.cat(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parser", default="parser-real-128")
    ap.add_argument("--partner", default="parser-real-64")
    ap.add_argument("--weights", default="0,0.2,0.3,0.4,0.5")
    ap.add_argument("--scales", default="1,1-1.125,1-1.25,0.875-1-1.125", help="comma list of dash-joined factors")
    ap.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    parser, partner = Parser(args.parser), Parser(args.partner)
    size = parser.size
    root = celebamask1k.prepared(size, progress=False)
    records = [r for r in read_records(root / CAPTIONS_FILE) if r.get("split") == "val"]
    images = np.stack([io.read_image(root / IMAGES / r["file"]) for r in records])
    targets = np.stack([io.read_mask(root / MASKS / r["file"]) for r in records])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1

    def miou(probs: torch.Tensor) -> float:
        return round(float(mask_scores(probs.argmax(1).numpy().astype(np.uint8), targets)["miou"]), 4)

    own = flip_averaged(parser, x, size, size)
    theirs = flip_averaged(partner, x, partner.size, size)
    results: dict = {"parser": args.parser, "partner": args.partner, "n": len(records), "size": size,
                     "weights": {}, "scales": {}}
    for w in (float(v) for v in args.weights.split(",")):
        results["weights"][str(w)] = score = miou((1 - w) * own + w * theirs)
        print(f"weight {w:.2f} on {args.partner}: mIoU {score:.4f}")
    for combo in args.scales.split(","):
        factors = [float(v) for v in combo.split("-")]
        sides = [int(round(size * f / 8)) * 8 for f in factors]
        results["scales"][combo] = score = miou(sum(flip_averaged(parser, x, s, size) for s in sides) / len(sides))
        print(f"scales {combo} (sides {sides}): mIoU {score:.4f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
