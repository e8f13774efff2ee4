"""The training loop and tasks: loss goes down, checkpoints, resume, export, CLI, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceweave import checkpoint
from faceweave.cli import main
from faceweave.data import collate, open_dataset
from faceweave.errors import FaceweaveError
from faceweave.ruler import load_classifier, load_parser
from faceweave.train import TASKS, export, lr_at, resolve_config, train

QUIET = {"progress": False}


@pytest.mark.parametrize("family", ["parser", "classifier"])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(family):
    torch.manual_seed(0)
    task, cfg = TASKS[family], resolve_config(family, "tiny")
    model = task.build(cfg["model"])
    data = open_dataset("facesynth:32", split="train")
    batch = collate([data[i] for i in range(4)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, parts = task.loss(model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert all(np.isfinite(v) for v in parts.values())
    assert losses[-1] < 0.9 * losses[0] and losses[-1] == min(losses), losses


def test_classifier_loss_ignores_unknown_labels():
    task, cfg = TASKS["classifier"], resolve_config("classifier", "tiny")
    model = task.build(cfg["model"])
    batch = collate([open_dataset("facesynth:32")[i] for i in range(2)])
    loss, _ = task.loss(model, batch, cfg)
    batch["attributes"][:, :] = -1                           # nothing known: nothing to learn
    empty, parts = task.loss(model, batch, cfg)
    assert float(empty.detach()) == 0.0 and float(loss.detach()) > 0


def test_lr_schedule():
    cfg = {"lr": 1e-3, "warmup_steps": 10, "max_steps": 110, "min_lr_ratio": 0.1}
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(0.55e-3) and lr_at(110, cfg) == pytest.approx(1e-4)


def test_train_checkpoint_resume_export(tmp_path):
    out = tmp_path / "run"
    first = train("parser", "tiny", "facesynth:32", out, overrides={"max_steps": 10}, **QUIET)
    assert first["step"] == 10 and 0 <= first["miou"] <= 1
    assert {p.name for p in out.iterdir()} == {"run.json", "metrics.jsonl", "last", "best"}
    assert {p.name for p in (out / "last").iterdir()} == {"config.json", "model.safetensors",
                                                          "optimizer.safetensors"}
    meta = checkpoint.read_config(out / "last", "parser")
    assert meta["step"] == 10 and meta["image_size"] == 32
    before = checkpoint.load_tensors(out / "last", "optimizer")
    assert before and all(torch.isfinite(v).all() for v in before.values())

    # a run killed after its step-10 checkpoint had logged steps 12 and 13 that the resume redoes
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "step": 12, "loss": 9.0}) + "\n")
        f.write(json.dumps({"kind": "val", "step": 13, "score": 0.5}) + "\n")
    second = train("parser", "tiny", None, out, resume=True, overrides={"max_steps": 14}, **QUIET)
    assert second["step"] == 14
    assert checkpoint.read_config(out / "last")["step"] == 14
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == [5, 10, 14]                              # the lost steps' lines are gone
    assert all(json.loads(line)["step"] != 13 for line in (out / "metrics.jsonl").read_text().splitlines())
    run = json.loads((out / "run.json").read_text())
    assert run["max_steps"] == 14 and len(run["commands"]) == 2 and run["data"] == "facesynth:32"
    after = checkpoint.load_tensors(out / "last", "optimizer")
    step_key = next(k for k in after if k.endswith(".step"))
    assert float(after[step_key]) == 14.0                   # AdamW counted on from the saved 10

    # a run's checkpoint is directly a ruler model; export makes the small fp16 copy
    parser = load_parser(out / "last")
    shipped = export(out, tmp_path / "shipped", which="last", metrics={"note": "test"})
    meta = checkpoint.read_config(shipped, "parser")
    assert meta["training"]["step"] == 14 and meta["metrics"] == {"note": "test"}
    assert "optimizer.safetensors" not in {p.name for p in shipped.iterdir()}
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    agree = (load_parser(shipped).predict(images) == parser.predict(images)).mean()
    assert agree > 0.97                                      # fp16 weights, same answers


def test_a_signal_stops_after_the_step_and_saves(tmp_path, monkeypatch):
    """SIGTERM mid-run: the step in progress finishes, last/ is saved at that step, the signal
    handlers are given back, and --resume continues from there."""
    task = TASKS["parser"]
    calls = []

    def loss(model, batch, cfg):
        calls.append(1)
        if len(calls) == 3:                                  # arrives during step 3
            os.kill(os.getpid(), signal.SIGTERM)
        return type(task).loss(task, model, batch, cfg)

    monkeypatch.setattr(task, "loss", loss)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    result = train("parser", "tiny", "facesynth:32", out, overrides={"max_steps": 50, "ckpt_every": 1000}, **QUIET)
    assert result["step"] == 3 and result["stopped_by"] == "SIGTERM"
    assert checkpoint.read_config(out / "last", "parser")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1] == {"kind": "stop", "step": 3, "signal": "SIGTERM"}
    monkeypatch.undo()
    again = train("parser", "tiny", None, out, resume=True, overrides={"max_steps": 6}, **QUIET)
    assert again["step"] == 6 and "stopped_by" not in again


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_and_exits_143(tmp_path):
    """The CLI as a scheduler pre-empts it, with a data-loading worker: SIGTERM reaches every
    process of the group; the worker must not die under the trainer, which saves its step and
    exits with 143 and a line that says how to go on."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "faceweave.cli", "train", "parser", "--preset", "tiny", "--data", "facesynth:32",
           "--out", str(out), "--max-steps", "100000", "--set", "workers=1", "--set", "log_every=1",
           "--set", "ckpt_every=100000", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count("\n") >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "--resume" in err and "Traceback" not in err, err
    saved = checkpoint.read_config(out / "last", "parser")["step"]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1] == {"kind": "stop", "step": saved, "signal": "SIGTERM"} and saved >= 2


