"""Label celebamask-1k's unlabelled photos with a parser, for self-training (pseudo-labels).

    python scripts/pseudo_label.py --out data/celebamask1k-pseudo                 # parser-real-128
    faceweave train parser --preset real128 --data celebamask1k:128:root=data/celebamask1k-pseudo \\
        --out runs/parser-real-128-pseudo --set init=parser-real-128 --lr 3e-4 --set warmup_steps=20 --max-steps 400

Writes a folder in the collection's own layout: images/ and masks/ hold every hand-labelled
photo (links to the originals) and those photos of photos/ that fall in the training split,
each with the label map the parser reads off it (flip averaging as the checkpoint asks).
Photos of photos/ whose stem falls in the validation split are left out, so validation is
still the hand-made maps of the same 69 photos and never sees a pseudo-label. pseudo.json
lists the pseudo-labelled stems and the parser that drew them. The photos stay where they
are (links; copies where links are not allowed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm


def _link(src: Path, dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.symlink(src.resolve(), dest)
    except OSError:
        shutil.copyfile(src, dest)


def main() -> None:
    from faceweave import io
    from faceweave.checkpoint import fingerprint
    from faceweave.data.celebamask1k import find_root, split_of
    from faceweave.errors import FaceweaveError
    from faceweave.ruler import load_parser

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the folder to write (replaced if it holds an earlier labelling)")
    ap.add_argument("--parser", default="parser-real-128", help="the parser that labels (default parser-real-128)")
    ap.add_argument("--root", default=None, help="the collection (default: found as --data celebamask1k finds it)")
    args = ap.parse_args()
    try:
        root = find_root(args.root)
        out = Path(args.out)
        if out.exists() and not (out / "pseudo.json").exists():
            raise FaceweaveError(f"{out} exists and is not an earlier pseudo-labelling; choose another --out")
        parser = load_parser(args.parser)
    except FaceweaveError as exc:
        sys.exit(f"error: {exc}")
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    labelled = sorted((root / "images").glob("*.jpg"))
    for photo in labelled:
        _link(photo, out / "images" / photo.name)
        _link(root / "masks" / f"{photo.stem}.png", out / "masks" / f"{photo.stem}.png")
    photos = [p for p in sorted((root / "photos").glob("*.jpg")) if split_of(p.stem) == "train"]
    taken = {p.stem for p in labelled} & {p.stem for p in photos}
    if taken:
        sys.exit(f"error: photos/ and images/ share stems ({sorted(taken)[:3]}); the layout needs distinct names")
    for start in tqdm(range(0, len(photos), 32), desc="pseudo-label", unit="batch"):
        chunk = photos[start:start + 32]
        masks = parser.predict(np.stack([io.read_image(p) for p in chunk]))
        for photo, mask in zip(chunk, masks):
            _link(photo, out / "images" / photo.name)
            io.write_mask(out / "masks" / f"{photo.stem}.png", mask)
    record = {"parser": str(parser.path), "parser_fingerprint": fingerprint(parser.model.state_dict()),
              "flip_average": parser.flip_average, "source": str(root), "hand_labelled": len(labelled),
              "pseudo_labelled": [p.stem for p in photos]}
    (out / "pseudo.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}: {len(labelled)} hand-labelled photos and {len(photos)} pseudo-labelled by {args.parser} "
          f"(the {sum(split_of(p.stem) == 'val' for p in (root / 'photos').glob('*.jpg'))} validation-split photos "
          "of photos/ left out)")


if __name__ == "__main__":
    main()
