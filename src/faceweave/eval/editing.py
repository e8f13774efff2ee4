"""`faceweave evaluate --edit`: how well a backend edits real faces and keeps the rest.

Protocol (written into metrics.json["protocol"]):

  faces     0..n-1 of the FaceSynth *test* split at --size, each with its own mask and first
            caption as the source conditions.
  edit      a hairstyle change: face i's hair is replaced by the hair silhouette of face i+1,
            drawn only over face i's hair and background (the face itself is never painted
            over); the target conditions are that mask and the same caption.
  region    the pixels whose class changed, dilated by 2 px: where the edit may change the
            photo (the backend's own rule for mask edits).

Metrics (all over the n faces):

  recon_psnr            invert + regenerate under the photo's own conditions, nothing pinned:
                        PSNR (dB) against the photo; the bound on how faithful an edit can be
  recon_feature_dist    cosine distance of the classifier's features, photo vs reconstruction
  edit_psnr_outside     PSNR outside the region, photo vs edit (inf: untouched)
  edit_mae_outside      mean absolute error outside the region (0..255)
  edit_region_acc       share of region pixels the parser reads as the target class: did the
                        edit happen
  edit_region_acc_before  the same for the unedited photo: what "no edit" scores
  recon_identity_dist   dlib identity distance (eval.faces), photo vs reconstruction; below
                        SAME_PERSON_DISTANCE (0.6) dlib calls two faces one person
  edit_identity_dist    the same, photo vs edit: is it still the same person
  edit_same_person      share of edits within 0.6 of their photo
  sec_per_edit          wall clock per edit (inversion + regeneration)
The identity metrics are null when the real-face instruments are not installed
(pip install 'faceweave[real]').
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import synth
from ..conditions import CLASS_ID, Conditions, colorize_mask
from ..data.unified import facesynth_seed
from ..errors import FaceweaveError
from .metrics import masked_preservation, psnr

HAIR, BACKGROUND = CLASS_ID["hair"], CLASS_ID["background"]
EDIT_STEPS = 20


def hairstyle_edit(mask: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """mask with its hair replaced by donor's hair silhouette, only over hair and background."""
    free = (mask == HAIR) | (mask == BACKGROUND)
    target = mask.copy()
    target[free] = np.where(donor[free] == HAIR, HAIR, BACKGROUND)
    return target


def identity_scores(originals: np.ndarray, recons: np.ndarray, edits: np.ndarray) -> dict:
    """Identity distances photo -> reconstruction and photo -> edit (null without dlib)."""
    keys = ("recon_identity_dist", "edit_identity_dist", "edit_same_person")
    try:
        from . import faces

        photo = faces.identity_embeddings(list(originals))
        recon = faces.identity_distance(photo, faces.identity_embeddings(list(recons)))
        edit = faces.identity_distance(photo, faces.identity_embeddings(list(edits)))
    except (ImportError, FaceweaveError):
        return dict.fromkeys(keys)
    return dict(zip(keys, (float(np.mean(recon)), float(np.mean(edit)),
                           float(np.mean(edit < faces.SAME_PERSON_DISTANCE)))))


def evaluate_editing(backend, n: int = 50, size: int = 64, steps: int = EDIT_STEPS, parser=None, classifier=None,
                     progress: bool = True) -> tuple[dict, list[np.ndarray]]:
    """Run the protocol above; returns (metrics, rows of pictures for the grid)."""
    from .. import ruler
    from ..backends.diffusion import changed_region

    if not hasattr(backend, "edit"):
        raise FaceweaveError(f"backend {backend.name!r} cannot edit photos; --edit needs one that can (diffusion)")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10_000:
        raise FaceweaveError(f"--n for --edit must be from 1 to 10000, got {n!r}")
    parser = parser if parser is not None and not isinstance(parser, (str, os.PathLike)) \
        else ruler.load_parser(parser, size=size)
    classifier = classifier if classifier is not None and not isinstance(classifier, (str, os.PathLike)) \
        else ruler.load_classifier(classifier, size=size)
    seed = facesynth_seed("test")
    originals, recons, edits, regions, targets, rows = [], [], [], [], [], []
    seconds = 0.0
    for i in tqdm(range(n), desc=f"edit {backend.name}", unit="face", disable=not progress):
        face, donor = synth.render(seed, i, size), synth.render(seed, i + 1, size, captions=0)
        target = hairstyle_edit(face.mask, donor.mask)
        source = Conditions(prompt=face.captions[0], mask=face.mask)
        wanted = Conditions(prompt=face.captions[0], mask=target)
        start = time.perf_counter()
        edited = backend.edit(face.image, source, wanted, steps=steps)
        seconds += time.perf_counter() - start
        recon = backend.reconstruct(face.image, source, steps=steps)
        originals.append(face.image)
        recons.append(recon)
        edits.append(edited)
        regions.append(changed_region(face.mask, target, size))
        targets.append(target)
        if len(rows) < 6:
            rows.append([face.image, colorize_mask(face.mask), colorize_mask(target), edited, recon])
    originals, recons, edits = np.stack(originals), np.stack(recons), np.stack(edits)
    regions, targets = np.stack(regions), np.stack(targets)
    feats = classifier.features(np.concatenate([originals, recons]))
    a, b = feats[:n], feats[n:]
    cosine = 1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    preserved = masked_preservation(originals, edits, regions)

    def region_acc(images: np.ndarray) -> float | None:
        parsed = parser.predict(images)
        inside = regions.sum()
        return float(((parsed == targets) & regions).sum() / inside) if inside else None

    identity = identity_scores(originals, recons, edits)
    metrics = {
        "recon_psnr": float(np.mean([psnr(o, r) for o, r in zip(originals, recons)])),
        "recon_feature_dist": float(cosine.mean()),
        "edit_psnr_outside": preserved["psnr_outside"],
        "edit_mae_outside": preserved["mae_outside"],
        "edit_region_acc": region_acc(edits),
        "edit_region_acc_before": region_acc(originals),
        **identity,
        "sec_per_edit": seconds / n,
        "n": n,
        "protocol": {
            "task": "edit", "faces": f"FaceSynth test split faces 0..{n - 1} at {size} px",
            "edit": "hairstyle: face i's hair replaced by face i+1's hair silhouette over hair and background",
            "region": "changed pixels dilated by 2 px", "steps": steps, "backend": backend.describe(),
            "recon_psnr": "mean per-image PSNR (dB), photo vs invert+regenerate under its own mask and caption",
            "timing": f"sec_per_edit: wall clock of one edit (inversion + regeneration); {platform.machine()}, "
                      f"{os.cpu_count()} CPU cores",
        },
    }
    return metrics, rows


def write_editing(metrics: dict, rows: list, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """metrics.json and grid.png (photo | mask | edited mask | edit | reconstruction) into out."""
    from ..data.sheet import image_grid
    from ..io import output_folder, write_png

    with output_folder(out, overwrite) as tmp:         # all at once or not at all
        write_png(tmp / "grid.png", image_grid([p for row in rows for p in row], columns=5))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return Path(out).expanduser().absolute()