def test_a_second_ctrl_c_interrupts_at_once():
    from faceweave.train.loop import _StopRequest

    # as in a terminal (a job started in the background, as CI may run us, ignores SIGINT)
    started = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.signal == "SIGINT"                   # the first one only asks
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)         # ignored before: left ignored
        with _StopRequest() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, started)


def test_init_from_another_checkpoint(tmp_path):
    """--set init=CKPT starts a run (here at another image size) from a checkpoint's weights."""
    train("parser", "tiny", "facesynth:32", tmp_path / "a", overrides={"max_steps": 3}, **QUIET)
    start = checkpoint.load(tmp_path / "a" / "last", "parser")[1]
    # a vanishing learning rate: after one step the weights are still the initial ones
    train("parser", "tiny", "facesynth:48", tmp_path / "b",
          overrides={"size": 48, "max_steps": 1, "lr": 1e-12, "init": str(tmp_path / "a" / "last")}, **QUIET)
    meta, after = checkpoint.load(tmp_path / "b" / "last", "parser")
    assert meta["image_size"] == 48
    convs = [k for k in start if k.endswith("weight") and start[k].ndim == 4]
    assert convs and all(torch.allclose(start[k], after[k], atol=1e-6) for k in convs)
    fresh = train("parser", "tiny", "facesynth:48", tmp_path / "c", overrides={"size": 48, "max_steps": 1}, **QUIET)
    assert fresh["step"] == 1
    fresh_w = checkpoint.load(tmp_path / "c" / "last", "parser")[1]
    assert not all(torch.allclose(start[k], fresh_w[k], atol=1e-3) for k in convs)

    with pytest.raises(FaceweaveError, match="differs from this run"):
        train("parser", "tiny", "facesynth:32", tmp_path / "d",
              overrides={"arch": "s", "init": str(tmp_path / "a" / "last")}, **QUIET)
    train("classifier", "tiny", "facesynth:32", tmp_path / "clf", overrides={"max_steps": 1}, **QUIET)
    with pytest.raises(FaceweaveError, match="classifier"):
        train("parser", "tiny", "facesynth:32", tmp_path / "e",
              overrides={"init": str(tmp_path / "clf" / "last")}, **QUIET)


