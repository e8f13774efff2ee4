"""Write the real-layout example masks: at every pixel, the class most training label maps of
celebamask-1k give it, over the women and over the men of the training split.

    python scripts/mean_masks.py                     # -> examples/mask_real_woman.png, mask_real_man.png
    python scripts/mean_masks.py --out /tmp/masks --size 128

Each file is an aggregate over hundreds of hand-made label maps (no one photo's mask): a
typical real-photo layout to try the real-face models with. Male comes from the derived
labels of `--data celebamask1k` (docs/real-faces.md); the split is the fixed one.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from faceweave.conditions import NUM_CLASSES
from faceweave.data import celebamask1k
from faceweave.io import write_mask

REPO = Path(__file__).resolve().parents[1]


def mode_mask(paths: list[Path], size: int) -> np.ndarray:
    counts = np.zeros((NUM_CLASSES, size, size), np.int32)
    rows, cols = np.arange(size)[:, None], np.arange(size)[None, :]
    for path in paths:
        mask = np.asarray(Image.open(path).resize((size, size), Image.NEAREST))
        counts[mask, rows, cols] += 1
    return counts.argmax(0).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "examples"))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    root = celebamask1k.find_root()
    labelled = celebamask1k.prepared(64)                       # the derived labels (Male) and split
    rows = [json.loads(line) for line in (labelled / "captions.jsonl").read_text().splitlines() if line.strip()]
    for name, male in (("woman", 0), ("man", 1)):
        paths = [root / "masks" / r["file"] for r in rows
                 if r["split"] == "train" and r["attributes"].get("Male") == male]
        out = Path(args.out) / f"mask_real_{name}.png"
        write_mask(out, mode_mask(paths, args.size))
        print(f"{out}: the per-pixel most frequent class of {len(paths)} training label maps ({name})")


if __name__ == "__main__":
    main()
