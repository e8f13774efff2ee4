"""One training loop for every model family (HF accelerate: CPU here, GPUs and bf16 elsewhere).

    faceweave train parser --preset s64 --data facesynth:64:n=1000000 --out runs/parser64
    # several GPUs: accelerate launch --multi_gpu --num_processes 4 -m faceweave.cli train parser ...

What a family contributes is a task object (`tasks.TASKS`): model builder, batch loss,
validation metrics and named presets. Everything else lives here, once:

    OUT/run.json         the resolved config (preset + overrides + data + command), rewritten on resume
    OUT/metrics.jsonl    one JSON object per line: {"kind": "train", "step", "loss", "lr", ...}
                         every log_every steps and {"kind": "val", "step", "score", ...} per validation
    OUT/last/            checkpoint every ckpt_every steps: config.json (model config, image_size,
                         step), model.safetensors, optimizer.safetensors (AdamW moments); atomic
    OUT/best/            the weights with the best validation score so far (the EMA weights
                         when ema_decay > 0: those are what validation scores and what ships)
    OUT/samples/         what the task draws at each validation (a diffusion model's sample grid)

`--resume` reloads OUT/last (weights, optimizer moments, step) and continues to max_steps;
the data order after a resume is a fresh shuffle (seeded by seed and step), not a replay.
Ctrl-C or SIGTERM stops after the step in progress and saves last/ first (a second Ctrl-C
stops at once); a run killed outright resumes from its last checkpoint, and the resume drops
the metrics.jsonl lines of the steps it redoes.
The learning rate is a pure function of the step (linear warmup, cosine decay), so it needs
no state of its own. With ema_decay > 0 an exponential moving average of the weights is kept
(saved in last/ema.safetensors and resumed); with grad_accum = k each optimizer step
averages k micro-batches of batch_size / k images (same recipe, 1/k of the memory). `export` turns a run into a small shippable fp16 checkpoint.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import checkpoint, io
from ..data import collate, open_dataset
from ..data.unified import UnifiedDataset
from ..diffusion.losses import WEIGHTINGS
from ..errors import FaceweaveError
from .registry import TASKS
from .tasks import COMMON_DEFAULTS, model_config

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LAST, BEST = "last", "best"
OPTIMIZER = "optimizer"
EMA = "ema"


def resolve_config(family: str, preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """COMMON_DEFAULTS <- the family's preset <- overrides (None values are ignored)."""
    if family not in TASKS:
        raise FaceweaveError(f"unknown model family {family!r}; trainable families: {', '.join(TASKS)}")
    task = TASKS[family]
    if preset not in task.presets:
        raise FaceweaveError(f"{family} has no preset {preset!r}; presets: {', '.join(task.presets)}")
    cfg = {**COMMON_DEFAULTS, **task.presets[preset], "family": family, "preset": preset}
    fields: dict[str, Any] = {}                         # "model.NAME": one field of the architecture
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("model."):
            fields[key[len("model."):]] = value
            continue
        if key not in cfg and key != "model":
            raise FaceweaveError(f"unknown training setting {key!r}; settings: {', '.join(sorted(cfg))} "
                                 "(or model.NAME for a field of the architecture)")
        cfg[key] = value
    if "model" not in cfg:                              # an explicit model config wins over "arch"
        if cfg.get("arch") not in task.architectures:
            raise FaceweaveError(f"{family} has no architecture {cfg.get('arch')!r}; "
                                 f"known: {', '.join(task.architectures)}")
        cfg["model"] = model_config(task, cfg["arch"])
    if fields:
        cfg["model"] = dict(cfg["model"])
        for name, value in fields.items():
            if name not in cfg["model"]:
                raise FaceweaveError(f"unknown model field {name!r} for {family}; fields of its "
                                     f"architecture: {', '.join(sorted(cfg['model']))}")
            cfg["model"][name] = value
    _check_numbers(cfg)
    return cfg


