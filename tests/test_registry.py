"""The two registries: backends (backends/base.py BACKENDS) and training tasks
(train/registry.py). Everything that finds a method by name goes through them."""
from __future__ import annotations

import subprocess
import sys

import pytest

import faceweave
from faceweave import checkpoint
from faceweave.backends.base import BACKENDS, get_backend, spec_for_family
from faceweave.errors import FaceweaveError
from faceweave.train.registry import FAMILIES, TASKS


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_spec_resolves(name):
    spec = BACKENDS[name]
    module, cls = spec.backend.split(":")
    backend_cls = getattr(__import__(module, fromlist=[cls]), cls)
    assert backend_cls.name == name
    if spec.pipeline:
        assert spec.family and spec_for_family(spec.family) is spec
        assert callable(getattr(spec.pipeline_class(), "from_pretrained"))
    if spec.default_model:
        assert checkpoint.read_config(spec.default_model)["family"] == spec.family
        assert faceweave.DEFAULT_MODELS[name] == spec.default_model


def test_load_picks_the_pipeline_by_the_checkpoint_family():
    pipe = faceweave.load("gan")
    assert type(pipe) is BACKENDS["gan"].pipeline_class()
    with pytest.raises(FaceweaveError, match="not a generation pipeline"):
        faceweave.load("parser-64")
    with pytest.raises(FaceweaveError, match="unknown backend 'nope'"):
        get_backend("nope")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_training_family_resolves_to_its_task(family):
    task = TASKS[family]
    assert task.family == family
    assert "tiny" in task.presets            # the few-step recipe the tests train with
    assert TASKS[family] is task             # built once


def test_the_task_registry_imports_no_task_until_asked():
    code = ("import sys, faceweave.train.registry as r; "
            "print(any(m.startswith('faceweave.backends') for m in sys.modules)); "
            "r.TASKS['gan']; print('faceweave.backends.gan.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
