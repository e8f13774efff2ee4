"""Does the stylizer's joint image-text space read colour words? And which colour does the
zero-shot mapper give each text?

    python benchmarks/stylize_joint_colours.py --joint runs/stylize-joint-64/best --model stylize-64-real

Joint space: the last --n photos of celebamask-1k/images (64 px) under each colour treatment
of styles.py (on the plain photo); for each colour phrase's text direction, T("a photo in
COLOUR") - T("a photo of a face"), the cosine with the images' directions J(treated) -
J(photo), averaged over the photos: the zero-shot loss's own measure. A space that reads
the colour words scores the matching treatment highest in each row.

Mapper (--model, a stylize checkpoint with a text mapper): the mean RGB of the zero-shot
results of a few texts on the first --photos of ../shared/data/real/photos, beside the
plain reconstruction's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CELEBAMASK = ROOT.parent / "shared" / "data" / "celebamask-1k" / "images"
REAL = ROOT.parent / "shared" / "data" / "real" / "photos"
TEXTS = ("a pencil sketch", "a watercolor painting in warm colors", "an oil painting in cool blue tones",
         "a black and white photo", "a poster with flat colors in green tones", "a cartoon in pink and purple")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--joint", required=True, help="a stylize_joint checkpoint")
    ap.add_argument("--model", default=None, help="a stylize checkpoint with a text mapper")
    ap.add_argument("--n", type=int, default=40, help="celebamask-1k photos for the joint space")
    ap.add_argument("--photos", type=int, default=3, help="real photos for the mapper")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from faceweave.backends.stylize import styles
    from faceweave.backends.stylize.train import load_joint
    from faceweave.io import read_image, resize_image
    from faceweave.models.text_encoder import TextEncoder

    joint, text = load_joint(args.joint), TextEncoder()
    photos = [resize_image(read_image(f), 64) for f in sorted(CELEBAMASK.glob("*.jpg"))[-args.n:]]
    colours = [c for c in styles.COLOURS if c]
    rng = np.random.default_rng(0)

    def embed(images):
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            return joint(x)

    base = embed(photos)
    neutral = text.encode([styles.NEUTRAL]).pooled[0]
    table = {}
    for c in colours:
        direction = text.encode([f"a photo{c}"]).pooled[0] - neutral
        row = {}
        for other in colours:
            moved = embed([styles.COLOURS[other](p, rng) for p in photos]) - base
            row[other.strip()] = float(torch.nn.functional.cosine_similarity(moved, direction[None], dim=1).mean())
        table[c.strip()] = row
        best = max(row, key=row.get)
        print(f"text '{c.strip()}': " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()) + f"  -> best: {best}")
    result = {"joint": args.joint, "n": len(photos), "direction_cosines": table,
              "matching_best": sum(max(r, key=r.get) == k for k, r in table.items())}
    print(f"the matching treatment scores highest for {result['matching_best']} of {len(table)} colour phrases")

    if args.model:
        import faceweave
        from faceweave.io import read_photo
        pipe = faceweave.load(args.model)
        files = sorted(REAL.glob("*.jpg"))[:args.photos]
        faces = [read_photo(f) for f in files]
        colour_of = {}
        plain = np.mean([pipe(f, style_text=TEXTS[0], strength=0.0).stylized.reshape(-1, 3).mean(0) for f in faces], 0)
        colour_of["(plain reconstruction)"] = [round(float(v), 1) for v in plain]
        for t in TEXTS:
            rgb = np.mean([pipe(f, style_text=t).stylized.reshape(-1, 3).mean(0) for f in faces], 0)
            colour_of[t] = [round(float(v), 1) for v in rgb]
        for t, rgb in colour_of.items():
            print(f"{t:45s} mean RGB {rgb}")
        result.update({"model": args.model, "photos": [f.stem for f in files], "mean_rgb": colour_of})
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
