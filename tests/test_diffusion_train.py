"""Training the diffusion denoiser: the loss reaches every condition encoder, EMA, sample
grids, resume, export of the averaged weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceweave import checkpoint
from faceweave.data import collate, open_dataset
from faceweave.errors import FaceweaveError
from faceweave.train import TASKS, export, resolve_config, train

QUIET = {"progress": False}


def _batch(n=4):
    data = open_dataset("facesynth:32", split="train")
    return collate([data[i] for i in range(n)])


def test_loss_trains_every_condition_encoder():
    torch.manual_seed(0)
    task, cfg = TASKS["diffusion"], resolve_config("diffusion", "tiny")
    model = task.build(cfg["model"])
    with torch.no_grad():                  # zero-initialised output layers block the gradients at step 0
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.05)
    loss, _ = task.loss(model, _batch(), {**cfg, "drop": 0.0, "drop_all": 0.0, "attr_keep_min": 1.0})
    loss.backward()
    assert torch.isfinite(loss)
    cond = model.conditioner
    for name, param in [("text", cond.text_proj.weight), ("attributes", cond.attr_embedding.weight),
                        ("mask tokens", cond.mask_patches.weight), ("pooled text", cond.pool_text.weight),
                        ("pooled attributes", cond.pool_attributes.weight),
                        ("pooled path", model.denoiser.net.pool[-1].weight)]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_the_denoiser_models_images_in_minus_one_to_one():
    task, cfg = TASKS["diffusion"], resolve_config("diffusion", "tiny")
    model = task.build(cfg["model"])
    batch = _batch(4)
    x0 = task._target(model, batch, task._conditions(batch, cfg, train=False))
    assert x0.min() >= -1 and x0.max() <= 1 and x0.min() < -0.5 and x0.max() > 0.5


def test_validation_score_is_deterministic_and_conditions_help_a_trained_model():
    task, cfg = TASKS["diffusion"], resolve_config("diffusion", "tiny")
    torch.manual_seed(0)
    model = task.build(cfg["model"]).eval()
    batch = _batch(4)
    a, b = task.evaluate(model, [batch], cfg), task.evaluate(model, [batch], cfg)
    assert a == b and a["score"] == -a["val_loss"] and np.isfinite(a["val_loss_uncond"])


def test_train_ema_samples_resume_export(tmp_path):
    out = tmp_path / "run"
    first = train("diffusion", "tiny", "facesynth:32", out, overrides={"max_steps": 6, "ckpt_every": 3}, **QUIET)
    assert first["step"] == 6 and np.isfinite(first["val_loss"])
    assert (out / "last" / "ema.safetensors").exists() and (out / "samples" / "step_0000006.png").exists()
    ema = checkpoint.load_tensors(out / "last", "ema")
    _, raw = checkpoint.load(out / "last")
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].is_floating_point())
    again = train("diffusion", "tiny", None, out, resume=True, overrides={"max_steps": 8}, **QUIET)
    assert again["step"] == 8
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 8
    shipped = export(out, tmp_path / "ship", which="last")
    meta, state = checkpoint.load(shipped, "diffusion")
    ema = checkpoint.load_tensors(out / "last", "ema")
    assert all(torch.equal(state[k], ema[k].half()) for k in state if state[k].is_floating_point())
    assert meta["training"]["step"] == 8 and meta["image_size"] == 32


def test_sample_n_zero_trains_without_sample_grids(tmp_path):
    """--set sample_n=0 used to train to the end and then fail drawing an empty grid, before
    the final checkpoint: the run lost its last steps. 0 now means no grids."""
    out = tmp_path / "nogrid"
    result = train("diffusion", "tiny", "facesynth:32", out,
                   overrides={"max_steps": 3, "ckpt_every": 1000, "sample_n": 0}, **QUIET)
    assert result["step"] == 3 and np.isfinite(result["val_loss"])
    assert checkpoint.read_config(out / "last", "diffusion")["step"] == 3
    assert not (out / "samples").exists()
    for bad in ({"sample_n": -1}, {"sample_n": 2.5}, {"sample_steps": 0}):
        with pytest.raises(FaceweaveError, match=next(iter(bad))):
            train("diffusion", "tiny", "facesynth:32", tmp_path / "bad", overrides=bad, **QUIET)


def test_gradient_accumulation_matches_the_step_count(tmp_path):
    out = tmp_path / "acc"
    result = train("diffusion", "tiny", "facesynth:32", out,
                   overrides={"max_steps": 3, "grad_accum": 2, "ema_decay": 0.0}, **QUIET)
    assert result["step"] == 3 and not (out / "last" / "ema.safetensors").exists()


def test_a_uni_modal_model_reads_only_its_modality(tmp_path):
    """`faceweave train diffusion --modalities mask`: Collaborative Diffusion's uni-modal models."""
    import pytest
    from click.testing import CliRunner

    from faceweave import Conditions
    from faceweave.backends.diffusion import DiffusionPipeline
    from faceweave.cli import main
    from faceweave.errors import FaceweaveError

    out = tmp_path / "mask-only"
    res = CliRunner().invoke(main, ["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32",
                                    "--out", str(out), "--max-steps", "2", "--modalities", "mask", "--quiet"])
    assert res.exit_code == 0, res.output
    meta = checkpoint.read_config(out / "last", "diffusion")
    assert meta["config"]["modalities"] == ["mask"]
    assert (out / "samples").is_dir()                     # the snapshot gave it only masks
    pipe = DiffusionPipeline.from_pretrained(out / "last", device="cpu")
    assert pipe.modalities == ("mask",)
    mask = np.zeros((32, 32), np.uint8)
    assert pipe(mask=mask, seeds=[0], num_inference_steps=2, progress=False).images[0].shape == (32, 32, 3)
    with pytest.raises(FaceweaveError, match="cannot condition on prompt"):
        pipe(prompt="a smiling woman", seeds=[0], num_inference_steps=2, progress=False)
    # a text-only model has no spatial input channels at all
    text_cfg = resolve_config("diffusion", "tiny", {"modalities": ["prompt"]})
    text_model = TASKS["diffusion"].init_model(text_cfg)
    assert text_model.config.modalities == ("text",) and text_model.conditioner.config.spatial_channels == 0

    for bad in (["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32", "--out", str(tmp_path / "x"),
                 "--modalities", "colour"],
                ["train", "parser", "--preset", "tiny", "--data", "facesynth:32", "--out", str(tmp_path / "y"),
                 "--modalities", "mask"]):
        res = CliRunner().invoke(main, bad)
        assert res.exit_code != 0 and ("unknown modalities" in res.output or "for diffusion models" in res.output)
        assert "Traceback" not in res.output


