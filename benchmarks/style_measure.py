"""Which style distance to judge stylization by: candidates scored on how little they see the face.

    python benchmarks/style_measure.py --n 8 --json runs/style-measure.json

A style distance d(a, ref) should find a look applied to one face near the same look applied
to another face, and not near the other face's plain photo: it should read the look, not who
is in the picture. For every candidate, on --n celebamask-1k photos (the last ones of
photos/: none is a test photo of benchmarks/stylize_eval.py, nor one of its tuning photos),
aligned at 256 px as the stylizer aligns them, and every look of styles.py (7 filters, each
plain and with each of the 5 colour treatments: 42 looks, made at 256 px with fixed
parameters, then brought to 64 px, the stylizer's side), over all ordered pairs of photos
(p, q):

  oracle ratio   d(L(p), L(q)) / d(p, L(q)): what the exact filter scores against a reference
                 of the same look on another face, as stylize_eval.py's oracle (lower: the
                 measure separates look from face; 1: it sees only the face)
  retrieval      L(p) is nearer to L(q) than to any other look applied to q

Candidates: the channel means and standard deviations (stylize_eval.py's measure, all four
levels) or the Gram matrices of the real-face parser's encoder levels (the first 1, 2, 3 or
all 4), the network stylize_eval.py reads and no stylizer trains on or reads.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stylize_eval import ParserFeatures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "celebamask-1k" / "photos"


def level_distances(feats: list[torch.Tensor], kind: str) -> list[torch.Tensor]:
    """Per level, the matrix D[i, j] = d(image i, image j) of one statistic (normalised by j's norm)."""
    out = []
    for f in feats:
        f = f.flatten(2)
        if kind == "moments":
            mu, sd = f.mean(2), f.std(2)
            num = torch.cdist(mu, mu) + torch.cdist(sd, sd)
            den = mu.norm(dim=1) + sd.norm(dim=1)
        else:
            g = (f @ f.transpose(1, 2) / f.shape[2]).flatten(1)
            num, den = torch.cdist(g, g), g.norm(dim=1)
        out.append(num / den.clamp(min=1e-8)[None, :])
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", default=str(PHOTOS))
    ap.add_argument("--n", type=int, default=8, help="photos (the last --n of the folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from faceweave.align import align_face
    from faceweave.backends.stylize import styles
    from faceweave.backends.stylize.pipeline import ALIGN_SCALE, ALIGN_SHIFT
    from faceweave.io import read_photo, resize_image

    files = sorted(Path(args.photos).glob("*.jpg"))[-args.n:]
    if len(files) < 2:
        sys.exit(f"{args.photos} holds {len(files)} photos; need at least 2")
    looks = [(f, c) for f in styles.FILTERS for c in styles.COLOURS]
    images, photo_index, look_index = [], {}, {}
    for p, path in enumerate(files):
        big = align_face(read_photo(path), size=256, scale=ALIGN_SCALE, shift=ALIGN_SHIFT, name=path.stem).image
        photo_index[p] = len(images)
        images.append(resize_image(big, 64))
        for k, (f, c) in enumerate(looks):
            rng = np.random.default_rng(7)
            look_index[p, k] = len(images)
            images.append(resize_image(styles.COLOURS[c](styles.FILTERS[f](big, rng), rng), 64))
    ruler = ParserFeatures()
    feats: list[list[torch.Tensor]] = []
    for start in range(0, len(images), 32):
        ruler._feats = []
        with torch.no_grad():
            ruler.parser.model(ruler.parser._tensor(np.stack(images[start:start + 32])))
        feats.append(ruler._feats)
    feats = [torch.cat([b[i] for b in feats]) for i in range(len(feats[0]))]

    rows = {}
    for kind in ("moments", "gram"):
        per_level = level_distances(feats, kind)
        for levels in (1, 2, 3, 4):
            d = torch.stack(per_level[:levels]).mean(0)
            ratios, hits = [], []
            for p in range(len(files)):
                for q in range(len(files)):
                    if p == q:
                        continue
                    for k in range(len(looks)):
                        a, ref = look_index[p, k], look_index[q, k]
                        ratios.append(float(d[a, ref] / d[photo_index[p], ref]))
                        others = [look_index[q, j] for j in range(len(looks))]
                        hits.append(int(np.argmin([float(d[a, o]) for o in others])) == k)
            name = f"{kind}, levels 1-{levels}"
            rows[name] = {"oracle_ratio_mean": float(np.mean(ratios)), "oracle_ratio_median": float(np.median(ratios)),
                          "oracle_at_most_0.7": float(np.mean(np.array(ratios) <= 0.7)),
                          "retrieval": float(np.mean(hits))}
            print(f"{name:20s} oracle ratio {rows[name]['oracle_ratio_mean']:.3f} (median "
                  f"{rows[name]['oracle_ratio_median']:.3f}, {100 * rows[name]['oracle_at_most_0.7']:.0f} % <= 0.7), "
                  f"look retrieval {rows[name]['retrieval']:.3f}", flush=True)
    result = {"machine": f"{platform.machine()} CPU", "photos": [f.name for f in files], "looks": len(looks),
              "candidates": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
