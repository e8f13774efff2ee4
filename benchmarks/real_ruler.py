"""Measure the real-face ruler: the real parser, the derived labels, the identity distances.

    python benchmarks/real_ruler.py parser [--parsers parser-real-128,parser-128] [--sizes 64,128]
    python benchmarks/real_ruler.py labels [--parser parser-real-128]
    python benchmarks/real_ruler.py identity
    python benchmarks/real_ruler.py all [--json results.json]

--record writes each bundled parser's scores into its config.json ("metrics"), where
docs/models.md and docs/real-faces.md quote them from.

parser    mIoU (one confusion matrix over all pixels, as face-parsing papers report it) and
          IoU per class of each parser on the celebamask-1k validation split (its hand-made
          maps, nearest-neighbour to the size), and on the four real CelebAMask-HQ pairs of
          ../shared/data/real/pairs at 256 px (parsed at the parser's own size inside).
labels    the labels data.celebamask1k derives, read the way the real ruler reads them (the
          parser's mask of the photo, its hair pixels, dlib's age and gender), against the
          true CelebA attributes of the 24 photos in ../shared/data/real/celebahq_attributes.csv:
          agreement and the count of positives per attribute, and the majority-class rate.
identity  dlib identity distances: each shared photo against its mirror image and its 64 and
          128 px downscales (same person), and every pair of different shared photos.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np

from faceweave import io
from faceweave.conditions import CLASSES
from faceweave.eval import mask_scores
from faceweave.ruler import load_parser

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _per_class(scores: dict) -> dict:
    return {c: (None if v is None else round(v, 4)) for c, v in zip(CLASSES, scores["per_class_iou"])}


def parser_scores(name: str, sizes: list[int]) -> dict:
    from faceweave.data import celebamask1k
    from faceweave.data.unified import CAPTIONS_FILE, MASKS, IMAGES, read_records

    parser = load_parser(name)
    out: dict = {"trained_size": parser.size}
    for size in sizes:
        root = celebamask1k.prepared(size)
        records = [r for r in read_records(root / CAPTIONS_FILE) if r.get("split") == "val"]
        images = np.stack([io.read_image(root / IMAGES / r["file"]) for r in records])
        targets = np.stack([io.read_mask(root / MASKS / r["file"]) for r in records])
        start = time.perf_counter()
        pred = parser.predict(images)
        seconds = time.perf_counter() - start
        scores = mask_scores(pred, targets)
        out[f"celebamask1k_val_{size}"] = {"miou": round(scores["miou"], 4), "pixel_acc": round(scores["pixel_acc"], 4),
                                           "n": len(records), "per_class_iou": _per_class(scores),
                                           "sec_per_image": round(seconds / len(records), 5)}
        print(f"{name} on celebamask-1k val ({len(records)} photos, {size} px): mIoU {scores['miou']:.4f}, "
              f"pixel accuracy {scores['pixel_acc']:.4f}")
        print("  " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, scores["per_class_iou"]) if v is not None))
    pairs = sorted((SHARED / "real" / "pairs").glob("maskgan_*_mask.png"))
    if pairs:
        preds, targets = [], []
        for mask_path in pairs:
            photo = io.read_image(mask_path.with_name(mask_path.name.replace("_mask.png", ".jpg")))
            targets.append(io.read_mask(mask_path, size=photo.shape[0]))
            preds.append(parser.predict(photo))
        scores = mask_scores(np.stack(preds), np.stack(targets))
        out["real_maskgan_pairs"] = {"miou": round(scores["miou"], 4), "pixel_acc": round(scores["pixel_acc"], 4),
                                     "n": len(pairs), "per_class_iou": _per_class(scores)}
        print(f"{name} on the {len(pairs)} real pairs (256 px): mIoU {scores['miou']:.4f}, "
              f"pixel accuracy {scores['pixel_acc']:.4f}")
        print("  " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, scores["per_class_iou"]) if v is not None))
    return out


def _true_labels() -> dict[str, dict[str, int]]:
    path = SHARED / "real" / "celebahq_attributes.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {row.pop("file"): {k: int(int(v) == 1) for k, v in row.items()} for row in csv.DictReader(f)}


def label_agreement(parser_name: str) -> dict:
    from faceweave.data.celebamask1k import DERIVED_ATTRIBUTES
    from faceweave.eval.real import RealLabeller

    truth = _true_labels()
    files = sorted(truth)
    images = np.stack([io.read_image(SHARED / "real" / "photos" / f) for f in files])
    labeller = RealLabeller(load_parser(parser_name))
    probs = labeller.predict_proba(images)
    out = {}
    print(f"derived labels vs true CelebA attributes, {len(files)} photos ({images.shape[1]} px), "
          f"parser {parser_name}:")
    print(f"  {'attribute':22s} agree  derived+  true+  majority")
    for j, name in enumerate(DERIVED_ATTRIBUTES):
        derived = probs[:, j] > 0.5
        true = np.array([truth[f][name] for f in files], bool)
        agree = float((derived == true).mean())
        majority = float(max(true.mean(), 1 - true.mean()))
        out[name] = {"agreement": round(agree, 4), "derived_positive": int(derived.sum()),
                     "true_positive": int(true.sum()), "majority_rate": round(majority, 4)}
        print(f"  {name:22s} {agree:.3f}  {int(derived.sum()):8d}  {int(true.sum()):5d}  {majority:.3f}")
    mean = float(np.mean([v["agreement"] for v in out.values()]))
    print(f"  mean agreement {mean:.3f} over {len(out)} attributes")
    return {"per_attribute": out, "mean_agreement": round(mean, 4), "n": len(files)}


def identity_distances() -> dict:
    from faceweave.eval import faces

    files = sorted((SHARED / "real" / "photos").glob("*.jpg"))
    photos = [io.read_image(f) for f in files]
    base = faces.identity_embeddings(photos)
    variants = {"mirror": [np.ascontiguousarray(p[:, ::-1]) for p in photos],
                "128px": [io.resize_image(p, 128) for p in photos],
                "64px": [io.resize_image(p, 64) for p in photos]}
    out: dict = {"n_photos": len(files), "same_photo": {}}
    print(f"identity distances, {len(files)} shared photos (threshold {faces.SAME_PERSON_DISTANCE}):")
    for name, images in variants.items():
        d = np.linalg.norm(faces.identity_embeddings(images) - base, axis=1)
        out["same_photo"][name] = {"mean": round(float(d.mean()), 4), "max": round(float(d.max()), 4),
                                   "share_under_threshold": round(float((d < faces.SAME_PERSON_DISTANCE).mean()), 4)}
        print(f"  same photo vs {name:7s}: mean {d.mean():.3f}, max {d.max():.3f}, "
              f"under {faces.SAME_PERSON_DISTANCE}: {(d < faces.SAME_PERSON_DISTANCE).mean():.0%}")
    pairs = np.array([np.linalg.norm(base[i] - base[j]) for i, j in itertools.combinations(range(len(files)), 2)])
    out["different_photos"] = {"pairs": len(pairs), "mean": round(float(pairs.mean()), 4),
                               "min": round(float(pairs.min()), 4),
                               "share_under_threshold": round(float((pairs < faces.SAME_PERSON_DISTANCE).mean()), 4)}
    print(f"  different photos ({len(pairs)} pairs): mean {pairs.mean():.3f}, min {pairs.min():.3f}, "
          f"under {faces.SAME_PERSON_DISTANCE}: {(pairs < faces.SAME_PERSON_DISTANCE).mean():.1%}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["parser", "labels", "identity", "all"])
    ap.add_argument("--parsers", default="parser-real-128,parser-128", help="comma list: bundled names or folders")
    ap.add_argument("--sizes", default="64,128", help="celebamask-1k val sizes to parse (comma list)")
    ap.add_argument("--parser", default="parser-real-128", help="the parser the labels are read with")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--record", action="store_true", help="write the parsers' scores into their config.json")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    results: dict = {}
    if args.what in ("parser", "all"):
        sizes = [int(s) for s in args.sizes.split(",") if s]
        results["parsers"] = {name: parser_scores(name, sizes) for name in filter(None, args.parsers.split(","))}
        if args.record:
            from faceweave import checkpoint

            command = f"python benchmarks/real_ruler.py parser --parsers {args.parsers} --sizes {args.sizes}"
            for name, scores in results["parsers"].items():
                metrics = {**checkpoint.read_config(name).get("metrics", {}), **scores, "real_measured_by": command}
                checkpoint.update_config(name, metrics=metrics)
                print(f"recorded into {name}/config.json")
    if args.what in ("labels", "all"):
        results["labels"] = label_agreement(args.parser)
    if args.what in ("identity", "all"):
        results["identity"] = identity_distances()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
