"""The editing backends side by side on the same real photos and the same edits.

    python benchmarks/edit_comparison.py [--backends diffusion,collab,gan,ddgi] [--models A,B,C,D]
                                         [--n 4] [--edits blond,mouth,hair]
                                         [--out docs/edit_comparison.png] [--json FILE]

Photos: the first n of ../shared/data/real/photos (256 px CelebA-HQ test photos, aligned
crops in the framing the real models were trained on, none of them trained on). Each edit is
one call of the backend's public `edit_photo` with its defaults, as `faceweave edit` runs it
(gan and ddgi with align=False, `--no-align`: the photos are already aligned crops, so every
backend reads the same frame and the same target mask):

  blond       a prompt that turns the photo's derived Blond_Hair label over: "a person with
              blond hair" for a photo the labeller reads as not blond, else "... black hair"
  mouth       the same for Mouth_Slightly_Open: "a person with the mouth slightly open" /
              "a person with the mouth closed"
  hair        a mask: the photo's own mask (parser-real-64 at 64 px) with its hair replaced by
              the next photo's hair silhouette over hair and background (the hairstyle edit of
              `faceweave evaluate --edit`); diffusion and collab are given that source mask

Scores (the real ruler: dlib and the real-face parser, none of them part of any backend):
  identity    dlib distance, photo vs the edited image resized to the photo's side (dlib finds
              the face); < 0.6 is dlib's same person, < 0.5 the project's edit target
  happened    blond / mouth: share of photos whose derived label (eval.real.RealLabeller: hair
              colour of the parsed hair pixels, inner mouth share of the parsed mouth) reads as
              the prompt asked after the edit (0 before it, by construction); hair: accuracy
              of parser-real-64 on the changed pixels (the target class read there), beside
              the unedited photo's
  seconds     wall clock of the edit_photo call (inversion included), on this machine
The figure: per photo, the photo then one column per backend and edit (64 px panels at 96 px).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import faceweave
from faceweave import Conditions
from faceweave.data.sheet import image_grid
from faceweave.eval import faces
from faceweave.eval.editing import hairstyle_edit
from faceweave.eval.real import RealLabeller
from faceweave.io import read_image, resize_image, resize_mask, write_png
from faceweave.ruler import load_parser

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "photos"
MODELS = {"diffusion": "diffusion-64-real", "collab": "collab-64-real", "gan": "gan-64-real",
          "ddgi": "ddgi-64-real"}
# edit: (derived label, prompt setting it to 1, prompt setting it to 0)
PROMPTS = {"blond": ("Blond_Hair", "a person with blond hair", "a person with black hair"),
           "mouth": ("Mouth_Slightly_Open", "a person with the mouth slightly open", "a person with the mouth closed")}
EDITS = (*PROMPTS, "hair")
SIZE = 64


def identity(photo: np.ndarray, edited: np.ndarray) -> float:
    side = photo.shape[0]
    emb = faces.identity_embeddings([photo, resize_image(edited, side)], aligned=False)
    return float(faces.identity_distance(emb[0], emb[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default=",".join(MODELS))
    ap.add_argument("--models", default=None, help="comma list, one per backend [the bundled real-face models]")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--edits", default=",".join(EDITS), help="comma list of " + ", ".join(EDITS))
    ap.add_argument("--out", default="docs/edit_comparison.png")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    backends = args.backends.split(",")
    models = args.models.split(",") if args.models else [MODELS[b] for b in backends]
    edits = args.edits.split(",")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    paths = sorted(REAL.glob("*.jpg"))[: args.n + 1] if REAL.is_dir() else []
    if len(paths) < 2:
        raise SystemExit(f"no photos under {REAL}")
    photos = [read_image(p) for p in paths]
    parser = load_parser("parser-real-64")
    labeller = RealLabeller(parser)
    own = parser.predict(np.stack([resize_image(p, SIZE) for p in photos]))
    columns = labeller.attributes
    before = labeller.predict_proba(np.stack([resize_image(p, SIZE) for p in photos[: args.n]]))
    targets = {}
    for name in edits:
        if name in PROMPTS:
            label, yes, no = PROMPTS[name]
            targets[name] = [Conditions(prompt=no if before[i, columns.index(label)] > 0.5 else yes)
                             for i in range(args.n)]
        elif name == "hair":
            targets[name] = [Conditions(mask=hairstyle_edit(own[i], own[i + 1])) for i in range(args.n)]
        else:
            raise SystemExit(f"unknown edit {name!r}; choose from {', '.join(EDITS)}")
    photos = photos[: args.n]
    small = np.stack([resize_image(p, SIZE) for p in photos])
    results, panels = {}, {i: [resize_image(p, 96)] for i, p in enumerate(photos)}
    for backend, model in zip(backends, models):
        pipe = faceweave.load(model)
        rows = {}
        for name in edits:
            outs, seconds, dist = [], [], []
            for i, photo in enumerate(photos):
                target = targets[name][i]
                extra = {"align": False} if backend in ("gan", "ddgi") else {}
                if backend in ("diffusion", "collab") and target.mask is not None:
                    extra["source_mask"] = own[i]
                t0 = time.perf_counter()
                result = pipe.edit_photo(photo, target, progress=False, **extra)
                seconds.append(time.perf_counter() - t0)
                outs.append(result.image)
                dist.append(identity(photo, result.image))
                panels[i].append(resize_image(result.image, 96))
            edited = np.stack([resize_image(o, SIZE) for o in outs])
            if name in PROMPTS:
                k = columns.index(PROMPTS[name][0])
                wanted = before[:, k] <= 0.5
                after_share = float(((labeller.predict_proba(edited)[:, k] > 0.5) == wanted).mean())
                before_share = 0.0
            else:
                wanted = np.stack([resize_mask(t.mask, SIZE) for t in targets[name]])
                region = wanted != own[: args.n]

                def acc(images):
                    read = parser.predict(images)
                    return float(((read == wanted) & region).sum() / max(region.sum(), 1))
                after_share, before_share = acc(edited), acc(small)
            dist = np.array(dist)
            rows[name] = {"identity_mean": float(dist.mean()), "identity_max": float(dist.max()),
                          "same_person": int((dist < 0.6).sum()), "under_0.5": int((dist < 0.5).sum()),
                          "happened": after_share, "before": before_share,
                          "seconds": float(np.mean(seconds)), "output_side": int(outs[0].shape[0]),
                          "identity": [round(float(d), 4) for d in dist]}
            r = rows[name]
            print(f"{backend:9s} {name:10s} identity {r['identity_mean']:.3f} (max {r['identity_max']:.3f}, "
                  f"{r['under_0.5']}/{len(dist)} < 0.5)  happened {after_share:.3f} (before {before_share:.3f})  "
                  f"{r['seconds']:.2f} s/edit  output {r['output_side']} px", flush=True)
        results[backend] = {"model": model, "edits": rows}
        del pipe
    print()
    print("| backend (model) | " + " | ".join(f"{e}: identity / happened (before) / s" for e in edits) + " |")
    print("|---|" + "---|" * len(edits))
    for backend, record in results.items():
        cells = [f"{r['identity_mean']:.3f} / {r['happened']:.2f} ({r['before']:.2f}) / {r['seconds']:.1f}"
                 for r in record["edits"].values()]
        print(f"| {backend} (`{record['model']}`) | " + " | ".join(cells) + " |")
    write_png(args.out, image_grid([p for i in sorted(panels) for p in panels[i]],
                                   columns=1 + len(backends) * len(edits)))
    print(f"wrote {args.out}: photo | " + " | ".join(f"{b} {e}" for b in backends for e in edits))
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "photos": [p.name for p in paths[: args.n]],
                                         "results": results}, indent=1))


if __name__ == "__main__":
    main()
