"""docs/stylize.png: real photos | their references | one-shot results | two texts (zero-shot).

    python benchmarks/stylize_figure.py --model runs/stylize-enc-64-real/last \
        --text-model runs/stylize-text-64-real/last --out docs/stylize.png

Rows: the first --n photos of ../shared/data/real/photos, each with another of the unseen
references of benchmarks/stylize_eval.py. Columns: the aligned face, the reference, the
one-shot stylization, then the zero-shot one under each of the two texts of stylize_eval.py.
Every cell is shown at 128 px (the models work at 64 px).
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _eval_module():
    spec = importlib.util.spec_from_file_location("stylize_eval", HERE / "stylize_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text-model", required=True)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--cell", type=int, default=128)
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "stylize.png"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    import faceweave
    from faceweave.backends.stylize.pipeline import square
    from faceweave.data.sheet import image_grid
    from faceweave.io import read_photo, resize_image, write_png

    ev = _eval_module()
    files = sorted(Path(ev.PHOTOS).glob("*.jpg"))
    refs = ev.references([], files)
    one, text = faceweave.load(args.model), faceweave.load(args.text_model)
    cells = []
    for i, path in enumerate(files[: args.n]):
        photo = read_photo(path)
        _, ref, _ = refs[i % len(refs)]
        shot = one(photo, style=ref, name=path.stem)
        looks = [text(photo, style_text=t, name=path.stem).stylized for t in ev.TEXTS]
        row = [shot.aligned, square(ref, one.size), shot.stylized, *looks]
        cells += [resize_image(c, args.cell) for c in row]
    out = Path(args.out)
    write_png(out, image_grid(cells, columns=5))
    print(f"wrote {out}: photo | reference | one-shot | {' | '.join(repr(t) for t in ev.TEXTS)}")
    return out


if __name__ == "__main__":
    main()
