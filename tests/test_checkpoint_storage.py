"""Checkpoint storage: int8 weights (save -> load round trip, the tiny model's outputs,
damaged files, conversion of a folder, collab checkpoints and their collaborators) and
tensors shared with another checkpoint.

Tiny random or 1-step models on the CPU.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file

from faceweave import checkpoint
from faceweave.cli import main
from faceweave.errors import FaceweaveError
from faceweave.models.parser import PRESETS as PARSER_PRESETS, FaceParser
from faceweave.ruler import load_parser

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_parser():
    torch.manual_seed(0)
    model = FaceParser.from_config(PARSER_PRESETS["tiny"])
    g = torch.Generator().manual_seed(1)
    for m in model.modules():                      # non-trivial norm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def _save(model, path, **kw):
    return checkpoint.save(path, "parser", dataclasses.asdict(model.config), model.state_dict(),
                           image_size=32, metrics={"miou": 0.5}, **kw)


@pytest.fixture(scope="module")
def int8_dir(tiny_parser, tmp_path_factory):
    return _save(tiny_parser, tmp_path_factory.mktemp("ckpt") / "parser-int8", storage="int8")


def test_int8_round_trip_within_the_quantisation_step(tiny_parser, int8_dir):
    own = tiny_parser.state_dict()
    stored = load_file(str(int8_dir / checkpoint.WEIGHTS))
    quantized = [k[:-len(checkpoint.INT8_KEY)] for k in stored if k.endswith(checkpoint.INT8_KEY)]
    assert quantized, "the tiny parser has conv weights big enough to be stored as int8"
    for name in quantized:
        assert stored[name + checkpoint.INT8_KEY].dtype == torch.int8
        scale = stored[name + checkpoint.SCALE_KEY]
        assert scale.dtype == torch.float16 and scale.shape == (own[name].shape[0],) + (1,) * (own[name].dim() - 1)
    meta, state = checkpoint.load(int8_dir, "parser")
    assert set(state) == set(own)                  # the usual names, no ::int8 / ::scale left
    for name, w in own.items():
        if name in quantized:
            step = stored[name + checkpoint.SCALE_KEY].float()
            assert state[name].dtype == torch.float32
            assert ((state[name] - w.float()).abs() <= step / 2 + 1e-6).all(), name
        elif w.is_floating_point():                # biases, norms, small weights: fp16
            assert stored[name].dtype == torch.float16
            torch.testing.assert_close(state[name].float(), w.half().float())
        else:
            assert torch.equal(state[name], w)
    # small weights stay fp16; everything quantized is a *weight with >= 2 dims
    assert all(k.endswith("weight") and own[k].dim() >= 2 and own[k].numel() >= checkpoint.INT8_MIN_ELEMENTS
               for k in quantized)


def test_int8_config_records_the_storage(int8_dir, tiny_parser, tmp_path):
    meta = json.loads((int8_dir / checkpoint.CONFIG).read_text())
    assert meta["storage"] == "int8" and meta["format_version"] == 2
    assert meta["metrics"] == {"miou": 0.5} and meta["image_size"] == 32
    plain = json.loads((_save(tiny_parser, tmp_path / "plain", dtype=torch.float16) / checkpoint.CONFIG).read_text())
    assert "storage" not in plain and plain["format_version"] == 1     # fp16 files stay readable by older releases
    assert (int8_dir / checkpoint.WEIGHTS).stat().st_size < 0.7 * (tmp_path / "plain" / checkpoint.WEIGHTS).stat().st_size


def test_int8_model_outputs_nearly_unchanged(tiny_parser, int8_dir):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    loaded = load_parser(int8_dir)
    with torch.no_grad():
        before, after = tiny_parser(x), loaded.model(x)
    rel = (after - before).abs().max() / before.abs().max()
    assert rel < 0.03, float(rel)
    assert (after.argmax(1) == before.argmax(1)).float().mean() > 0.97


def test_convert_keeps_config_and_other_files(int8_dir, tiny_parser, tmp_path):
    src = _save(tiny_parser, tmp_path / "fp16", dtype=torch.float16)
    (src / "README.md").write_text("model card\n")
    out = checkpoint.convert(src, tmp_path / "int8")
    assert (out / "README.md").read_text() == "model card\n"
    meta = checkpoint.read_config(out)
    assert meta["storage"] == "int8" and meta["metrics"] == {"miou": 0.5}
    again = checkpoint.convert(out)                        # in place, idempotent
    assert again == out and sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    a, b = checkpoint.load(src)[1], checkpoint.load(out)[1]
    assert all((a[k].float() - b[k].float()).abs().max() < 0.05 for k in a)
    back = checkpoint.convert(out, tmp_path / "back", storage="fp16")
    assert checkpoint.read_config(back)["storage"] == "fp16"
    assert all(v.dtype == torch.float16 for v in load_file(str(back / checkpoint.WEIGHTS)).values() if v.is_floating_point())


def test_train_export_stays_fp16_unless_asked(tiny_parser, tmp_path):
    from faceweave.train import export
    run = tmp_path / "run"
    checkpoint.save(run / "best", "parser", dataclasses.asdict(tiny_parser.config), tiny_parser.state_dict(),
                    image_size=32, step=3)
    plain = load_file(str(export(run, tmp_path / "a") / checkpoint.WEIGHTS))
    assert all(v.dtype == torch.float16 for v in plain.values() if v.is_floating_point())
    small = export(run, tmp_path / "b", storage="int8")
    assert checkpoint.read_config(small)["storage"] == "int8"
    assert any(k.endswith(checkpoint.INT8_KEY) for k in load_file(str(small / checkpoint.WEIGHTS)))


def _damaged(int8_dir: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / checkpoint.CONFIG).write_text((int8_dir / checkpoint.CONFIG).read_text())
    tensors = load_file(str(int8_dir / checkpoint.WEIGHTS))
    name = next(k for k in tensors if k.endswith(checkpoint.SCALE_KEY))[:-len(checkpoint.SCALE_KEY)]
    edit(tensors, name)
    save_file(tensors, str(bad / checkpoint.WEIGHTS))
    return bad


@pytest.mark.parametrize("edit, message", [
    (lambda t, n: t.pop(n + checkpoint.SCALE_KEY), "has no scale"),
    (lambda t, n: t.__setitem__(n + checkpoint.SCALE_KEY, t[n + checkpoint.SCALE_KEY][:1].clone()), "does not fit"),
    (lambda t, n: t.__setitem__(n + checkpoint.SCALE_KEY, torch.full_like(t[n + checkpoint.SCALE_KEY], float("nan"))),
     "non-finite"),
    (lambda t, n: t.__setitem__(n + checkpoint.INT8_KEY, t[n + checkpoint.INT8_KEY].float()), "not an int8 weight"),
    (lambda t, n: t.pop(n + checkpoint.INT8_KEY), "has no int8 weight"),
])
def test_damaged_int8_storage_is_one_clear_error(int8_dir, tmp_path, edit, message):
    bad = _damaged(int8_dir, tmp_path, edit)
    with pytest.raises(FaceweaveError, match=message) as info:
        load_parser(bad)
    assert "\n" not in str(info.value) and "damaged" in str(info.value)
    image = tmp_path / "face.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    result = CliRunner().invoke(main, ["parse", str(image), "--out", str(tmp_path / "m.png"), "--model", str(bad)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and message in result.output and "Traceback" not in result.output


def test_unknown_storage_is_refused(int8_dir, tmp_path):
    bad = tmp_path / "int4"
    bad.mkdir()
    meta = json.loads((int8_dir / checkpoint.CONFIG).read_text())
    (bad / checkpoint.CONFIG).write_text(json.dumps({**meta, "storage": "int4"}))
    (bad / checkpoint.WEIGHTS).write_bytes((int8_dir / checkpoint.WEIGHTS).read_bytes())
    with pytest.raises(FaceweaveError, match="stores its weights as 'int4'.*upgrade faceweave"):
        checkpoint.load(bad)


def test_save_refuses_reserved_names_and_mixed_dtypes(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        checkpoint.save(tmp_path / "a", "parser", {}, {"x::int8": torch.zeros(2)}, storage="int8")
    with pytest.raises(ValueError, match="do not also pass dtype"):
        checkpoint.save(tmp_path / "b", "parser", {}, {"w": torch.zeros(2)}, storage="int8", dtype=torch.float32)
    assert not list(tmp_path.iterdir())                    # nothing half-written


def test_quantize_keeps_zero_channels_and_bounds():
    w = torch.randn(4, 8, 3, 3)
    w[1] = 0
    q, scale = checkpoint.quantize_int8(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127 and float(scale[1]) == 0 and not q[1].any()
    assert ((checkpoint.dequantize_int8(q, scale) - w).abs() <= scale.float() / 2 + 1e-7).all()


@pytest.mark.slow
def test_requantize_script(tiny_parser, tmp_path):
    script = REPO / "scripts" / "requantize.py"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert "requantize.py parser-64 --out" in help_text
    src = _save(tiny_parser, tmp_path / "fp16", dtype=torch.float16)
    run = subprocess.run([sys.executable, str(script), str(src), "--out", str(tmp_path / "int8")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "MiB ->" in run.stdout and checkpoint.read_config(tmp_path / "int8")["storage"] == "int8"
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no checkpoint folder")
    assert missing.stderr.count("\n") == 1


@pytest.mark.slow
def test_collab_accepts_int8_collaborators_converted_with_it(tmp_path):
    """A collab checkpoint checks its collaborators' fingerprints: requantize.py records the
    fingerprint of their int8 storage first, so the converted set loads; a collaborator
    converted behind the collab checkpoint's back is refused."""
    from faceweave.backends.collab import CollabPipeline
    from faceweave.train import export, train
    quiet = {"progress": False}
    for m in ("text", "mask"):
        train("diffusion", "tiny", "facesynth:32", tmp_path / m, overrides={"max_steps": 1, "modalities": [m]}, **quiet)
    refs = {m: str(export(tmp_path / m, tmp_path / f"{m}16", which="last")) for m in ("text", "mask")}
    train("collab", "tiny", "facesynth:32", tmp_path / "c", overrides={"max_steps": 1, "collaborators": refs}, **quiet)
    collab = export(tmp_path / "c", tmp_path / "c16", which="last")
    stray = checkpoint.convert(refs["text"], tmp_path / "text8")
    from faceweave.backends.collab import relink
    with pytest.raises(FaceweaveError, match="is not the 'text' collaborator"):
        relink(collab, {"text": str(stray)})
    script = REPO / "scripts" / "requantize.py"
    run = subprocess.run([sys.executable, str(script), refs["text"], refs["mask"], str(collab)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(collab))          # the collab checkpoint first
    specs = checkpoint.read_config(collab)["config"]["collaborators"]
    assert all(c["fingerprint_int8"] and c["fingerprint_int8"] != c["fingerprint"] for c in specs)
    assert all(checkpoint.read_config(r)["storage"] == "int8" for r in [*refs.values(), collab])
    pipe = CollabPipeline.from_pretrained(collab)
    assert pipe(prompt="a man", num_inference_steps=2, progress=False).images[0].shape == (32, 32, 3)


def _first_prefix(state: dict) -> str:
    return next(iter(state)).split(".")[0] + "."


def test_shared_tensors_load_as_the_complete_checkpoint(tiny_parser, tmp_path):
    base = _save(tiny_parser, tmp_path / "base", storage="int8")
    user = _save(tiny_parser, tmp_path / "user", storage="int8")
    prefix = _first_prefix(tiny_parser.state_dict())
    before = load_file(str(user / checkpoint.WEIGHTS))
    meta = checkpoint.share(user, prefix, "../base")
    after = load_file(str(user / checkpoint.WEIGHTS))
    assert not any(k.startswith(prefix) for k in after) and len(after) < len(before)
    assert meta[checkpoint.SHARED][0]["prefix"] == prefix
    assert json.loads((user / "config.json").read_text())["metrics"] == {"miou": 0.5}   # other keys kept
    _, want = checkpoint.load(base)
    _, got = checkpoint.load(user)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    complete = checkpoint.convert(user, tmp_path / "complete")          # convert writes every tensor
    assert checkpoint.SHARED not in json.loads((complete / "config.json").read_text())
    assert any(k.startswith(prefix) for k in load_file(str(complete / checkpoint.WEIGHTS)))


def test_shared_tensors_refuse_a_changed_or_missing_source(tiny_parser, tmp_path):
    base = _save(tiny_parser, tmp_path / "base", storage="int8")
    user = _save(tiny_parser, tmp_path / "user", storage="int8")
    prefix = _first_prefix(tiny_parser.state_dict())
    checkpoint.share(user, prefix, "../base")
    stored = load_file(str(base / checkpoint.WEIGHTS))
    key = next(k for k in stored if k.startswith(prefix) and stored[k].is_floating_point())
    stored[key] = stored[key] + 1
    save_file(stored, str(base / checkpoint.WEIGHTS))
    with pytest.raises(FaceweaveError, match="not the ones it was made with"):
        checkpoint.load(user)
    shutil.rmtree(base)
    with pytest.raises(FaceweaveError, match="which is missing"):
        checkpoint.load(user)


def test_share_refuses_different_tensors(tiny_parser, tmp_path):
    _save(tiny_parser, tmp_path / "a", storage="int8")
    other = {k: (v + 1 if v.is_floating_point() else v) for k, v in tiny_parser.state_dict().items()}
    checkpoint.save(tmp_path / "b", "parser", dataclasses.asdict(tiny_parser.config), other, storage="int8")
    prefix = _first_prefix(other)
    with pytest.raises(FaceweaveError, match="does not store the same tensors"):
        checkpoint.share(tmp_path / "a", prefix, "../b")
    with pytest.raises(FaceweaveError, match="stores no tensors"):
        checkpoint.share(tmp_path / "a", "nowhere.", "../b")


@pytest.mark.parametrize("gan, shared", [
    ("gan-64", [("generator.", "stylegan2-64")]),
    ("gan-64-real", [("generator.", "stylegan2-64-real"), ("sketch_ae.", "gan-64")]),
    ("stylize-64-real", [("generator.", "stylegan2-64-real")]),
])
def test_bundled_gan_reads_its_generator_from_stylegan2(gan, shared):
    meta = checkpoint.read_config(gan)
    assert [(e["prefix"], e["model"]) for e in meta[checkpoint.SHARED]] == shared
    _, mine = checkpoint.load(gan)
    for prefix, source in shared:
        _, theirs = checkpoint.load(source)
        weights = [k for k in theirs if k.startswith(prefix)]
        assert weights and all(torch.equal(mine[k], theirs[k]) for k in weights)
    assert not any(k.startswith("discriminator.") for k in mine)
