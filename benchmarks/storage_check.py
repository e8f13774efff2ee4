"""A checkpoint's own training validation, re-run on any copy of it: fp16 vs int8 storage.

    python benchmarks/storage_check.py collab-64 runs/int8/collab-64
    python benchmarks/storage_check.py stylegan2-64 runs/int8/stylegan2-64 --json out.json

For each checkpoint (a folder or bundled name) the family's training task scores it on the
validation faces of the data and preset its config.json records under "training" (the same
faces, batches and noise seeds as the run's validation; the weights as stored, EMA included):
the validation losses of a diffusion or collab model, the fd of a StyleGAN2 generator (256
samples vs 256 held-out faces in the classifier's features), the mapper scores of a gan model.
It prints the recorded value beside the re-measured one, so storage changes (scripts/
requantize.py) can be compared with identical inputs. A collab checkpoint is scored with the
collaborators its config.json names. docs/models.md ("Storage") quotes these numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from faceweave import checkpoint
from faceweave.data import collate
from faceweave.train import TASKS, resolve_config
from faceweave.train.loop import _splits


def validate(name: str) -> dict:
    """The training task's validation scores of one checkpoint, as the run computed them."""
    meta = checkpoint.read_config(name)
    family, training = meta["family"], meta.get("training") or {}
    if not training.get("preset") or not training.get("data"):
        raise SystemExit(f"{name}: config.json records no training preset and data to validate on")
    task = TASKS[family]
    cfg = resolve_config(family, training["preset"])
    cfg["model"] = meta["config"]
    _, val_set = _splits(training["data"], cfg["size"], cfg["val_n"])
    batch = max(1, cfg["batch_size"] // cfg["grad_accum"])
    batches = list(DataLoader(val_set, batch_size=max(batch, 32), collate_fn=collate))
    if family == "collab":
        from faceweave.backends.collab import CollabPipeline
        pipe = CollabPipeline.from_pretrained(name, device="cpu")    # checks the collaborators' fingerprints
        task._pipes = dict(pipe.collaborators)
        model = pipe.diffuser
    else:
        _, state = checkpoint.load(name, family)
        model = task.build(meta["config"])
        checkpoint.load_into(model, state, where=meta["path"])
    if hasattr(task, "setup"):
        task.setup(cfg, "cpu")
    model.eval().requires_grad_(False)
    start = time.perf_counter()
    with torch.no_grad():
        scores = task.evaluate(model, batches, cfg)
    return {"checkpoint": name, "family": family, "storage": meta.get("storage", "fp16"),
            "data": training["data"], "preset": training["preset"], "val_n": len(val_set),
            "scores": {k: round(float(v), 6) for k, v in scores.items()},
            "recorded": training.get("val"), "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="checkpoint folders or bundled names")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = []
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.checkpoints:
        r = validate(name)
        results.append(r)
        recorded = r["recorded"] or {}
        print(f"\n{name} ({r['family']}, {r['storage']}; {r['val_n']} validation faces of {r['data']}, "
              f"preset {r['preset']}, {r['seconds']} s)")
        for k, v in r["scores"].items():
            was = recorded.get(k)
            print(f"  {k:22s} {v:.6f}" + (f"   (recorded at export: {was:.6f})" if isinstance(was, (int, float)) else ""))
    if args.json:
        args.json.write_text(json.dumps({"command": "python benchmarks/storage_check.py " + " ".join(args.checkpoints),
                                         "machine": platform.machine(), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
