"""Pictures of the diffusion backend for docs/: conditions | outputs, and a real-photo edit.

    python benchmarks/diffusion_showcase.py --model diffusion-64 --out docs/

writes
    diffusion_grid.png  one held-out FaceSynth test face per row: the real face (not given) |
                        its mask (given) | 4 seeds from its first caption + mask | 2 seeds
                        from the caption alone | 1 seed from mask + sketch
    diffusion_grid.txt  the caption of each row
    diffusion_edit.png  a real CelebA-HQ photo edited with its hand-edited mask (smile and
                        earrings removed; ../shared/data/real/pairs): photo | parsed mask |
                        edited mask | edit (only where mouth, lips or earrings changed) |
                        edit with the whole image free
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="diffusion-64")
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--edit-steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()

    import faceweave
    from faceweave.conditions import Conditions, colorize_mask
    from faceweave.data.sheet import image_grid
    from faceweave.data.unified import facesynth_seed
    from faceweave.io import read_image, read_mask, resize_image, resize_mask, write_png
    from faceweave.synth import render

    pipe = faceweave.load(args.model)
    size = pipe.size
    settings = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, progress=False)
    panels, captions = [], []
    for i in range(args.rows):
        face = render(seed=facesynth_seed("test"), index=i, size=size)
        caption = face.captions[0]
        both = pipe(prompt=caption, mask=face.mask, seeds=[0, 1, 2, 3], **settings).images
        text = pipe(prompt=caption, seeds=[0, 1], **settings).images
        lines = pipe(mask=face.mask, sketch=face.sketch, seeds=[0], **settings).images
        panels += [face.image, colorize_mask(face.mask), *both, *text, *lines]
        captions.append(f"row {i + 1}: {caption}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_png(args.out / "diffusion_grid.png", image_grid(panels, columns=9))
    (args.out / "diffusion_grid.txt").write_text("\n".join(captions) + "\n")
    print("\n".join(captions))

    pair = REAL / "pairs"
    if not pair.is_dir():
        print(f"skipped the edit picture: {pair} is not present")
        return
    from faceweave.ruler import load_parser
    photo = read_image(pair / "edit_27044.jpg")
    target = read_mask(pair / "edit_27044_mask_no_smile_no_earrings.png")
    own = load_parser().predict(photo)
    source, wanted = Conditions(mask=own), Conditions(mask=target)
    # the photo's mask is parsed (imperfect on real photos): count only mouth/lip/earring changes
    local = pipe.edit(photo, source, wanted, num_inference_steps=args.edit_steps, progress=False,
                      classes=["mouth", "u_lip", "l_lip", "ear_r"])
    everywhere = pipe.edit(photo, source, wanted, num_inference_steps=args.edit_steps, progress=False,
                           region=np.ones((size, size), bool))
    row = [resize_image(photo, size), colorize_mask(resize_mask(own, size)), colorize_mask(resize_mask(target, size)),
           local.images[0], everywhere.images[0]]
    write_png(args.out / "diffusion_edit.png", image_grid(row, columns=len(row)))
    print(f"edit: {local.metadata[0]['edited_pixels']} of {size * size} pixels free to change")


if __name__ == "__main__":
    main()
