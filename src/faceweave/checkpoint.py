"""Checkpoints: a folder with config.json + model.safetensors. Never pickle.

    DIR/config.json         {"format": "faceweave-checkpoint", "format_version": 1,
                             "family": "parser", "config": {every constructor argument},
                             ...extra keys (metrics, training recipe, step)}
    DIR/model.safetensors   the weights (fp16 or int8 storage for bundled models, fp32 while training)
    DIR/NAME.safetensors    optional further tensor files written in the same atomic step
                            (training checkpoints keep the optimizer state in optimizer.safetensors)

Writes are atomic: the folder is written under a temporary name beside the target and
renamed into place, so a crash leaves the previous checkpoint intact. Loading checks the
family and the format version and names what is wrong (a missing file, another family).

int8 storage (`save(..., storage="int8")`, config.json "storage": "int8", format version 2):
every conv/linear weight (a floating tensor named `*.weight` or `*_weight` with >= 2 dims and at least
INT8_MIN_ELEMENTS elements) is stored as `NAME::int8` (int8) and `NAME::scale` (fp16, one
per output channel, dim 0, kept as a [C, 1, ...] tensor): symmetric absmax quantisation,
scale = max|w| / 127 over the channel, q = round(w / scale). Every other floating tensor is
fp16. `load` dequantizes (q * scale, float32), so callers see the usual state dict. Half
the bytes of fp16 for the weights that make up nearly all of a model.

Shared tensors (config.json "shared"): a checkpoint may leave out tensors that another
checkpoint stores byte for byte (gan-64's StyleGAN2 generator is stylegan2-64's), listing
[{"prefix": "generator.", "model": "stylegan2-64", "sha256": ...}]; `load` reads every stored
tensor under the prefix from that model (a bundled name, or a folder relative to this one)
and checks the digest of those stored bytes, so a changed source fails loudly instead of
changing the images. `share` writes such a checkpoint; `convert` gives the complete one.

Bundled default models live in `faceweave/assets/models/NAME/` and are found by name.
"""
from __future__ import annotations

import hashlib
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
FORMAT_VERSION = 2            # the newest this faceweave reads: 2 adds int8 storage (written only then)
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INT8_KEY = "::int8"           # NAME::int8 holds the int8 weight of tensor NAME ...
SCALE_KEY = "::scale"         # ... and NAME::scale its per-output-channel fp16 scale
INT8_MIN_ELEMENTS = 1024      # smaller weights (a 1-channel output conv, tiny heads) stay fp16
STORAGES = ("fp16", "int8")   # what `save(storage=...)` writes; without it tensors keep their dtype
SHARED = "shared"             # config.json: tensors read from another checkpoint (module docstring)


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