def test_train_on_a_unified_folder_and_the_classifier(tmp_path):
    folder = tmp_path / "fs"
    res = CliRunner().invoke(main, ["data", "synth", "--out", str(folder), "--n", "6", "--size", "32"])
    assert res.exit_code == 0, res.output
    result = train("classifier", "tiny", str(folder), tmp_path / "clf", overrides={"max_steps": 4}, **QUIET)
    assert result["step"] == 4 and "mean_attr_acc" not in result          # no "val" split: no validation
    clf = load_classifier(tmp_path / "clf" / "last")
    assert clf.predict_proba(np.zeros((32, 32, 3), np.uint8)).shape == (len(clf.attributes),)
    # the guide preset: its own small network over the attributes real photos are labelled with
    train("classifier", "guide64", str(folder), tmp_path / "guide",
          overrides={"max_steps": 1, "size": 32, "batch_size": 2, "warmup_steps": 0}, **QUIET)
    guide = load_classifier(tmp_path / "guide" / "last")
    from faceweave.data.celebamask1k import DERIVED_ATTRIBUTES
    assert sorted(guide.attributes) == sorted(DERIVED_ATTRIBUTES)


def test_a_failing_validation_keeps_the_trained_steps(tmp_path, monkeypatch):
    """An error while validating (a bug, a full disk) goes on to the caller, but last/ holds
    the step it happened at, not the last periodic checkpoint's, and --resume goes on."""
    task = TASKS["parser"]

    def evaluate(model, batches, cfg):
        raise RuntimeError("disk full")

    monkeypatch.setattr(task, "evaluate", evaluate)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        train("parser", "tiny", "facesynth:32", out,
              overrides={"max_steps": 20, "eval_every": 7, "ckpt_every": 5}, **QUIET)
    assert checkpoint.read_config(out / "last", "parser")["step"] == 7
    with pytest.raises(RuntimeError, match="disk full"):            # and at the end of a run
        train("parser", "tiny", None, out, resume=True, overrides={"max_steps": 9, "eval_every": 0}, **QUIET)
    assert checkpoint.read_config(out / "last", "parser")["step"] == 9
    monkeypatch.undo()
    assert train("parser", "tiny", None, out, resume=True, overrides={"max_steps": 10}, **QUIET)["step"] == 10


def test_bad_runs(tmp_path):
    out = tmp_path / "run"
    train("parser", "tiny", "facesynth:32", out, overrides={"max_steps": 2}, **QUIET)
    cases = [
        (lambda: train("parser", "tiny", "facesynth:32", out, **QUIET), "--resume"),
        (lambda: train("parser", "tiny", None, tmp_path / "empty", resume=True, **QUIET), "nothing to resume"),
        (lambda: train("classifier", "tiny", None, out, resume=True, **QUIET), "is a 'parser' run"),
        (lambda: train("eg3d", "tiny", "facesynth:32", tmp_path / "a", **QUIET), "unknown model family"),
        (lambda: train("parser", "xl", "facesynth:32", tmp_path / "b", **QUIET), "no preset 'xl'"),
        (lambda: train("parser", "tiny", "facesynth:32", tmp_path / "c", overrides={"batch_size": 0}, **QUIET),
         "batch_size"),
        (lambda: train("parser", "tiny", "nope:32", tmp_path / "d", **QUIET), "bad data spec"),
        (lambda: train("diffusion", "tiny", "facesynth:32", tmp_path / "e", overrides={"model.mask_mode": "foo"},
                       **QUIET), "bad diffusion model config: .*tokens, spatial or both"),
    ]
    for call, words in cases:
        with pytest.raises(FaceweaveError, match=words):
            call()


@pytest.mark.parametrize("family, key, value, words", [
    ("parser", "val_n", 0, "val_n must be a positive integer"),        # was a ZeroDivisionError
    ("parser", "seed", -3, "seed must be an integer from 0"),           # was numpy's traceback
    ("parser", "mixed_precision", "fp8", "one of auto, no, bf16, fp16"),  # was accelerate's
    ("parser", "betas", [0.9], "two numbers"),
    ("parser", "channels_last", 1, "true or false"),
    ("parser", "grad_clip", -1, "a number >= 0"),                       # these trained silently
    ("diffusion", "drop", 2, "drop must be a number from 0 to 1"),
    ("diffusion", "p_std", -1, "p_std must be a number > 0"),
    ("diffusion", "p_mean", "nan", "p_mean must be a finite number"),   # was a TypeError mid-step
    ("diffusion", "weighting", "bar", "one of edm, uniform, p2, min_snr"),
    ("stylegan2", "r1_every", 0, "r1_every must be a positive integer"),
])
def test_bad_settings_are_one_line_errors_before_any_work(family, key, value, words):
    with pytest.raises(FaceweaveError, match=words):
        resolve_config(family, "tiny", {key: value})


