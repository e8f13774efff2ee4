"""Before/after grid of real-photo edits with the gan backend (docs/gan_edits.png).

    python benchmarks/gan_edit_grid.py [--model gan-64] [--n 4] [--strength 1.5] [--out docs/gan_edits.png]

Per photo of ../shared/data/real/photos (the first n): the face region of the photo, the
aligned face, the GAN's reconstruction, then one column per edit: the photo after
`faceweave edit --backend gan` (face region, pasted back), for each of EDITS. Prints the
edit direction's size, the inversion PSNR and the seconds per edit, and how much of each
photo outside the face crop changed (must be 0).
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import cv2
import numpy as np
import torch

import faceweave
from faceweave import Conditions
from faceweave.align import align_face
from faceweave.data.sheet import image_grid
from faceweave.io import read_image, resize_image, write_png

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "photos"
EDITS = {"smiling": Conditions(prompt="a smiling person"),
         "beard": Conditions(prompt="a man with a beard"),
         "blond": Conditions(prompt="a person with blond hair"),
         "eyeglasses": Conditions(attributes={"Eyeglasses": 1})}


def face_box(photo: np.ndarray, quad: np.ndarray, side: int) -> np.ndarray:
    """The axis-aligned box around the crop quad, as a side x side picture."""
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int)
    h, w = photo.shape[:2]
    box = photo[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    return resize_image(box, side)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gan-64")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--strength", type=float, default=1.5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", default="docs/gan_edits.png")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    photos = sorted(REAL.glob("*.jpg"))[: args.n] if REAL.is_dir() else []
    if not photos:
        raise SystemExit(f"no photos under {REAL}")
    pipe = faceweave.load(args.model)
    side = 128
    panels = []
    for path in photos:
        photo = read_image(path)
        aligned = align_face(photo, size=pipe.size)
        quad = np.asarray(aligned.quad, np.float32)
        row = [face_box(photo, quad, side)]
        for name, target in EDITS.items():
            out = pipe.edit(photo, target, strength=args.strength, steps=args.steps)
            meta = out.metadata[0]
            if len(row) == 1:
                row += [resize_image(out.aligned, side), resize_image(out.reconstruction, side)]
            changed = np.any(out.images[0] != photo, axis=2)
            inside = np.zeros(changed.shape, np.uint8)
            cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
            outside_changed = int((changed & (cv2.dilate(inside, np.ones((5, 5), np.uint8)) == 0)).sum())
            print(f"{path.name:28s} {name:10s} |delta| {meta['delta_norm']:7.3f}  inversion PSNR "
                  f"{meta['inversion']['psnr']:5.2f} dB  {meta['seconds']:5.2f} s  pixels changed outside the "
                  f"crop: {outside_changed}")
            row.append(face_box(out.images[0], quad, side))
        panels += row
    write_png(args.out, image_grid(panels, columns=3 + len(EDITS)))
    print(f"wrote {args.out}: photo | aligned | GAN reconstruction | " + " | ".join(EDITS))


if __name__ == "__main__":
    main()