def is_int8_weight(name: str, tensor: torch.Tensor, min_elements: int = INT8_MIN_ELEMENTS) -> bool:
    """Whether int8 storage quantizes this tensor: a conv/linear/embedding weight of some size."""
    return (tensor.is_floating_point() and name.rsplit(".", 1)[-1].endswith("weight")   # weight, in_proj_weight
            and tensor.dim() >= 2 and tensor.numel() >= min_elements)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, fp16 scale [C, 1, ...]): symmetric absmax per output channel (dim 0).

    The scale is rounded to fp16 first and q computed from the rounded scale, so
    |q * scale - w| <= scale / 2 for every element (a channel of zeros gets scale 0, q 0).
    """
    w = weight.detach().to("cpu", torch.float32)
    absmax = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True)
    scale = (absmax / 127).to(torch.float16)
    s = scale.float()
    q = torch.where(s > 0, torch.round(w / torch.where(s > 0, s, torch.ones_like(s))), torch.zeros_like(w))
    return q.clamp_(-127, 127).to(torch.int8), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.to(torch.float32) * scale.to(torch.float32)


def _stored_tensors(state: dict[str, torch.Tensor], dtype: torch.dtype | None, storage: str | None,
                    min_elements: int) -> dict[str, torch.Tensor]:
    """The tensors as written to model.safetensors for a storage (see the module docstring)."""
    if storage is not None and storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES} or None, got {storage!r}")
    if storage is not None and dtype not in (None, torch.float16):
        raise ValueError(f"storage={storage!r} writes fp16 floating tensors; do not also pass dtype={dtype}")
    if storage is not None:
        dtype = torch.float16
    tensors = {}
    for k, v in state.items():
        if INT8_KEY in k or SCALE_KEY in k:
            raise ValueError(f"tensor name {k!r} contains {INT8_KEY!r} or {SCALE_KEY!r}, reserved for int8 storage")
        v = v.detach().to("cpu")
        if storage == "int8" and is_int8_weight(k, v, min_elements):
            q, scale = quantize_int8(v)
            if torch.isfinite(scale).all():          # a weight beyond fp16's range stays as it is
                tensors[k + INT8_KEY], tensors[k + SCALE_KEY] = q.contiguous(), scale.contiguous()
                continue
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    return tensors


def int8_round_trip(state: dict[str, torch.Tensor], min_elements: int = INT8_MIN_ELEMENTS) -> dict[str, torch.Tensor]:
    """The state dict an int8 save and load of `state` gives back (without writing files)."""
    return _dequantized(_stored_tensors(state, None, "int8", min_elements), Path("<memory>"))


def save(path: str | os.PathLike, family: str, config: dict[str, Any], state: dict[str, torch.Tensor],
         dtype: torch.dtype | None = None, extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
         storage: str | None = None, copy_files: list[Path] | None = None,
         int8_min_elements: int = INT8_MIN_ELEMENTS, **extra: Any) -> Path:
    """Write a checkpoint folder atomically. `dtype` casts floating tensors (fp16 for shipping).

    storage: "fp16" (every floating tensor fp16) or "int8" (conv/linear weights int8 with a
    per-output-channel fp16 scale, the rest fp16; see the module docstring); recorded in
    config.json as "storage". None keeps today's behaviour: tensors cast by `dtype` or as given.
    extra_tensors: {NAME: tensors} written as NAME.safetensors beside the weights, never cast
    (e.g. {"optimizer": ...} for resuming training); read back with `load_tensors`.
    copy_files: other files or folders (a model card, EMA weights, the checkpoints a model
    refers to) copied into the folder in the same atomic step.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors = _stored_tensors(state, dtype, storage, int8_min_elements)
        save_file(tensors, str(tmp / WEIGHTS), metadata={"family": family})
        for name, more in (extra_tensors or {}).items():
            if f"{name}.safetensors" == WEIGHTS or not name.isidentifier():
                raise ValueError(f"extra tensor file name {name!r} must be an identifier other than 'model'")
            save_file({k: v.detach().to("cpu").contiguous() for k, v in more.items()},
                      str(tmp / f"{name}.safetensors"), metadata={"family": family})
        for file in copy_files or []:
            file = Path(file)
            if file.name in (CONFIG, WEIGHTS) or (tmp / file.name).exists():
                raise ValueError(f"copy_files: {file.name} would replace a file this checkpoint writes")
            if Path(file).is_dir():
                shutil.copytree(file, tmp / file.name)
            else:
                shutil.copy2(file, tmp / file.name)
        int8 = any(k.endswith(INT8_KEY) for k in tensors)
        meta = {"format": FORMAT, "format_version": 2 if int8 else 1, "family": family,
                "config": config, **({"storage": storage} if storage else {}), **extra}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the finished folder `tmp` at `path` by renames, removing what was there."""
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    if meta.get("storage", "fp16") not in STORAGES:
        raise FaceweaveError(f"{path} stores its weights as {meta['storage']!r}, which this faceweave does not "
                             f"read (it reads {', '.join(STORAGES)}); upgrade faceweave")
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
    """(config.json contents, state dict) of a checkpoint folder or bundled model name.

    int8-stored weights come back dequantized to float32 under their own names; every
    other tensor as stored (fp16 in a bundled model)."""
    meta = read_config(path, family)
    weights = Path(meta["path"]) / WEIGHTS
    if not weights.exists():
        raise FaceweaveError(f"{meta['path']} has no {WEIGHTS}; the checkpoint is incomplete")
    state = _read_weights(weights)
    for spec in meta.get(SHARED) or []:
        state.update(_shared_tensors(meta, spec, state))
    return meta, _dequantized(state, weights)


def _read_weights(weights: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FaceweaveError(f"{weights} is not a readable safetensors file ({exc}); "
                             "the checkpoint is damaged, re-export or retrain it") from None


def stored_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the stored tensors (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        h.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _source_folder(meta: dict[str, Any], model: str) -> Path:
    near = Path(meta["path"]) / model
    return near if (near / CONFIG).exists() else resolve(model)


def _shared_tensors(meta: dict[str, Any], spec: Any, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored tensors one "shared" entry of config.json names, checked against its digest."""
    where = meta["path"]
    if not (isinstance(spec, dict) and isinstance(spec.get("prefix"), str) and spec["prefix"]
            and isinstance(spec.get("model"), str) and isinstance(spec.get("sha256"), str)):
        raise FaceweaveError(f"{where}/{CONFIG}: a \"{SHARED}\" entry needs prefix, model and sha256, got {spec!r}; "
                             "the checkpoint is damaged, re-export it")
    prefix = spec["prefix"]
    if any(k.startswith(prefix) for k in own):
        raise FaceweaveError(f"{where}: tensors under {prefix!r} are both stored and shared from {spec['model']}; "
                             "the checkpoint is damaged, re-export it")
    try:
        folder = _source_folder(meta, spec["model"])
    except FaceweaveError:
        raise FaceweaveError(f"{where} takes its {prefix.rstrip('.')} weights from {spec['model']!r}, which is "
                             "missing; install the complete faceweave package or pass a complete checkpoint") from None
    tensors = {k: v for k, v in _read_weights(folder / WEIGHTS).items() if k.startswith(prefix)}
    if not tensors or stored_digest(tensors) != spec["sha256"]:
        raise FaceweaveError(f"{where} takes its {prefix.rstrip('.')} weights from {folder}, whose weights are not "
                             "the ones it was made with (digest differs); restore that model or use a complete "
                             "checkpoint (faceweave.checkpoint.convert)")
    return tensors


