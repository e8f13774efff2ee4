"""Measure the ruler's shipped models: held-out FaceSynth and the four real CelebAMask-HQ pairs.

    python benchmarks/eval_ruler.py [--n 500] [--parsers parser-64,parser-128]
                                    [--classifiers classifier-64] [--real ../shared/data/real]
                                    [--record] [--json results.json]

Parsers: n FaceSynth *test*-split faces (a seed range no training run reads) at the
parser's own size; dataset-level mIoU and pixel accuracy from faceweave.eval.mask_scores
(one confusion matrix over all pixels), per-class IoU. Then the real photos
pairs/maskgan_{0..3}.jpg (256 px) against their CelebAMask-HQ label maps (512 px index
PNGs, brought to 256 px with nearest-neighbour): per photo and pooled. Skipped with a
message when the folder is absent.
Classifiers: the same n test faces at the classifier's size; accuracy per attribute
(probability > 0.5 vs the rendered truth) and their mean.
--record writes the numbers into the bundled models' config.json ("metrics"), which is
where docs/models.md quotes them from.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from faceweave import checkpoint, io
from faceweave.conditions import CLASSES
from faceweave.data import FaceSynthDataset
from faceweave.eval import attribute_accuracy, mask_scores
from faceweave.ruler import load_classifier, load_parser

REAL_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def _faces(n: int, size: int):
    data = FaceSynthDataset(size, n=n, split="test")
    return [data.render(i) for i in range(n)]


def _rounded(scores: dict) -> dict:
    return {"miou": round(scores["miou"], 4), "pixel_acc": round(scores["pixel_acc"], 4)}


def eval_parser(name: str, n: int, real: Path) -> dict:
    parser = load_parser(name)
    faces = _faces(n, parser.size)
    images, masks = np.stack([f.image for f in faces]), np.stack([f.mask for f in faces])
    start = time.perf_counter()
    pred = parser.predict(images)
    seconds = time.perf_counter() - start
    scores = mask_scores(pred, masks)
    result = {"facesynth_test": {**_rounded(scores), "n": n, "size": parser.size, "split": "test",
                                 "per_class_iou": {c: (None if v is None else round(v, 4))
                                                   for c, v in zip(CLASSES, scores["per_class_iou"])},
                                 "sec_per_image": round(seconds / n, 5)}}
    print(f"\n{name} ({parser.size} px) on {n} held-out FaceSynth faces: mIoU {scores['miou']:.4f}, "
          f"pixel accuracy {scores['pixel_acc']:.4f}, {1000 * seconds / n:.2f} ms/image")
    print("  " + "  ".join(f"{c} {v:.3f}" if v is not None else f"{c} -"
                           for c, v in zip(CLASSES, scores["per_class_iou"])))

    pairs = sorted(real.glob("pairs/maskgan_*_mask.png")) if real.is_dir() else []
    if not pairs:
        print(f"  real photos: skipped, no pairs/maskgan_*_mask.png under {real}")
        return result
    photos, targets, per_photo = [], [], {}
    for mask_path in pairs:
        photo = io.read_image(mask_path.with_name(mask_path.name.replace("_mask.png", ".jpg")))
        target = io.read_mask(mask_path, size=photo.shape[0])
        predicted = parser.predict(photo)
        per_photo[mask_path.name.replace("_mask.png", ".jpg")] = _rounded(mask_scores(predicted, target))
        photos.append(predicted)
        targets.append(target)
    pooled = mask_scores(np.stack(photos), np.stack(targets))
    result["real_maskgan"] = {**_rounded(pooled), "n": len(pairs), "per_photo": per_photo,
                              "per_class_iou": {c: (None if v is None else round(v, 4))
                                                for c, v in zip(CLASSES, pooled["per_class_iou"])}}
    print(f"  real CelebAMask-HQ photos ({len(pairs)}, {photos[0].shape[0]} px): mIoU {pooled['miou']:.4f}, "
          f"pixel accuracy {pooled['pixel_acc']:.4f}")
    for file, s in per_photo.items():
        print(f"    {file}: mIoU {s['miou']:.4f}, pixel accuracy {s['pixel_acc']:.4f}")
    print("    " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, pooled["per_class_iou"]) if v is not None))
    return result


def eval_classifier(name: str, n: int, size: int | None = None) -> dict:
    """Accuracy on n test faces rendered at `size` (default: the classifier's own; a larger
    size checks the downsampling that lets one classifier serve every resolution)."""
    clf = load_classifier(name)
    size = size or clf.size
    faces = _faces(n, size)
    images = np.stack([f.image for f in faces])
    truth = np.array([[f.attributes[a] for a in clf.attributes] for f in faces], np.float32)
    start = time.perf_counter()
    probs = clf.predict_proba(images)
    seconds = time.perf_counter() - start
    scores = attribute_accuracy(probs, truth, names=clf.attributes)
    per = {a: round(v, 4) for a, v in scores["per_attribute"].items()}
    mean = float(np.mean(list(scores["per_attribute"].values())))
    base = {a: round(float(max(truth[:, j].mean(), 1 - truth[:, j].mean())), 4) for j, a in enumerate(clf.attributes)}
    print(f"\n{name} ({clf.size} px) on {n} held-out {size} px FaceSynth faces: mean per-attribute accuracy {mean:.4f} "
          f"(majority-class baseline {np.mean(list(base.values())):.4f}), {1000 * seconds / n:.2f} ms/image")
    for a in sorted(per, key=per.get):
        print(f"  {a:22s} {per[a]:.4f}  (baseline {base[a]:.4f})")
    key = "facesynth_test" if size == clf.size else f"facesynth_test_{size}px"
    return {key: {"mean_attr_acc": round(mean, 4), "n": n, "size": size, "split": "test",
                               "per_attribute": per, "majority_baseline": base,
                               "sec_per_image": round(seconds / n, 5)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="held-out FaceSynth faces per model")
    ap.add_argument("--parsers", default="parser-64,parser-128", help="comma list: bundled names or folders")
    ap.add_argument("--classifiers", default="classifier-64", help="comma list: bundled names or folders")
    ap.add_argument("--classifier-sizes", type=lambda v: [int(x) for x in v.split(",") if x], default=[128],
                    help="also score the classifiers on faces rendered at these sizes (comma list)")
    ap.add_argument("--real", type=Path, default=REAL_DEFAULT, help="the shared real-data folder")
    ap.add_argument("--record", action="store_true", help="write the numbers into the models' config.json")
    ap.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    results = {}
    for name in filter(None, args.parsers.split(",")):
        results[name] = eval_parser(name, args.n, args.real)
    for name in filter(None, args.classifiers.split(",")):
        results[name] = eval_classifier(name, args.n)
        for size in args.classifier_sizes:
            results[name].update(eval_classifier(name, args.n, size))
    command = f"python benchmarks/eval_ruler.py --n {args.n}"
    if args.record:
        for name, metrics in results.items():
            checkpoint.update_config(name, metrics={**metrics, "measured_by": command})
        print(f"\nrecorded into config.json of: {', '.join(results)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
