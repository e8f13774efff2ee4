"""Checkpoints: a folder with config.json + model.safetensors. Never pickle.

    DIR/config.json         {"format": "faceweave-checkpoint", "format_version": 1,
                             "family": "parser", "config": {every constructor argument},
                             ...extra keys (metrics, training recipe, step)}
    DIR/model.safetensors   the weights (fp16 for bundled models, fp32 while training)
    DIR/NAME.safetensors    optional further tensor files written in the same atomic step
                            (training checkpoints keep the optimizer state in optimizer.safetensors)

Writes are atomic: the folder is written under a temporary name beside the target and
renamed into place, so a crash leaves the previous checkpoint intact. Loading checks the
family and the format version and names what is wrong (a missing file, another family).

Bundled default models live in `faceweave/assets/models/NAME/` and are found by name.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import FaceweaveError

FORMAT = "faceweave-checkpoint"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def bundled_dir() -> Path:
    """Where the bundled default models live inside the installed package."""
    return Path(str(resources.files("faceweave") / "assets" / "models"))


def bundled_models() -> list[str]:
    root = bundled_dir()
    return sorted(p.name for p in root.iterdir() if (p / CONFIG).exists()) if root.is_dir() else []


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A checkpoint folder from a path or a bundled model name."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    bundled = bundled_dir() / str(name_or_path)
    if bundled.is_dir():
        return bundled
    names = ", ".join(bundled_models()) or "none"
    raise FaceweaveError(f"no checkpoint folder or bundled model named {str(name_or_path)!r} "
                         f"(bundled models: {names})")


def save(path: str | os.PathLike, family: str, config: dict[str, Any], state: dict[str, torch.Tensor],
         dtype: torch.dtype | None = None, extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
         **extra: Any) -> Path:
    """Write a checkpoint folder atomically. `dtype` casts floating tensors (fp16 for shipping).

    extra_tensors: {NAME: tensors} written as NAME.safetensors beside the weights, never cast
    (e.g. {"optimizer": ...} for resuming training); read back with `load_tensors`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors = {}
        for k, v in state.items():
            v = v.detach().to("cpu")
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
            tensors[k] = v.contiguous()
        save_file(tensors, str(tmp / WEIGHTS), metadata={"family": family})
        for name, more in (extra_tensors or {}).items():
            if f"{name}.safetensors" == WEIGHTS or not name.isidentifier():
                raise ValueError(f"extra tensor file name {name!r} must be an identifier other than 'model'")
            save_file({k: v.detach().to("cpu").contiguous() for k, v in more.items()},
                      str(tmp / f"{name}.safetensors"), metadata={"family": family})
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "family": family,
                "config": config, **extra}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_config(path: str | os.PathLike, family: str | None = None) -> dict[str, Any]:
    """config.json of a checkpoint, validated (format, version, family)."""
    path = resolve(path)
    cfg_path = path / CONFIG
    if not cfg_path.exists():
        raise FaceweaveError(f"{path} is not a faceweave checkpoint: {CONFIG} is missing")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FaceweaveError(f"{cfg_path} is not valid JSON ({exc.__class__.__name__}); "
                             "the checkpoint is damaged, re-export or retrain it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "family" not in meta:
        raise FaceweaveError(f"{cfg_path} is not a faceweave checkpoint config (no format/family keys)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FaceweaveError(f"{path} uses checkpoint format {meta['format_version']}, newer than this "
                             f"faceweave understands ({FORMAT_VERSION}); upgrade faceweave")
    if family is not None and meta["family"] != family:
        raise FaceweaveError(f"{path} holds a {meta['family']!r} model, not a {family!r} model; "
                             f"pass a {family} checkpoint")
    meta["path"] = str(path)
    return meta


def update_config(path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """Add or replace top-level keys of a checkpoint's config.json (e.g. measured metrics), atomically."""
    meta = read_config(path)
    folder = Path(meta.pop("path"))
    meta.update(extra)
    tmp = folder / f".{CONFIG}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, folder / CONFIG)
    return meta


def load(path: str | os.PathLike, family: str | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config.json contents, state dict) of a checkpoint folder or bundled model name."""
    meta = read_config(path, family)
    weights = Path(meta["path"]) / WEIGHTS
    if not weights.exists():
        raise FaceweaveError(f"{meta['path']} has no {WEIGHTS}; the checkpoint is incomplete")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FaceweaveError(f"{weights} is not a readable safetensors file ({exc}); "
                             "the checkpoint is damaged, re-export or retrain it") from None
    return meta, state


def load_tensors(path: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    """NAME.safetensors of a checkpoint folder (written by save(extra_tensors=...))."""
    path = resolve(path)
    file = path / f"{name}.safetensors"
    if not file.exists():
        raise FaceweaveError(f"{path} has no {file.name}; the checkpoint is incomplete")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FaceweaveError(f"{file} is not a readable safetensors file ({exc}); "
                             "the checkpoint is damaged") from None


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Load weights strictly, casting to the model's dtypes; name mismatches in one line."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise FaceweaveError(f"{where} does not match the model: {len(missing)} missing and "
                             f"{len(unexpected)} unexpected tensors (e.g. {(missing + unexpected)[:3]}); "
                             "was it saved by another version or configuration?")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise FaceweaveError(f"{where}: tensor {k} has shape {tuple(v.shape)}, the model expects "
                                 f"{tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