def share(path: str | os.PathLike, prefix: str, model: str) -> dict[str, Any]:
    """Rewrite a checkpoint folder without its stored tensors under `prefix`, reading them from
    `model` (a bundled name or a folder relative to this one) at load time. Refused unless
    `model` stores exactly the same bytes under that prefix. Atomic; returns the new config."""
    meta = read_config(path)
    folder = Path(meta["path"])
    own = _read_weights(folder / WEIGHTS)
    mine = {k: v for k, v in own.items() if k.startswith(prefix)}
    if not mine:
        raise FaceweaveError(f"{folder} stores no tensors under {prefix!r}; nothing to share")
    theirs = {k: v for k, v in _read_weights(_source_folder(meta, model) / WEIGHTS).items() if k.startswith(prefix)}
    digest = stored_digest(mine)
    if stored_digest(theirs) != digest:
        raise FaceweaveError(f"{model} does not store the same tensors under {prefix!r} as {folder} "
                             "(store both with the same storage from the same weights first)")
    rest = {k: v for k, v in own.items() if not k.startswith(prefix)}
    entries = [e for e in meta.get(SHARED) or [] if e.get("prefix") != prefix]
    meta[SHARED] = entries + [{"prefix": prefix, "model": model, "sha256": digest}]
    meta.pop("path")
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copytree(folder, tmp)
    try:
        save_file(rest, str(tmp / WEIGHTS), metadata={"family": meta["family"]})
        (tmp / CONFIG).write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        _swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _dequantized(state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    """The state dict with every NAME::int8 / NAME::scale pair replaced by NAME (float32)."""
    if not any(INT8_KEY in k or SCALE_KEY in k for k in state):
        return state
    damaged = "the checkpoint is damaged, re-export it (scripts/requantize.py)"
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(SCALE_KEY):
            if key[:-len(SCALE_KEY)] + INT8_KEY not in state:
                raise FaceweaveError(f"{where}: scale {key} has no int8 weight beside it; {damaged}")
            continue
        if not key.endswith(INT8_KEY):
            if INT8_KEY in key or SCALE_KEY in key:
                raise FaceweaveError(f"{where}: tensor name {key!r} is not an int8 weight or scale; {damaged}")
            out[key] = value
            continue
        name = key[:-len(INT8_KEY)]
        scale = state.get(name + SCALE_KEY)
        if scale is None:
            raise FaceweaveError(f"{where}: int8 weight {name} has no scale ({name}{SCALE_KEY}); {damaged}")
        if value.dtype != torch.int8 or value.dim() < 1:
            raise FaceweaveError(f"{where}: {key} is {value.dtype} of shape {tuple(value.shape)}, not an int8 "
                                 f"weight; {damaged}")
        if (not scale.is_floating_point() or scale.dim() != value.dim() or scale.shape[0] != value.shape[0]
                or any(n != 1 for n in scale.shape[1:])):
            raise FaceweaveError(f"{where}: scale {name}{SCALE_KEY} ({scale.dtype}, shape {tuple(scale.shape)}) does "
                                 f"not fit the int8 weight of shape {tuple(value.shape)} (one scale per output "
                                 f"channel expected); {damaged}")
        if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()):
            raise FaceweaveError(f"{where}: scale {name}{SCALE_KEY} holds negative or non-finite values; {damaged}")
        if name in state:
            raise FaceweaveError(f"{where}: {name} is stored both as int8 and as a float tensor; {damaged}")
        out[name] = dequantize_int8(value, scale)
    return out


def convert(source: str | os.PathLike, dest: str | os.PathLike | None = None, storage: str = "int8",
            int8_min_elements: int = INT8_MIN_ELEMENTS) -> Path:
    """A checkpoint folder rewritten with another storage (in place when dest is None).

    config.json keeps every key (metrics, training recipe); the folder's other files (model
    card, EMA or optimizer tensors) are copied unchanged. int8 -> fp16 gives the dequantized
    weights, not the original fp16 ones. Shared tensors are written into the result, which is
    complete (apply `share` again to leave them out).
    """
    meta, state = load(source)
    folder = Path(meta.pop("path"))
    dest = folder if dest is None else Path(dest)
    if dest.resolve() != folder.resolve() and dest.exists() and any(dest.iterdir()):
        raise FaceweaveError(f"{dest} already exists and is not empty; pick a new folder or convert in place")
    extra = {k: v for k, v in meta.items()
             if k not in ("format", "format_version", "family", "config", "storage", SHARED)}   # written complete
    others = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in (CONFIG, WEIGHTS))
    return save(dest, meta["family"], meta["config"], state, storage=storage, copy_files=others,
                int8_min_elements=int8_min_elements, **extra)


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


def fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A short hash of a model's weights as fp16 (so a checkpoint and its fp16 export agree)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        if t.is_floating_point():
            t = t.to(torch.float16)
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