def test_model_fields_can_be_set_one_by_one():
    """--set model.NAME=VALUE changes one field of the preset's architecture (the training
    ablations' variants, from the command line)."""
    base = resolve_config("diffusion", "s64")
    cfg = resolve_config("diffusion", "s64", {"model.mask_mode": "tokens", "model.pooled": False})
    assert cfg["model"] == {**base["model"], "mask_mode": "tokens", "pooled": False}
    assert base["model"]["mask_mode"] == "both"                          # the preset is untouched
    with pytest.raises(FaceweaveError, match="unknown model field 'nope'.*mask_mode"):
        resolve_config("diffusion", "s64", {"model.nope": 1})
    with pytest.raises(FaceweaveError, match="unknown training setting 'mask_mode'.*model.NAME"):
        resolve_config("diffusion", "s64", {"mask_mode": "tokens"})


def test_parser_needs_masks(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(2):
        from PIL import Image
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(src / f"{i}.png")
    res = CliRunner().invoke(main, ["data", "prepare", "--layout", "folder", "--src", str(src),
                                    "--out", str(tmp_path / "u")])
    assert res.exit_code == 0, res.output
    with pytest.raises(FaceweaveError, match="has no mask"):
        train("parser", "tiny", str(tmp_path / "u"), tmp_path / "run", **QUIET)


def test_train_command(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(main, ["train", "parser", "--preset", "tiny", "--data", "facesynth:32",
                               "--out", str(out), "--max-steps", "3", "--batch-size", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "finished at step 3" in res.output
    assert json.loads((out / "run.json").read_text())["batch_size"] == 2
    # the run remembers its recipe: --resume needs neither --preset nor --data (as the stop message says)
    res = runner.invoke(main, ["train", "parser", "--out", str(out), "--resume", "--max-steps", "5", "--quiet"])
    assert res.exit_code == 0 and "finished at step 5" in res.output, res.output
    res = runner.invoke(main, ["train", "parser", "--data", "facesynth:32", "--out", str(tmp_path / "new")])
    assert res.exit_code == 2 and "--preset is required" in res.output
    for args, words in ((["--data", "facesynth:32"], "already holds a run"),
                        ([], "--data is required"),
                        (["--data", "facesynth:32", "--lr", "5"], "lr must be")):
        target = out if "already" in words else tmp_path / "other"
        res = runner.invoke(main, ["train", "parser", "--preset", "tiny", "--out", str(target), *args])
        assert res.exit_code == 2 and words in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1


def test_cli_set_of_a_flag_key_is_kept_and_a_clash_is_an_error(tmp_path):
    """--set lr=... used to be undone by the absent --lr flag (the run trained at the preset's lr)."""
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "parser", "--preset", "tiny", "--data", "facesynth:32", "--out", str(out),
                                    "--max-steps", "1", "--set", "lr=0.0003", "--set", "batch_size=3", "--quiet"])
    assert res.exit_code == 0, res.output
    run = json.loads((out / "run.json").read_text())
    assert run["lr"] == 0.0003 and run["batch_size"] == 3 and run["max_steps"] == 1
    res = CliRunner().invoke(main, ["train", "parser", "--preset", "tiny", "--data", "facesynth:32",
                                    "--out", str(tmp_path / "x"), "--lr", "0.001", "--set", "lr=0.0003"])
    assert res.exit_code != 0 and "lr given twice" in res.output and "Traceback" not in res.output


def test_cli_set_model_field(tmp_path):
    """--set model.NAME=VALUE reaches the run's architecture (JSON values: false is a bool)."""
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32", "--out",
                                    str(out), "--max-steps", "1", "--set", "model.mask_mode=spatial",
                                    "--set", "model.pooled=false", "--set", "sample_n=0", "--quiet"])
    assert res.exit_code == 0, res.output
    model = checkpoint.read_config(out / "last", "diffusion")["config"]
    assert model["mask_mode"] == "spatial" and model["pooled"] is False
    res = CliRunner().invoke(main, ["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32",
                                    "--out", str(tmp_path / "x"), "--set", "model.mask_mod=spatial"])
    assert res.exit_code == 2 and "unknown model field 'mask_mod'" in res.output
    assert len(res.output.strip().splitlines()) == 1
