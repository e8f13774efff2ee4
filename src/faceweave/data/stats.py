"""Class and attribute frequencies of a unified folder (FaceSynth or real): know your data."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..conditions import CLASSES, NUM_CLASSES
from ..errors import FaceweaveError
from ..io import read_mask
from .unified import read_records


def dataset_stats(root: str | os.PathLike) -> dict:
    """Per class: share of all pixels and share of images it appears in; per attribute: rate of 1s.

    Attributes are counted over the records that state them (unknown is not 'absent').
    """
    root = Path(root)
    records = read_records(root / "captions.jsonl")
    if not records:
        raise FaceweaveError(f"{root} holds no samples")
    pixels = np.zeros(NUM_CLASSES, np.int64)
    images = np.zeros(NUM_CLASSES, np.int64)
    n_masks = 0
    for rec in records:
        path = root / "masks" / rec["file"]
        if not path.exists():
            continue
        counts = np.bincount(read_mask(path).ravel(), minlength=NUM_CLASSES)
        pixels += counts
        images += counts > 0
        n_masks += 1
    attr_sum: dict[str, int] = {}
    attr_n: dict[str, int] = {}
    for rec in records:
        for name, value in (rec.get("attributes") or {}).items():
            attr_sum[name] = attr_sum.get(name, 0) + int(value)
            attr_n[name] = attr_n.get(name, 0) + 1
    total = max(int(pixels.sum()), 1)
    return {
        "n": len(records),
        "n_masks": n_masks,
        "classes": {name: {"pixel_share": float(pixels[i] / total),
                           "image_share": float(images[i] / n_masks) if n_masks else None}
                    for i, name in enumerate(CLASSES)},
        "attributes": {name: attr_sum[name] / attr_n[name] for name in sorted(attr_sum)},
    }


def format_stats(stats: dict) -> str:
    lines = [f"{stats['n']} samples, {stats['n_masks']} with masks", "",
             f"{'class':<12}{'pixels %':>10}{'images %':>10}"]
    for name, row in stats["classes"].items():
        img = "-" if row["image_share"] is None else f"{100 * row['image_share']:.1f}"
        lines.append(f"{name:<12}{100 * row['pixel_share']:>10.2f}{img:>10}")
    if stats["attributes"]:
        lines += ["", f"{'attribute':<22}{'% true':>8}"]
        lines += [f"{name:<22}{100 * v:>8.1f}" for name, v in stats["attributes"].items()]
    return "\n".join(lines)
