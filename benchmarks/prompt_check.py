"""Do paraphrased prompts get their attributes? Prompts worded unlike any FaceSynth caption,
prompt only (no mask), several seeds each, judged by the bundled attribute classifier.

    python benchmarks/prompt_check.py --model diffusion-64 --seeds 16 [--grid docs/diffusion_prompts.png]
        [--no-layout-prior]

The attributes a prompt asks for are what `faceweave.text.parse_prompt` reads from it (the
same rule `faceweave evaluate` uses for prompt-only runs). Prints, per prompt, the share of
images that show each requested attribute (classifier probability on the right side of
0.5), the mean over them, and the same for random prompts' images as a chance baseline
(images generated from a different prompt, scored against this prompt's attributes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PROMPTS = [
    "a grinning gentleman with a silver beard wearing spectacles",
    "portrait of a young lady with golden hair and lipstick, not smiling",
    "an elderly bald man with a moustache",
    "a serious woman with black hair and bangs wearing earrings",
    "a cheerful blonde girl with glasses",
    "a brunette guy with a goatee and a wide grin",
    "a woman in a hat",
]


def _hits(probs: dict[str, float], wanted: dict[str, int]) -> dict[str, bool]:
    return {a: (probs[a] >= 0.5) == bool(v) for a, v in wanted.items() if a in probs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="diffusion-64")
    ap.add_argument("--seeds", type=int, default=16, help="images per prompt")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--sampler", default=None, help="the pipeline's sampler  [default: the pipeline's default]")
    ap.add_argument("--no-layout-prior", dest="layout_prior", action="store_false",
                    help="let the model invent each face's layout instead of following a drawn FaceSynth one")
    ap.add_argument("--grid", type=Path, default=None, help="write a PNG: one row per prompt")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import faceweave
    from faceweave.ruler import load_classifier
    from faceweave.text import parse_prompt

    pipe = faceweave.load(args.model)
    from faceweave.io import resize_image
    classifier = load_classifier()                      # the bundled 64 px classifier
    seeds = list(range(args.seeds))
    from faceweave.backends.diffusion import DEFAULT_SAMPLER
    from faceweave.synth.layout import DEFAULT_MATCH
    sampler = args.sampler or DEFAULT_SAMPLER
    images = {p: pipe(prompt=p, seeds=seeds, num_inference_steps=args.steps, guidance_scale=args.guidance,
                      sampler=sampler, layout_prior=args.layout_prior, progress=False).images for p in PROMPTS}
    probs = {p: classifier.predict(np.stack([resize_image(im, 64) for im in images[p]])) for p in PROMPTS}
    rows = []
    print(f"| prompt | asks for | hit rate | chance (other prompts' images) |\n|---|---|---|---|")
    for p in PROMPTS:
        wanted = parse_prompt(p)
        own = [np.mean(list(_hits(pr, wanted).values())) for pr in probs[p]]
        other = [np.mean(list(_hits(pr, wanted).values())) for q in PROMPTS if q != p for pr in probs[q]]
        per_attr = {a: float(np.mean([_hits(pr, wanted)[a] for pr in probs[p]])) for a in wanted}
        rows.append({"prompt": p, "wanted": wanted, "hit_rate": float(np.mean(own)),
                     "chance": float(np.mean(other)), "per_attribute": per_attr})
        asks = ", ".join(f"{a}={v}" for a, v in wanted.items())
        print(f"| {p} | {asks} | {np.mean(own):.3f} | {np.mean(other):.3f} |")
    mean, chance = np.mean([r["hit_rate"] for r in rows]), np.mean([r["chance"] for r in rows])
    print(f"| **mean** | | **{mean:.3f}** | {chance:.3f} |")
    print(f"({args.seeds} seeds per prompt, {args.steps} steps, {sampler}, guidance {args.guidance}, "
          f"layout prior {'on' if args.layout_prior else 'off'}, model {pipe.meta.get('path')})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean_hit_rate": mean, "mean_chance": chance,
                                         "seeds": args.seeds, "steps": args.steps, "guidance": args.guidance,
                                         "sampler": sampler, "layout_prior": args.layout_prior,
                                         "layout_match": DEFAULT_MATCH if args.layout_prior else None},
                                        indent=1))
    if args.grid:
        from faceweave.data.sheet import image_grid
        from faceweave.io import write_png
        per_row = min(8, args.seeds)
        write_png(args.grid, image_grid([im for p in PROMPTS for im in images[p][:per_row]], columns=per_row))


if __name__ == "__main__":
    main()
