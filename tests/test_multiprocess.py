"""Multi-process (DDP) training: `faceweave train` under two CPU processes, started the way a
multi-GPU run is (torchrun, and `accelerate launch --multi_gpu`, which runs torchrun itself).

`accelerate launch --cpu --num_processes 2` is not used: accelerate's --cpu starts ONE process
(several CPU processes need mpirun there), so it would test nothing. Without CUDA,
`accelerate launch --multi_gpu` / torchrun give one gloo process per rank on the CPU.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faceweave import checkpoint
from faceweave.train import TASKS

pytestmark = pytest.mark.slow        # starts several training processes at once

STEPS = 4
TIMEOUT_S = 150          # per run; each takes ~10-15 s on 2 busy cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher(kind: str) -> list[str]:
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed / gloo backend, so no CPU multi-process run")
    if kind == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    pytest.importorskip("accelerate.commands.launch", reason="accelerate's launcher is not installed")
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port())]


def _run(kind: str, family: str, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    cmd = [*_launcher(kind), "-m", "faceweave.cli", "train", family, "--preset", "tiny",
           "--data", "facesynth:32", "--out", str(out), "--max-steps", str(STEPS), "--quiet"]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:   # a hang (e.g. a collective only some ranks reach)
        pytest.fail(f"{kind} run of {family} did not finish in {TIMEOUT_S} s; output:\n{exc.stdout}\n{exc.stderr}")


@pytest.mark.parametrize("kind,family", [("torchrun", "diffusion"), ("accelerate", "parser")])
def test_two_process_training(tmp_path, kind, family):
    out = tmp_path / "run"
    start = time.perf_counter()
    proc = _run(kind, family, out)
    elapsed = time.perf_counter() - start
    log = f"{kind} {family} ({elapsed:.1f} s)\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-8000:]}"
    assert proc.returncode == 0, log
    # the run's summary line comes from the main process only, once
    assert proc.stdout.count(f"finished at step {STEPS}") == 1, log

    # one metrics.jsonl, written by the main process only: no line twice, one train and one val line per step
    lines = (out / "metrics.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(lines) == len(set(lines)), lines
    for kind_ in ("train", "val"):
        steps = [e["step"] for e in entries if e["kind"] == kind_]
        assert steps and len(steps) == len(set(steps)), (kind_, lines)
    assert [e["step"] for e in entries if e["kind"] == "train"][-1] == STEPS
    assert [e["step"] for e in entries if e["kind"] == "val"] == [STEPS]
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in entries if e["kind"] == "train")
    assert not list(out.glob(".*")), list(out.iterdir())   # no half-written checkpoint folders

    run = json.loads((out / "run.json").read_text())
    assert run["family"] == family and run["max_steps"] == STEPS

    meta = json.loads((out / "last" / "config.json").read_text())
    assert meta["step"] == STEPS and meta["family"] == family
    meta, state = checkpoint.load(out / "last", family)
    assert checkpoint.read_config(out / "best", family)["step"] == STEPS

    # the weights: the loop's seeded initialisation (seed 0), moved by STEPS AdamW steps
    task = TASKS[family]
    torch.manual_seed(run["seed"])
    model = task.build(meta["config"])
    checkpoint.load_into(model, state, where=str(out / "last"))   # loads strictly into the model
    torch.manual_seed(run["seed"])
    init = dict(task.build(meta["config"]).named_parameters())
    moved, bound = 0, STEPS * run["lr"] * 3.5   # AdamW: |step| <= lr (1 - b1) / sqrt(1 - b2) ~ 3.2 lr
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), name
        delta = (param.detach() - init[name].detach()).abs().max().item()
        assert delta <= bound, (name, delta, bound)
        moved += delta > 0
    assert moved >= 0.9 * len(init), f"only {moved} of {len(init)} parameter tensors changed"

    optimizer = checkpoint.load_tensors(out / "last", "optimizer")
    assert optimizer and all(torch.isfinite(t).all() for t in optimizer.values())
    if run["ema_decay"]:                        # diffusion tiny keeps an EMA: finite, not the raw weights
        ema = checkpoint.load_tensors(out / "last", "ema")
        assert set(ema) == set(state)
        assert all(torch.isfinite(t).all() for t in ema.values())
        assert any(not torch.equal(ema[k], state[k]) for k in init)
    print(f"{kind} {family}: {elapsed:.1f} s")


SCRIPT = """
import sys
from faceweave.train import train
result = train("diffusion", "tiny", "facesynth:32", sys.argv[1], progress=False,
               overrides={"grad_accum": 2, "max_steps": 4, "log_every": 1, "eval_every": 2, "ckpt_every": 2})
print("RESULT", result["step"], "score" in result, flush=True)
"""


def test_two_processes_with_grad_accum_ema_and_validation_during_the_run(tmp_path):
    """grad_accum (no_sync on the first micro-batch), EMA, validation on the main process while
    the other one trains on, periodic checkpoints and a metrics line every step."""
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONUNBUFFERED": "1"}
    cmd = [*_launcher("torchrun"), str(script), str(out)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the run did not finish in {TIMEOUT_S} s; output:\n{exc.stdout}\n{exc.stderr}")
    log = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-8000:]}"
    assert proc.returncode == 0, log
    # every rank gets to step 4; only the main process validates, so only it has a score
    assert sorted(line for line in proc.stdout.splitlines() if line.startswith("RESULT")) == \
        ["RESULT 4 False", "RESULT 4 True"], log
    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(e["kind"], e["step"]) for e in entries] == \
        [("train", 1), ("train", 2), ("val", 2), ("train", 3), ("train", 4), ("val", 4)]
    meta, state = checkpoint.load(out / "last", "diffusion")
    assert meta["step"] == STEPS and meta["val"]["step"] == STEPS
    ema = checkpoint.load_tensors(out / "last", "ema")
    assert all(torch.isfinite(t).all() for t in [*state.values(), *ema.values()])
