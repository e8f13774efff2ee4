"""Who decides what, where and when: the collab model's influence maps, summarised per face
region and per third of the sampling steps.

    python benchmarks/collab_influence.py --n 32 [--model collab-64] [--steps 20]

Generates the first n held-out FaceSynth test faces from their first caption and their
mask (seed i for face i), keeps the mixing weights of every step, and prints the mean
weight of each collaborator inside each region of the requested mask (background, skin,
hair, eyes+brows, nose, mouth+lips, ears, neck+cloth), for the early, middle and late
thirds of the steps. Weights of collaborators sum to 1 at every pixel, so 0.5 is "equal".
"""
from __future__ import annotations

import argparse
import platform

import numpy as np

from faceweave import Conditions
from faceweave.conditions import CLASS_ID
from faceweave.data import FaceSynthDataset

REGIONS = {
    "background": ["background"],
    "skin": ["skin"],
    "hair": ["hair", "hat"],
    "eyes+brows": ["l_eye", "r_eye", "l_brow", "r_brow", "eye_g"],
    "nose": ["nose"],
    "mouth+lips": ["mouth", "u_lip", "l_lip"],
    "ears": ["l_ear", "r_ear", "ear_r"],
    "neck+cloth": ["neck", "neck_l", "cloth"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--model", default="collab-64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.0)
    args = ap.parse_args()

    import faceweave
    pipe = faceweave.load(args.model)
    data = FaceSynthDataset(pipe.size, n=args.n, split="test")
    faces = [data.render(i) for i in range(args.n)]
    conds = [Conditions(prompt=f.captions[0], mask=f.mask) for f in faces]
    out = pipe(conditions=conds, seeds=list(range(args.n)), num_inference_steps=args.steps,
               guidance_scale=args.guidance, return_influence=True, progress=False, batch_size=8)
    thirds = np.array_split(np.arange(args.steps), 3)
    print(f"machine: {platform.machine()}; {args.model}, n {args.n} held-out faces (prompt + mask), "
          f"{args.steps} steps, guidance {args.guidance}")
    print("mean mixing weight per region of the requested mask, early | middle | late thirds of the steps")
    header = "| collaborator | " + " | ".join(REGIONS) + " |"
    print(header + "\n|" + "---|" * (len(REGIONS) + 1))
    for k, name in enumerate(pipe.names):
        cells = []
        for classes in REGIONS.values():
            ids = [CLASS_ID[c] for c in classes]
            parts = []
            for t in thirds:
                values = [m[k][t].astype(np.float32).mean(0)[np.isin(c.mask, ids)] for m, c in zip(out.influence, conds)]
                values = np.concatenate(values)
                parts.append(f"{values.mean():.2f}" if values.size else "-")
            cells.append(" / ".join(parts))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
