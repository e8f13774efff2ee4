"""A bank of W+ codes, one per photo file: the targets of a mapper trained with pairs=projected.

Made by `python scripts/project_codes.py` (the photos inverted as `faceweave invert --backend
gan` inverts a face: encoder, then projector steps). The file is safetensors with "wplus"
(N, num_ws, w_dim) float32 and metadata: "files" (a JSON list, row order), "generator" (the
weight fingerprint of the generator the codes belong to), "model", "steps", "data", "split".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ...errors import FaceweaveError


def read_codes(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """file name -> (num_ws, w_dim) code, and the metadata; a one-line error for a bad file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise FaceweaveError(f"no code file at {path}; make one with scripts/project_codes.py")
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
        wplus = load_file(str(path))["wplus"]
        files = json.loads(meta["files"])
    except (SafetensorError, KeyError, ValueError, OSError) as e:
        raise FaceweaveError(f"{path} is not a code file of scripts/project_codes.py ({e})") from None
    if wplus.ndim != 3 or len(files) != wplus.shape[0]:
        raise FaceweaveError(f"{path}: {len(files)} files but codes of shape {tuple(wplus.shape)}")
    return dict(zip(files, wplus.float())), meta


def write_codes(path: str | os.PathLike, codes: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Atomically (a temporary file, then a rename): an interrupted write leaves the old file."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    files = sorted(codes)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"wplus": torch.stack([codes[f] for f in files]).float().contiguous()}, str(tmp),
              metadata={**meta, "files": json.dumps(files), "n": str(len(files))})
    os.replace(tmp, path)


def codes_for(path: str | os.PathLike | None, generator: str, needed_by: str) -> dict[str, torch.Tensor]:
    """A training run's bank: read_codes, refusing a missing file and codes of another generator
    (`generator`: the run's generator fingerprint) in one line each."""
    if not path:
        raise FaceweaveError(f"{needed_by} needs a bank of codes: --set codes=FILE "
                             "(made by scripts/project_codes.py)")
    codes, meta = read_codes(path)
    if meta.get("generator") != generator:
        raise FaceweaveError(f"the codes in {path} belong to another generator "
                             f"(fingerprint {meta.get('generator')}, this run's {generator}); "
                             "project the photos with this one")
    return codes


def known(codes: dict[str, torch.Tensor], batch: dict) -> list[bool]:
    """Per sample of a training batch: whether the bank holds its code (a mirrored photo has
    none: the code is the unmirrored photo's)."""
    flipped = batch.get("flipped")
    return [f in codes and not (flipped is not None and bool(flipped[i])) for i, f in enumerate(batch["file"])]
