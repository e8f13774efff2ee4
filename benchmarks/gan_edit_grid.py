"""Real-photo inversion and edits with the gan backend: identity kept, PSNR, time, a figure.

    python benchmarks/gan_edit_grid.py [--model gan-64] [--n 4] [--strength 1.5] [--steps 100]
                                       [--tune-steps 0] [--out docs/gan_edits.png] [--json FILE]

Per photo of ../shared/data/real/photos (the first n): align, invert once (encoder,
`--steps` projector steps, `--tune-steps` pivotal tuning steps), then one edit per EDITS
sharing that inversion. Printed per photo: the inversion's PSNR against the aligned face
and its identity distance (dlib, the real ruler: aligned face vs reconstruction); per edit:
the identity distance between the photo and the edited photo (whole photos, dlib finds the
face), the pixels changed outside the face crop (must be 0) and the seconds. The summary
says how many identity distances are under 0.5 (the target) and under 0.6 (dlib's
same-person threshold). The figure: face region of the photo | aligned | reconstruction |
one column per edit (face region of the edited photo).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import faceweave
from faceweave import Conditions
from faceweave.align import align_face
from faceweave.data.sheet import image_grid
from faceweave.eval import faces
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


def identity(a: np.ndarray, b: np.ndarray, aligned: bool) -> float:
    emb = faces.identity_embeddings([a, b], aligned=aligned)
    return float(faces.identity_distance(emb[0], emb[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gan-64")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--strength", type=float, default=1.5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--tune-steps", type=int, default=0)
    ap.add_argument("--edits", default=",".join(EDITS), help="comma list of " + ", ".join(EDITS))
    ap.add_argument("--out", default="docs/gan_edits.png")
    ap.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    edits = {k: EDITS[k] for k in args.edits.split(",")}
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    photos = sorted(REAL.glob("*.jpg"))[: args.n] if REAL.is_dir() else []
    if not photos:
        raise SystemExit(f"no photos under {REAL}")
    pipe = faceweave.load(args.model)
    side = 128
    panels, rows = [], []
    for path in photos:
        photo = read_image(path)
        aligned = align_face(photo, size=pipe.size)
        quad = np.asarray(aligned.quad, np.float32)
        t0 = time.perf_counter()
        inv = pipe.invert(aligned.image, steps=args.steps, tune_steps=args.tune_steps)
        invert_seconds = time.perf_counter() - t0
        record = {"photo": path.name, "psnr": inv.metadata["psnr"], "invert_seconds": round(invert_seconds, 2),
                  "recon_identity": identity(aligned.image, inv.reconstruction, aligned=True), "edits": {}}
        print(f"{path.name:24s} inversion PSNR {record['psnr']:5.2f} dB  identity {record['recon_identity']:.3f}  "
              f"{invert_seconds:5.1f} s", flush=True)
        row = [face_box(photo, quad, side), resize_image(aligned.image, side), resize_image(inv.reconstruction, side)]
        for name, target in edits.items():
            t0 = time.perf_counter()
            out = pipe.edit(photo, target, strength=args.strength, inversion=inv)
            seconds = time.perf_counter() - t0
            changed = np.any(out.images[0] != photo, axis=2)
            inside = np.zeros(changed.shape, np.uint8)
            cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
            outside = int((changed & (cv2.dilate(inside, np.ones((5, 5), np.uint8)) == 0)).sum())
            dist = identity(photo, out.images[0], aligned=False)
            record["edits"][name] = {"identity": dist, "outside_changed": outside, "seconds": round(seconds, 2),
                                     "delta_norm": out.metadata[0]["delta_norm"]}
            print(f"  {name:10s} identity {dist:.3f}  |delta| {out.metadata[0]['delta_norm']:6.3f}  "
                  f"pixels changed outside the crop {outside}  {seconds:4.1f} s (+ the shared inversion)", flush=True)
            row.append(face_box(out.images[0], quad, side))
        panels += row
        rows.append(record)
    recon = np.array([r["recon_identity"] for r in rows])
    edit = np.array([e["identity"] for r in rows for e in r["edits"].values()])
    outside = sum(e["outside_changed"] for r in rows for e in r["edits"].values())
    summary = {"model": args.model, "n": len(rows), "steps": args.steps, "tune_steps": args.tune_steps,
               "strength": args.strength, "psnr_mean": float(np.mean([r["psnr"] for r in rows])),
               "recon_identity_mean": float(recon.mean()), "recon_identity_max": float(recon.max()),
               "recon_under_0.5": int((recon < 0.5).sum()),
               "edit_identity_mean": float(edit.mean()), "edit_identity_max": float(edit.max()),
               "edits_under_0.5": int((edit < 0.5).sum()), "edits": int(edit.size),
               "outside_changed_total": outside,
               "invert_seconds_mean": float(np.mean([r["invert_seconds"] for r in rows])),
               "edit_seconds_mean": float(np.mean([e["seconds"] for r in rows for e in r["edits"].values()]))}
    print(f"summary ({args.model}, {len(rows)} photos, {args.steps} projector + {args.tune_steps} tuning steps): "
          f"inversion PSNR {summary['psnr_mean']:.2f} dB, identity mean {summary['recon_identity_mean']:.3f} max "
          f"{summary['recon_identity_max']:.3f} ({summary['recon_under_0.5']}/{len(rows)} < 0.5); edits identity "
          f"mean {summary['edit_identity_mean']:.3f} max {summary['edit_identity_max']:.3f} "
          f"({summary['edits_under_0.5']}/{edit.size} < 0.5); pixels changed outside the crops {outside}; "
          f"{summary['invert_seconds_mean']:.1f} s per inversion, {summary['edit_seconds_mean']:.1f} s per edit after it")
    write_png(args.out, image_grid(panels, columns=3 + len(edits)))
    print(f"wrote {args.out}: photo | aligned | GAN reconstruction | " + " | ".join(edits))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "photos": rows}, indent=1))


if __name__ == "__main__":
    main()
