"""benchmarks/ablate_diffusion.py: `train` spans interrupted runs (a short run is resumed to --steps, never
scored half-trained, and a variant's scores are kept and reused); `weights` computes each loss
weighting's share of the training signal per noise band; `noise` scores euler_ancestral with
its fresh noise limited by s_tmin."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow        # trains tiny models through the benchmark script, several times

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablate_diffusion.py"


def _ablate(out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "train", "--preset", "tiny", "--steps", str(steps), "--n", "2",
           "--steps-sample", "2", "--only", "mask tokens", "--out", str(out), "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_training_ablation_resumes_and_keeps_scores(tmp_path):
    run = tmp_path / "mask_tokens"
    run.mkdir()                                          # a variant killed before its first checkpoint
    (run / "run.json").write_text("{}")
    first = _ablate(tmp_path, 2)
    assert first.returncode == 0, first.stderr
    assert json.loads((run / "scores.json").read_text())["key"]["steps"] == 2

    # more steps asked of the same folder: resumed from step 2, not retrained, and scored again
    second = _ablate(tmp_path, 3)
    assert second.returncode == 0, second.stderr
    assert json.loads((run / "last" / "config.json").read_text())["step"] == 3
    assert len(json.loads((run / "run.json").read_text())["commands"]) == 2
    scores = json.loads((run / "scores.json").read_text())
    assert scores["key"]["steps"] == 3 and 0 <= scores["row"]["mask_miou"] <= 1
    table = json.loads((tmp_path / "ablation.json").read_text())
    assert table["rows"]["mask tokens"] == scores["row"] and table["steps"] == 3

    # the same call again trains and scores nothing
    stamp = (run / "scores.json").stat().st_mtime_ns
    third = _ablate(tmp_path, 3)
    assert third.returncode == 0, third.stderr
    assert (run / "scores.json").stat().st_mtime_ns == stamp
    assert len(json.loads((run / "run.json").read_text())["commands"]) == 2

    # scores kept under another protocol (before prompts' attributes were read) are redone
    old = json.loads((run / "scores.json").read_text())
    assert old["key"]["prompt_attributes"] is True
    del old["key"]["prompt_attributes"]
    (run / "scores.json").write_text(json.dumps(old))
    fourth = _ablate(tmp_path, 3)
    assert fourth.returncode == 0, fourth.stderr
    assert json.loads((run / "scores.json").read_text())["key"]["prompt_attributes"] is True
    assert len(json.loads((run / "run.json").read_text())["commands"]) == 2

    # a key kept before the sampler was recorded means dpmpp_2m: still valid, not redone
    old = json.loads((run / "scores.json").read_text())
    assert old["key"].pop("sampler") == "dpmpp_2m"
    (run / "scores.json").write_text(json.dumps(old))
    stamp = (run / "scores.json").stat().st_mtime_ns
    assert _ablate(tmp_path, 3).returncode == 0
    assert (run / "scores.json").stat().st_mtime_ns == stamp

    fewer = _ablate(tmp_path, 2)
    assert fewer.returncode != 0 and "already trained to 3 steps" in fewer.stderr
    assert "Traceback" not in fewer.stderr


def test_scores_kept_in_a_file_outlive_the_run_folder(tmp_path):
    """--kept FILE: a fresh checkout has no runs/; a variant scored in FILE under the same
    protocol is neither trained nor scored again, one of another protocol is."""
    kept = tmp_path / "kept.json"
    first = _ablate(tmp_path / "a", 2, "--kept", str(kept))
    assert first.returncode == 0, first.stderr
    entry = json.loads(kept.read_text())["mask tokens"]
    assert entry["key"]["preset"] == "tiny" and entry["key"]["steps"] == 2 and 0 <= entry["row"]["mask_miou"] <= 1
    val = json.loads((tmp_path / "a" / "mask_tokens" / "export" / "config.json").read_text())["training"]["val"]
    assert entry["row"]["val_loss"] == val["val_loss"] > 0 and entry["row"]["val_loss_uncond"] == val["val_loss_uncond"]
    assert "| val_loss | val_loss_uncond | mask_miou |" in first.stdout

    # an entry kept before the losses were recorded gets them from its run folder, if it still exists
    old = json.loads(kept.read_text())
    del old["mask tokens"]["row"]["val_loss"], old["mask tokens"]["row"]["val_loss_uncond"]
    kept.write_text(json.dumps(old))
    assert _ablate(tmp_path / "a", 2, "--kept", str(kept)).returncode == 0
    assert json.loads(kept.read_text())["mask tokens"] == entry

    again = _ablate(tmp_path / "b", 2, "--kept", str(kept))    # another out folder: nothing there
    assert again.returncode == 0, again.stderr
    assert "kept in" in again.stdout and not (tmp_path / "b" / "mask_tokens").exists()
    assert json.loads((tmp_path / "b" / "ablation.json").read_text())["rows"]["mask tokens"] == entry["row"]

    other = _ablate(tmp_path / "c", 3, "--kept", str(kept))    # another --steps: trained and scored
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "c" / "mask_tokens" / "scores.json").exists()
    assert json.loads(kept.read_text())["mask tokens"]["key"]["steps"] == 3


def test_weight_shares_follow_the_weightings(benchmark_module):
    module = benchmark_module("ablate_diffusion")
    shares = module.weight_shares()
    bands = module.WEIGHT_BANDS
    for row in shares.values():
        assert abs(sum(row) - 1) < 1e-9
    # EDM's signal is flat per level, so its shares are the training distribution's band probabilities
    cdf = [0.5 * (1 + math.erf((math.log(b) + 1.2) / (1.2 * math.sqrt(2)))) if 0 < b < math.inf else float(b > 0)
           for b in bands]
    assert all(abs(s - (hi - lo)) < 1e-3 for s, lo, hi in zip(shares["edm"], cdf, cdf[1:]))
    # above the min-SNR cap (sigma > sqrt(0.05)) min_snr's weight is uniform's, so their bands keep the same ratios
    assert abs(shares["min_snr"][3] / shares["min_snr"][4] - shares["uniform"][3] / shares["uniform"][4]) < 1e-6
    # uniform moves signal to the low levels, p2 and min_snr away from them, against EDM
    assert shares["uniform"][0] > shares["edm"][0] > shares["min_snr"][0] > shares["p2"][0]
    assert shares["edm"][4] > max(shares[k][4] for k in ("uniform", "p2", "min_snr"))


def test_weights_prints_a_table_and_bad_arguments_are_one_line_errors():
    shown = subprocess.run([sys.executable, str(SCRIPT), "weights"], capture_output=True, text=True, timeout=120,
                           check=False)
    rows = [line for line in shown.stdout.splitlines() if line.startswith("| ")]
    assert shown.returncode == 0 and len(rows) == 5 and rows[-1].startswith("| min_snr |")
    missing = subprocess.run([sys.executable, str(SCRIPT), "train"], capture_output=True, text=True, timeout=120,
                             check=False)
    assert missing.returncode == 2 and "needs --out DIR" in missing.stderr.strip().splitlines()[-1]
    unknown = subprocess.run([sys.executable, str(SCRIPT), "weights", "--preset", "nope"], capture_output=True,
                             text=True, timeout=120, check=False)
    assert unknown.returncode == 2 and "no preset 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_noise_scores_each_s_tmin_with_the_fine_attributes(tmp_path, tiny_model):
    cmd = [sys.executable, str(SCRIPT), "noise", "--model", str(tiny_model), "--n", "2", "--steps", "2",
           "--s-tmin", "0,1000", "--out", str(tmp_path), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "ablation.json").read_text())
    assert list(result["rows"]) == ["s_tmin 0 (default)", "s_tmin 1000 (= ddim, eta 0)"]
    assert result["sampler"] == "euler_ancestral" and result["steps"] == 2
    row = result["rows"]["s_tmin 0 (default)"]
    assert 0 <= row["mask_miou"] <= 1 and "High_Cheekbones" in row and "Young" in result["ceiling"]
    header = next(line for line in done.stdout.splitlines() if line.startswith("| setting"))
    assert header.endswith("| Young |")
    bad = subprocess.run(cmd[:-5] + ["--s-tmin", "0,-1", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 2 and "noise levels are numbers >= 0" in bad.stderr and "Traceback" not in bad.stderr
