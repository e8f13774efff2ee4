"""Fixtures shared by several test modules."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from faceweave import checkpoint
from faceweave.models.denoiser import ConditionalDenoiser, DenoiserConfig

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="session")
def benchmark_module():
    """Import a script of benchmarks/ (not a package) by name, to test its functions directly."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(name) -> a tiny checkpoint of registered backend `name` (its spec's
    `tiny` recipe: a few training steps on FaceSynth), built once per pytest run."""
    from faceweave.backends.base import BACKENDS

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = Path(BACKENDS[name].build_tiny(tmp_path_factory.mktemp(f"tiny-{name}")))
        return built[name]
    return get


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random 32 px diffusion checkpoint that reads every condition."""
    torch.manual_seed(0)
    config = DenoiserConfig(size=32, unet="tiny", patch=8)
    model = ConditionalDenoiser(config)
    with torch.no_grad():                   # zero-initialised output layers would hide the conditions
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    checkpoint.save(path, "diffusion", dataclasses.asdict(config), model.state_dict(), image_size=32)
    return path