def _check_numbers(cfg: dict) -> None:
    for key in ("batch_size", "max_steps"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise FaceweaveError(f"{key} must be a positive integer, got {cfg[key]!r}")
    if not (isinstance(cfg["lr"], (int, float)) and 0 < cfg["lr"] < 1):
        raise FaceweaveError(f"lr must be a number between 0 and 1, got {cfg['lr']!r}")
    if not (isinstance(cfg["ema_decay"], (int, float)) and 0 <= cfg["ema_decay"] < 1):
        raise FaceweaveError(f"ema_decay must be 0 (off) or a number below 1, got {cfg['ema_decay']!r}")
    if not isinstance(cfg["grad_accum"], int) or cfg["grad_accum"] < 1 or cfg["batch_size"] % cfg["grad_accum"]:
        raise FaceweaveError(f"grad_accum must be a positive integer dividing batch_size "
                             f"({cfg['batch_size']}), got {cfg['grad_accum']!r}")
    for key in ("ckpt_every", "eval_every", "log_every", "warmup_steps", "workers"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise FaceweaveError(f"{key} must be a non-negative integer, got {cfg[key]!r}")
    for key, (ok, what) in _RULES.items():             # the keys this family's recipe has
        if key in cfg and not ok(cfg[key]):
            raise FaceweaveError(f"{key} must be {what}, got {cfg[key]!r}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


_FRACTION = (lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1")
_WEIGHT = (lambda v: _number(v) and v >= 0, "a number >= 0")
# What a setting may be, by name, whichever families' recipes have it: a value outside these
# would train silently wrong or fail with a traceback steps later (checked before any work).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "val_n": (_count(1), "a positive integer"),
    "seed": (lambda v: _count(0)(v) and v < 2**32, "an integer from 0 to 2**32 - 1"),
    "min_lr_ratio": _FRACTION,
    "weight_decay": _WEIGHT,
    "grad_clip": (_WEIGHT[0], "a number >= 0 (0: off)"),
    "betas": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
              "two numbers in [0, 1), e.g. [0.9,0.999]"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "mixed_precision": (lambda v: v in ("auto", "no", "bf16", "fp16"), "one of auto, no, bf16, fp16"),
    "sample_n": (_count(0), "a non-negative integer (0: no sample grids)"),
    "sample_steps": (_count(1), "a positive integer"),
    "weighting": (lambda v: v in WEIGHTINGS, "one of " + ", ".join(WEIGHTINGS)),
    "p_mean": (_number, "a finite number"),
    "p_std": (lambda v: _number(v) and v > 0, "a number > 0"),
    **{key: _FRACTION for key in ("drop", "drop_all", "attr_keep_min", "style_mixing", "real_fraction",
                                  "ada_target", "confident")},
    **{key: _WEIGHT for key in ("kl_weight", "dice_weight", "delta_weight", "feature_weight", "latent_weight",
                                "pixel_weight", "pl_weight", "r1_gamma")},
    "truncation": (lambda v: _number(v) and v > 0, "a number > 0 (1: off)"),
    "ada_kimg": (lambda v: _number(v) and v > 0, "a number > 0"),
    "r1_every": (_count(1), "a positive integer"),
    "pl_every": (_count(1), "a positive integer"),
}


def _init_weights(model: torch.nn.Module, cfg: dict, family: str, task=None) -> None:
    """Start a run from another checkpoint's weights (cfg["init"]: a folder or bundled name)
    of the same family and architecture, e.g. a 64 px model fine-tuned at 128 px. A task may
    let some config keys differ (task.init_may_differ) and adapt the weights to that
    (task.adapt_init: the diffusion task takes a subset of a model's modalities)."""
    where = str(cfg["init"])
    meta, state = checkpoint.load(where, family)
    theirs, ours = json.loads(json.dumps(meta["config"])), json.loads(json.dumps(cfg["model"]))
    free = set(getattr(task, "init_may_differ", ()))
    if {k: v for k, v in theirs.items() if k not in free} != {k: v for k, v in ours.items() if k not in free}:
        raise FaceweaveError(f"init={where}: its architecture {theirs} differs from this run's {ours}; "
                             "pick a preset (or --set arch=...) with the same architecture")
    if theirs != ours and hasattr(task, "adapt_init"):
        state = task.adapt_init(model, state, theirs, ours, where)
    # parts the recipe names itself (task.init_keeps: key prefixes) keep the weights they came with
    keep = tuple(task.init_keeps(cfg)) if hasattr(task, "init_keeps") else ()
    if keep:
        own = model.state_dict()
        state = {**state, **{k: v for k, v in own.items() if k.startswith(keep)}}
    checkpoint.load_into(model, state, where=where)


def lr_at(step: int, cfg: dict) -> float:
    """Linear warmup to cfg["lr"], then cosine decay to lr * min_lr_ratio at max_steps."""
    peak, warm, total = cfg["lr"], cfg["warmup_steps"], cfg["max_steps"]
    if warm and step < warm:
        return peak * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    floor = peak * cfg["min_lr_ratio"]
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# --- data ---------------------------------------------------------------------------------

def _splits(spec: str, size: int, val_n: int) -> tuple[Dataset, Dataset | None]:
    """(train, val) data sets for a spec: FaceSynth's own splits, or a folder's "split" labels."""
    if not Path(spec).expanduser().is_dir():           # facesynth:SIZE[...]: disjoint seed ranges
        train = open_dataset(spec, size=size, split="train")
        val = open_dataset(spec, size=size, split="val")
        return train, Subset(val, range(min(val_n, len(val))))
    folder = UnifiedDataset(spec, size=size)
    splits = {r.get("split") for r in folder.records}
    if "train" in splits:
        train = UnifiedDataset(spec, size=size, split="train")
        val = UnifiedDataset(spec, size=size, split="val") if "val" in splits else None
    else:
        train, val = folder, None                       # no labels: all of it trains, no validation
    return train, (None if val is None else Subset(val, range(min(val_n, len(val)))))


def _check_keys(dataset: Dataset, needs: tuple[str, ...], family: str, spec: str) -> None:
    sample = dataset[0]
    missing = [k for k in needs if k not in sample]
    if missing:
        raise FaceweaveError(f"data {spec!r} has no {', '.join(missing)}, which {family} training needs; "
                             f"use a folder with {'/'.join(missing)} (e.g. `faceweave data synth`)")


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)                            # a render worker must not fight the trainer
    # Ctrl-C and SIGTERM reach the whole process group; the trainer turns them into a clean stop
    # (see _StopRequest), which a worker dying under it would break. Workers end with the trainer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


# --- checkpoints --------------------------------------------------------------------------

def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """AdamW state as flat safetensors-ready tensors + JSON-able param groups."""
    sd = optimizer.state_dict()
    tensors = {f"{pid}.{key}": value for pid, state in sd["state"].items()
               for key, value in state.items() if torch.is_tensor(value)}
    return tensors, sd["param_groups"]


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as exc:
        raise FaceweaveError(f"the saved optimizer state does not fit this model ({exc}); "
                             "resume with the run's own settings or start a new --out") from None


def _save(path: Path, family: str, cfg: dict, model: torch.nn.Module, step: int,
          optimizer: torch.optim.Optimizer | None = None, ema: torch.nn.Module | None = None,
          **extra: Any) -> None:
    more: dict[str, dict[str, torch.Tensor]] = {}
    if optimizer is not None:
        tensors, groups = _optimizer_tensors(optimizer)
        more[OPTIMIZER] = tensors
        extra = {**extra, "optimizer_param_groups": groups}
    if ema is not None:
        more[EMA] = ema.state_dict()
    checkpoint.save(path, family, cfg["model"], model.state_dict(), extra_tensors=more or None,
                    image_size=cfg["size"], step=step, **extra)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """ema <- d ema + (1 - d) model, with d ramped up over the first steps ((1 + t) / (10 + t))
    so the average does not remember the random initialisation."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach().to(e.dtype), 1 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class _StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption, a machine's shutdown) become a request
    to stop after the step in progress: the loop then saves last/ and returns, so at most that
    one step is lost instead of everything since the previous checkpoint. A second Ctrl-C
    interrupts at once. Handlers can only be installed from the main thread; elsewhere, and
    for a signal the process was started ignoring, the signals keep their usual meaning."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job ignores Ctrl-C; so do we
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *_exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def agreed(self, accelerator) -> bool:
        """Whether to stop now; with several processes all of them stop at the same step."""
        if accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([1.0 if self.signal else 0.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _purge_metrics_after(path: Path, step: int) -> None:
    """Drop the metrics.jsonl lines of steps after `step`: a run killed between checkpoints logged
    steps that its resume does again, and the log should hold each step once."""
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            later = int(json.loads(line).get("step", 0)) > step
        except (ValueError, TypeError, AttributeError):
            later = False                                # keep what cannot be read, as it was
        if later:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)


# --- the loop -----------------------------------------------------------------------------

def _check_out(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FaceweaveError(f"--out {out} is a file; give a folder for the run")
    has_run = (out / RUN_FILE).exists() or (out / LAST).exists()
    if resume and not (out / LAST / checkpoint.CONFIG).exists():
        raise FaceweaveError(f"nothing to resume in {out} (no {LAST}/ checkpoint); drop --resume to start a run")
    if not resume and out.is_dir() and any(out.iterdir()):
        what = "a run" if has_run else "other files"
        raise FaceweaveError(f"--out {out} already holds {what}; pass --resume to continue it or choose another --out")
    # a run writes its folder step by step, so only the place is checked: under a file, no
    # permission, a read-only mount are one error now, not a traceback after the first steps
    io.check_output_folder(out, overwrite=True, replace=False)


def train(family: str, preset: str | None, data: str | None, out: str | os.PathLike, *, resume: bool = False,
          overrides: dict[str, Any] | None = None, progress: bool = True,
          command: str | None = None) -> dict[str, Any]:
    """Train `family` with `preset` on data spec `data` into folder `out`; returns the last metrics.

    overrides: any preset key, e.g. {"max_steps": 100, "batch_size": 8, "lr": 1e-3}.
    """
    from accelerate import Accelerator  # imported here: heavy, and only training needs it
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm import tqdm

    out = Path(out).expanduser()
    _check_out(out, resume)
    if family not in TASKS:
        raise FaceweaveError(f"unknown model family {family!r}; trainable families: {', '.join(TASKS)}")
    task = TASKS[family]
    if resume:
        if not (out / RUN_FILE).is_file():
            raise FaceweaveError(f"{out} has a checkpoint but no {RUN_FILE}, so its settings are unknown; "
                                 "start a new run with --data and another --out")
        stored = json.loads((out / RUN_FILE).read_text())
        if stored.get("family") != family:
            raise FaceweaveError(f"{out} is a {stored.get('family')!r} run, not {family!r}; resume it as that family")
        preset, data = stored["preset"], stored["data"] if data is None else data
        cfg = resolve_config(family, preset, {**{k: v for k, v in stored.items()
                                                 if k not in ("family", "preset", "data", "commands")},
                                              **(overrides or {})})
        commands = stored.get("commands", [])
    else:
        cfg = resolve_config(family, preset, overrides)
        commands = []
    commands.append(command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]))

    precision = cfg["mixed_precision"]
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    # A task whose loss may leave parameters without a gradient in a step (the diffusion model's
    # dropped conditions) needs DDP's unused-parameter search under several processes.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(getattr(task, "unused_parameters", False)))
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])
    set_seed(cfg["seed"])

    train_set, val_set = _splits(data, cfg["size"], cfg["val_n"])
    _check_keys(train_set, task.needs, family, data)
    # a task may complete the model config from other checkpoints (the diffusion model's VAE)
    try:
        model = task.init_model(cfg) if hasattr(task, "init_model") else task.build(cfg["model"])
    except FaceweaveError:                              # already says what to fix
        raise
    except (TypeError, ValueError) as e:                # e.g. --set model.mask_mode=foo
        raise FaceweaveError(f"bad {family} model config: {e}") from None
    if cfg.get("init") and not resume:
        _init_weights(model, cfg, family, task)
    # the sampling defaults its pipeline will read from the checkpoint (Pipeline.sampling)
    defaults = {"sampling": task.sampling(cfg)} if hasattr(task, "sampling") else {}
    # the instruments its pipeline reads conditions with, when not the bundled defaults
    instruments = task.instruments(cfg) if hasattr(task, "instruments") else {}
    if not instruments and getattr(task, "reads_photos", False):
        from ..data.unified import photo_instruments
        instruments = photo_instruments(data)
    if instruments:
        defaults["instruments"] = instruments
    if cfg["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]),
                                  weight_decay=cfg["weight_decay"])
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg["ema_decay"] else None
    if accelerator.num_processes > 1:
        # the same initial weights everywhere (seeded above; DDP also broadcasts rank 0's), but from
        # here on each process draws its own noise levels, noise and condition dropout
        set_seed(cfg["seed"], device_specific=True)
    step = 0
    if resume:
        meta, state = checkpoint.load(out / LAST, family)
        checkpoint.load_into(model, state, where=str(out / LAST))
        _load_optimizer(optimizer, checkpoint.load_tensors(out / LAST, OPTIMIZER),
                        meta.get("optimizer_param_groups", []))
        step = int(meta.get("step", 0))
        if ema is not None:
            saved = (checkpoint.load_tensors(out / LAST, EMA) if (out / LAST / f"{EMA}.safetensors").exists()
                     else state)                         # a run that had no EMA yet starts it here
            checkpoint.load_into(ema, saved, where=str(out / LAST / EMA))
    if hasattr(task, "setup"):
        task.setup(cfg, accelerator.device)               # frozen helpers (e.g. the text encoder)

    accum = cfg["grad_accum"]
    per_process = max(1, cfg["batch_size"] // accelerator.num_processes // accum)
    generator = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + step)
    loader = DataLoader(train_set, batch_size=per_process, shuffle=True, generator=generator,
                        collate_fn=collate, drop_last=len(train_set) >= per_process,
                        num_workers=cfg["workers"], persistent_workers=cfg["workers"] > 0,
                        worker_init_fn=_worker_init if cfg["workers"] else None)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    device = accelerator.device
    if ema is not None:
        ema.to(device)
    val_batches = None
    if val_set is not None and accelerator.is_main_process:  # rendered once, kept in memory
        val_batches = [_to_device(b, device, cfg["channels_last"])
                       for b in DataLoader(val_set, batch_size=max(per_process, 32), collate_fn=collate)]

    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        record = {"family": family, "preset": preset, "data": data, **{k: v for k, v in cfg.items()
                                                                       if k not in ("family", "preset")},
                  "commands": commands}
        (out / RUN_FILE).write_text(json.dumps(record, indent=1) + "\n")
        if resume:
            _purge_metrics_after(out / METRICS_FILE, step)
    log = open(out / METRICS_FILE, "a", encoding="utf-8") if main else None

    def write(entry: dict) -> None:
        if log is not None:
            log.write(json.dumps(entry) + "\n")
            log.flush()

    best_score = -math.inf
    if (out / BEST / checkpoint.CONFIG).exists():
        best_score = checkpoint.read_config(out / BEST, family).get("val", {}).get("score", -math.inf)
    last_val: dict[str, Any] = {}

    def validate() -> None:
        """Scores (and a sample grid) on the validation split; only the main process calls it.
        If it fails (a bug in a task's evaluate, a full disk), the steps trained since the last
        checkpoint are saved to last/ before the error goes on: a run never loses work to it."""
        try:
            _validate()
        except Exception:
            save_now()
            raise

    def _validate() -> None:
        nonlocal best_score, last_val
        if val_batches is None:
            return
        bare = accelerator.unwrap_model(model)
        judged = ema if ema is not None else bare         # the weights that would ship
        judged.eval()
        with accelerator.autocast():
            scores = task.evaluate(judged, val_batches, cfg)
            if hasattr(task, "snapshot") and cfg.get("sample_n", 1) > 0:
                task.snapshot(judged, val_batches, cfg, out / "samples" / f"step_{step:07d}.png")
        bare.train()
        last_val = {"kind": "val", "step": step, **scores}
        write(last_val)
        if scores["score"] > best_score:
            best_score = scores["score"]
            _save(out / BEST, family, cfg, judged, step, val=scores, **defaults)

    def save_now() -> None:                            # the main process's part of save_last
        _save(out / LAST, family, cfg, accelerator.unwrap_model(model), step, optimizer=optimizer,
              ema=ema, val=last_val or None, **defaults)

    def save_last() -> None:
        accelerator.wait_for_everyone()
        if main:
            save_now()

    sums: dict[str, float] = {}
    count, tick = 0, time.perf_counter()

    def log_train() -> None:
        nonlocal sums, count, tick
        elapsed = time.perf_counter() - tick
        if accelerator.num_processes > 1:               # every process calls this: average over them
            keys = sorted(sums)
            mean = accelerator.reduce(torch.tensor([sums[k] for k in keys], dtype=torch.float32,
                                                   device=accelerator.device), reduction="mean")
            sums = dict(zip(keys, mean.tolist()))
        means = {k: round(v / count, 5) for k, v in sums.items()}
        write({"kind": "train", "step": step, **means, "lr": lr_at(step - 1, cfg),
               "img_per_s": round(count * cfg["batch_size"] / elapsed, 2)})
        bar.set_postfix(loss=f"{means['loss']:.4f}")
        sums, count, tick = {}, 0, time.perf_counter()

    model.train()
    optimizer.zero_grad(set_to_none=True)
    micro = 0
    bar = tqdm(total=cfg["max_steps"], initial=step, disable=not (progress and main),
               desc=f"{family}/{preset}", dynamic_ncols=True)
    stopped = False
    with _StopRequest() as stop:
        while step < cfg["max_steps"] and not stopped:
            batches = iter(loader)
            while step < cfg["max_steps"]:
                batch = next(batches, None)
                if batch is None:                       # the end of an epoch
                    break
                batch = _to_device(batch, device, cfg["channels_last"])
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, cfg)
                with accelerator.autocast():
                    loss, parts = task.loss(model, batch, cfg)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"loss became {float(loss)} at step {step}; lower --lr or check the data")
                micro += 1
                last_micro = micro == accum
                # Gradients are only synchronised across processes on the last micro-batch.
                with (contextlib.nullcontext() if last_micro else accelerator.no_sync(model)):
                    accelerator.backward(loss / accum)
                for key, value in {"loss": float(loss.detach()), **parts}.items():
                    sums[key] = sums.get(key, 0.0) + value / accum
                if not last_micro:
                    continue
                micro = 0
                if cfg["grad_clip"]:
                    accelerator.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    _ema_update(ema, accelerator.unwrap_model(model), cfg["ema_decay"], step)
                step += 1
                bar.update(1)
                count += 1
                if cfg["log_every"] and step % cfg["log_every"] == 0:
                    log_train()
                if cfg["eval_every"] and step % cfg["eval_every"] == 0 and main:
                    validate()
                if cfg["ckpt_every"] and step % cfg["ckpt_every"] == 0:
                    save_last()
                if stop.agreed(accelerator):
                    stopped = True
                    break
        if count:                                       # the steps since the last log line
            log_train()
        bar.close()
        if stopped:
            # save what was trained and leave; validation would only delay the stop
            save_last()
            if main:
                write({"kind": "stop", "step": step, "signal": stop.signal or "another process"})
        else:
            if main and last_val.get("step") != step:
                validate()
            save_last()
    if log is not None:
        log.close()
    result = {"step": step, **{k: v for k, v in last_val.items() if k not in ("kind", "step")}}
    if stopped:
        result["stopped_by"] = stop.signal or "another process"
    return result


def export(run: str | os.PathLike, dest: str | os.PathLike, which: str = BEST,
           dtype: torch.dtype = torch.float16, storage: str | None = None, **extra: Any) -> Path:
    """A run's best (or last) weights -> a small checkpoint to ship (fp16, no optimizer state).

    storage="int8" stores conv/linear weights as int8 with per-channel scales (about half the
    size; checkpoint.py); measure the model before shipping it (docs/models.md, "Storage").

    The run's commands, preset, data and step go into config.json under "training"; pass
    more keys (e.g. metrics=...) as keyword arguments.
    """
    run = Path(run).expanduser()
    source = run / which
    if not (source / checkpoint.CONFIG).exists():
        source = run / LAST
    meta, state = checkpoint.load(source)
    if source.name == LAST and (source / f"{EMA}.safetensors").exists():
        state = checkpoint.load_tensors(source, EMA)     # best/ already holds the EMA weights
    record = json.loads((run / RUN_FILE).read_text()) if (run / RUN_FILE).exists() else {}
    training = {"commands": record.get("commands"), "preset": record.get("preset"), "data": record.get("data"),
                "step": meta.get("step"), "checkpoint": source.name, "val": meta.get("val")}
    for key in ("sampling", "instruments"):
        if meta.get(key):
            extra = {key: meta[key], **extra}
    return checkpoint.save(dest, meta["family"], meta["config"], state, dtype=None if storage else dtype,
                           storage=storage, image_size=meta["image_size"], training=training, **extra)
