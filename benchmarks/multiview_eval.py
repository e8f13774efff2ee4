"""How well the multiview backend turns a face, measured on FaceSynth heads (exact pose and masks).

    python benchmarks/multiview_eval.py --model runs/multiview-64-facesynth/best --n 16 --json runs/multiview-eval.json
    python benchmarks/multiview_eval.py --calibrate          # the yaw estimator's fit (views.calibrate)
    python benchmarks/multiview_eval.py --model runs/multiview-64-facesynth/best --n 0 --figure docs/multiview.png \
        --ddgi runs/ddgi-64-multiview/last                   # the figure alone

Faces: FaceSynth test heads 0..n-1 (never trained on: training draws the train split), each
rendered frontal (yaw 0) at the model's size and inverted by the pipeline exactly as a photo
is (`views(image=..., align=False)`: yaw estimated from landmarks, encoder, `--invert-steps`
refinement steps), then rendered at each of --yaws; and, for comparison, faces of seeds
0..n-1 (mapping network, truncation 0.7) at the same yaws.

Per face and yaw:
  identity   dlib's identity distance (faceweave.eval.faces) of each non-frontal view to the
             same face's frontal view (target < 0.6: the same person)
  monotonic  whether the landmark yaw estimate (views.estimate_yaw) of the views strictly
             increases with the requested yaw: the share of faces for which it does (target >= 75 %);
             `ceiling` is the same share for the renderer's own views of the same heads
  yaw error  |estimated - requested| of each view, degrees
  mIoU       inverted FaceSynth heads only: the bundled parser's mask of each view against the
             renderer's exact mask of the same head at the same yaw (dataset-level mIoU per
             yaw); `ceiling` is the parser on the true renders, what a perfect generator scores
  seconds    per view (rendering one latent at one yaw) and per inversion, on this machine
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faceweave.backends.multiview import views as poses          # noqa: E402
from faceweave.backends.multiview.pipeline import parse_yaws      # noqa: E402
from faceweave.data.unified import facesynth_seed                 # noqa: E402

SAME_PERSON = 0.6


def _monotonic(estimates: list[float]) -> bool:
    return all(b > a for a, b in zip(estimates, estimates[1:]))


def _turned(sets: list[list[np.ndarray]], yaws: list[float]) -> dict:
    """identity distances to the frontal view, the landmark yaw of every view, monotonic share."""
    from faceweave.eval.faces import identity_distance, identity_embeddings
    front = yaws.index(0.0)
    per_yaw: dict[str, list[float]] = {f"{y:+g}": [] for y in yaws if y != 0.0}
    errors: dict[str, list[float]] = {f"{y:+g}": [] for y in yaws}
    monotonic = 0
    fronts = []
    for views in sets:
        emb = identity_embeddings(views, aligned=True)
        fronts.append(emb[front])
        for j, y in enumerate(yaws):
            if j != front:
                per_yaw[f"{y:+g}"].append(float(identity_distance(emb[j], emb[front])))
        est = [poses.estimate_yaw(v) for v in views]
        for y, e in zip(yaws, est):
            errors[f"{y:+g}"].append(abs(e - y))
        monotonic += _monotonic(est)
    every = [d for ds in per_yaw.values() for d in ds]
    # the same distance between the frontal views of different faces: what "another person" scores
    # here (blurry faces all look alike to the descriptor, so a low distance alone proves little)
    between = [float(identity_distance(a, b)) for i, a in enumerate(fronts) for b in fronts[i + 1:]]
    return {"identity_to_frontal": float(np.mean(every)),
            "identity_between_faces": float(np.mean(between)) if between else None,
            "identity_to_frontal_per_yaw": {k: round(float(np.mean(v)), 4) for k, v in per_yaw.items()},
            "identity_share_under_0_6": float(np.mean(np.array(every) < SAME_PERSON)),
            "yaw_monotonic_share": monotonic / len(sets),
            "yaw_error_per_yaw": {k: round(float(np.mean(v)), 2) for k, v in errors.items()}}


def evaluate(model: str, n: int, yaws: list[float], invert_steps: int) -> dict:
    import faceweave
    from faceweave.eval.metrics import mask_scores
    from faceweave.ruler import load_parser

    pipe = faceweave.load(model)
    s = pipe.size
    seed = facesynth_seed("test")
    parser = load_parser(size=64)
    inverted, truth_images, truth_masks, estimated, invert_seconds, view_seconds = [], [], [], [], [], []
    for i in range(n):
        frontal, _ = poses.render_at_yaw(seed, i, s, 0.0)
        out = pipe.views(image=frontal, yaws=yaws, invert_steps=invert_steps, align=False)
        inverted.append(out.views[0])
        estimated.append(out.metadata[0]["estimated_yaw"])
        invert_seconds.append(out.metadata[0]["invert_seconds"])
        view_seconds.append(out.metadata[0]["sec_per_view"])
        rendered = [poses.render_at_yaw(seed, i, s, y) for y in yaws]
        truth_images.append([im for im, _ in rendered])
        truth_masks.append([m for _, m in rendered])
    miou, ceiling = {}, {}
    for j, y in enumerate(yaws):
        pred = parser.predict(np.stack([v[j] for v in inverted]))
        exact = np.stack([m[j] for m in truth_masks])
        miou[f"{y:+g}"] = round(mask_scores(pred, exact)["miou"], 4)
        ceiling[f"{y:+g}"] = round(mask_scores(parser.predict(np.stack([t[j] for t in truth_images])), exact)["miou"], 4)
    seeds = pipe.views(seeds=list(range(n)), yaws=yaws)
    view_seconds += [m["sec_per_view"] for m in seeds.metadata]
    inv = _turned(inverted, yaws)
    # the same landmark test on the renderer's own views: how often a perfect model would pass
    truth_monotonic = float(np.mean([_monotonic([poses.estimate_yaw(v) for v in views]) for views in truth_images]))
    return {
        "model": model, "n": n, "yaws": yaws, "invert_steps": invert_steps,
        "inverted_facesynth": {**inv, "mask_miou": float(np.mean(list(miou.values()))), "mask_miou_per_yaw": miou,
                               "ceiling_mask_miou": float(np.mean(list(ceiling.values()))),
                               "ceiling_mask_miou_per_yaw": ceiling,
                               "input_yaw_estimate_mae": float(np.mean(np.abs(estimated))),
                               "ceiling_yaw_monotonic_share": truth_monotonic},
        "seeds": _turned(seeds.views, yaws),
        "sec_per_view": float(np.mean(view_seconds)), "sec_per_inversion": float(np.mean(invert_seconds)),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
    }


def figure(model: str, out: Path, ddgi: str | None, yaws: list[float], invert_steps: int) -> list[str]:
    """Rows of 5 views: 2 faces from FaceSynth masks through ddgi (the mask first; else from
    seeds 0, 1), 2 real photos of ../shared/data/real/photos (the aligned face first)."""
    import faceweave
    from faceweave.data.sheet import image_grid
    from faceweave.io import read_photo, write_png

    pipe = faceweave.load(model)
    rows, labels = [], []
    if ddgi:
        from faceweave.backends.multiview.pipeline import ddgi_multiview
        from faceweave.conditions import Conditions, colorize_mask
        from faceweave.synth import render
        d = faceweave.load(ddgi)
        mv = ddgi_multiview(d)
        for i in range(2):
            mask = render(facesynth_seed("test"), 100 + i, pipe.size, captions=0).mask
            rows.append([colorize_mask(mask), *mv.views_from_ddgi(d, [Conditions(mask=mask)], [i], yaws).views[0]])
            labels.append(f"ddgi from FaceSynth test mask {100 + i}")
    else:
        rows += pipe.views(seeds=[0, 1], yaws=yaws).views
        labels += ["seed 0", "seed 1"]
    photos = sorted((ROOT.parent / "shared" / "data" / "real" / "photos").glob("*.jpg"))[:2]
    for p in photos:
        out_p = pipe.views(image=read_photo(p), yaws=yaws, invert_steps=invert_steps, name=p.name)
        rows.append([out_p.aligned[0], *out_p.views[0]])
        labels.append(f"{p.name} (aligned photo, then views; estimated yaw {out_p.metadata[0]['estimated_yaw']:+.1f})")
    width = max(len(r) for r in rows)
    cells = []
    for r in rows:
        pad = [np.full_like(r[0], 255)] * (width - len(r))
        cells += pad + list(r)
    out.parent.mkdir(parents=True, exist_ok=True)
    big = [np.kron(c, np.ones((2, 2, 1), np.uint8)) for c in cells]
    write_png(out, image_grid(big, columns=width))
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="multiview checkpoint folder")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--yaws", default="-30,-15,0,15,30")
    ap.add_argument("--invert-steps", type=int, default=150)
    ap.add_argument("--calibrate", action="store_true", help="fit the yaw estimator on FaceSynth and print its errors")
    ap.add_argument("--figure", default=None, help="also write the figure here (e.g. docs/multiview.png)")
    ap.add_argument("--ddgi", default=None, help="a ddgi checkpoint on this multiview model, for the figure")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    report: dict = {}
    if args.calibrate:
        t0 = time.perf_counter()
        report["yaw_calibration"] = {**poses.calibrate(300, 64), "seconds": round(time.perf_counter() - t0, 1),
                                     "gain_in_use": poses.YAW_GAIN}
        c = report["yaw_calibration"]
        print(f"yaw estimator on FaceSynth (300 fit + 300 held-out heads, 64 px): gain {c['gain']:.3f} "
              f"(in use {c['gain_in_use']}), fit MAE {c['fit_mae']:.2f} deg, held-out MAE {c['heldout_mae']:.2f} deg, "
              f"held-out max {c['heldout_max']:.1f} deg")
    yaws = parse_yaws(args.yaws)
    if args.model and args.n > 0:
        if 0.0 not in yaws:
            raise SystemExit("--yaws must include 0 (the frontal view the others are compared with)")
        t0 = time.perf_counter()
        r = evaluate(args.model, args.n, yaws, args.invert_steps)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        report["multiview"] = r
        inv, sd = r["inverted_facesynth"], r["seeds"]
        print(f"{args.model}: {args.n} FaceSynth test heads inverted from their frontal view "
              f"({args.invert_steps} steps), views at {yaws}")
        print(f"  identity to frontal (dlib): {inv['identity_to_frontal']:.3f} (target < 0.6; "
              f"{inv['identity_share_under_0_6']:.0%} of views under 0.6) per yaw {inv['identity_to_frontal_per_yaw']}; "
              f"between different faces' frontal views {inv['identity_between_faces']:.3f}")
        print(f"  landmark yaw monotonic in the requested yaw: {inv['yaw_monotonic_share']:.0%} of faces (target >= 75%)"
              f"; |error| per yaw {inv['yaw_error_per_yaw']}; the renderer's own views pass "
              f"{inv['ceiling_yaw_monotonic_share']:.0%}")
        print(f"  mask mIoU vs the renderer's exact masks at the same yaw: {inv['mask_miou']:.3f} "
              f"(ceiling {inv['ceiling_mask_miou']:.3f}) per yaw {inv['mask_miou_per_yaw']}")
        print(f"  seeds 0..{args.n - 1}: identity to frontal {sd['identity_to_frontal']:.3f} "
              f"(between faces {sd['identity_between_faces']:.3f}) "
              f"({sd['identity_share_under_0_6']:.0%} under 0.6), yaw monotonic {sd['yaw_monotonic_share']:.0%}")
        print(f"  seconds per view {r['sec_per_view']:.4f}, per inversion {r['sec_per_inversion']:.2f} ({r['machine']})")
    if args.model and args.figure:
        labels = figure(args.model, Path(args.figure), args.ddgi, yaws, args.invert_steps)
        report["figure"] = {"path": args.figure, "rows": labels}
        print(f"wrote {args.figure}: " + "; ".join(labels))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
