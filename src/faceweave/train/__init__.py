"""Training: one generic loop (loop.py, HF accelerate) and one small task per model family (tasks.py).

    from faceweave.train import train, export
    train("parser", "s64", "facesynth:64:n=1000000", "runs/parser64")
    export("runs/parser64", "src/faceweave/assets/models/parser-64")
"""
from .loop import export, lr_at, resolve_config, train
from .registry import TASKS
from .tasks import COMMON_DEFAULTS

__all__ = ["COMMON_DEFAULTS", "TASKS", "export", "lr_at", "resolve_config", "train"]
