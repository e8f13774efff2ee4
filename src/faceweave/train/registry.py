"""Trainable model families by name, imported on first use: family -> "module:Task".

The loop (`train/loop.py`) finds a family's task here; each task lives beside its method
(`backends/<method>/train.py`) or, for the shared ruler networks, in `train/tasks.py`. A new
family is one line below. Importing this module imports no task, so `faceweave --help`
stays fast and no task module needs another to be imported first.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

FAMILIES: dict[str, str] = {
    "parser": "faceweave.train.tasks:ParserTask",
    "classifier": "faceweave.train.tasks:ClassifierTask",
    "diffusion": "faceweave.backends.diffusion.train:DiffusionTask",
    "vae": "faceweave.backends.diffusion.train:VAETask",
    "collab": "faceweave.backends.collab.train:CollabTask",
    "stylegan2": "faceweave.backends.gan.train:StyleGAN2Task",
    "mask_ae": "faceweave.backends.gan.train:MASK_AE",
    "sketch_ae": "faceweave.backends.gan.train:SKETCH_AE",
    "gan_encoder": "faceweave.backends.gan.encoder_train:GANEncoderTask",
    "gan": "faceweave.backends.gan.train:GANTask",
    "ddgi": "faceweave.backends.ddgi.train:DDGITask",
    "stylize": "faceweave.backends.stylize.train:StylizeTask",
    "stylize_joint": "faceweave.backends.stylize.train:StylizeJointTask",
    "multiview": "faceweave.backends.multiview.train:MultiviewTask",
}


class _Tasks(Mapping):
    """A read-only {family: task} whose tasks are imported (and, for a class, built once) on
    first lookup."""

    def __init__(self, families: dict[str, str]):
        self._families = families
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, family: str) -> Any:
        if family not in self._loaded:
            module, attr = self._families[family].split(":")   # KeyError for an unknown family
            task = getattr(importlib.import_module(module), attr)
            self._loaded[family] = task() if isinstance(task, type) else task
        return self._loaded[family]

    def __iter__(self) -> Iterator[str]:
        return iter(self._families)

    def __len__(self) -> int:
        return len(self._families)


TASKS: Mapping[str, Any] = _Tasks(FAMILIES)