def test_a_uni_modal_model_warm_starts_from_the_joint_one(tmp_path):
    """init= a joint model: the uni-modal model starts as the joint model restricted to its
    modality (same images for sketch-only input), the unused input channels left out."""
    import pytest

    from faceweave.backends.diffusion import DiffusionPipeline
    from faceweave.errors import FaceweaveError
    from faceweave.synth import render

    train("diffusion", "tiny", "facesynth:32", tmp_path / "joint", overrides={"max_steps": 2}, **QUIET)
    joint = str(tmp_path / "joint" / "last")
    train("diffusion", "tiny", "facesynth:32", tmp_path / "sketch",
          overrides={"max_steps": 1, "lr": 1e-12, "modalities": ["sketch"], "init": joint, "ema_decay": 0.0},
          **QUIET)
    sketch = render(3, 0, size=32).sketch
    a = DiffusionPipeline.from_pretrained(tmp_path / "sketch" / "last", device="cpu")
    b = DiffusionPipeline.from_pretrained(joint, device="cpu")
    assert a.model.denoiser.net.stem.weight.shape[1] == 4 and b.model.denoiser.net.stem.weight.shape[1] == 23
    kw = {"sketch": sketch, "seeds": [0], "num_inference_steps": 3, "progress": False}
    assert np.abs(a(**kw).images[0].astype(int) - b(**kw).images[0].astype(int)).max() <= 1
    with pytest.raises(FaceweaveError, match="does not read attributes, mask, text"):
        train("diffusion", "tiny", "facesynth:32", tmp_path / "bad",
              overrides={"max_steps": 1, "init": str(tmp_path / "sketch" / "last")}, **QUIET)


def test_a_model_with_the_pooled_path_warm_starts_from_one_without(tmp_path):
    """init= a model that predates the pooled path: the new path starts at zero, so the warm
    start makes exactly the older model's images; its pooled layers are then trained."""
    from faceweave.backends.diffusion import DiffusionPipeline
    from faceweave.models.denoiser import DenoiserConfig
    from faceweave.synth import render

    task, cfg = TASKS["diffusion"], resolve_config("diffusion", "tiny")
    torch.manual_seed(0)
    old_cfg = {**cfg["model"], "pooled": False}
    old = task.build(old_cfg)
    checkpoint.save(tmp_path / "old", "diffusion", old_cfg, old.state_dict())
    assert not hasattr(old.conditioner, "pool_text")
    train("diffusion", "tiny", "facesynth:32", tmp_path / "new",
          overrides={"max_steps": 1, "lr": 1e-12, "init": str(tmp_path / "old"), "ema_decay": 0.0}, **QUIET)
    new = DiffusionPipeline.from_pretrained(tmp_path / "new" / "last", device="cpu")
    assert new.model.config == DenoiserConfig(**{**old_cfg, "pooled": True})
    face = render(3, 0, size=32)
    kw = {"prompt": "a smiling man with a beard", "attributes": {"Eyeglasses": 1}, "mask": face.mask,
          "seeds": [0], "num_inference_steps": 3, "progress": False}
    before = DiffusionPipeline(old.eval(), text_encoder=new.text_encoder, device="cpu")(**kw).images[0]
    assert np.abs(new(**kw).images[0].astype(int) - before.astype(int)).max() <= 1
