"""`faceweave evaluate`: backends registry, the copy baseline, metrics.json, report, Inception FID.

The protocol is checked with *oracle* instruments: a parser and a classifier that look up
the exact FaceSynth mask and attributes of every image they were told about. With them the
ceiling is exactly 1.0 and the copy baseline's mask mIoU is a number this file can compute
independently, so the plumbing (which output is scored against which condition) is tested
to the last pixel. Tiny random checkpoints (faceweave.checkpoint) drive the CLI end to end.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file

from faceweave import Conditions, FaceweaveError, checkpoint, synth
from faceweave.backends import get_backend
from faceweave.backends.copy import facesynth_bank
from faceweave.cli import main
from faceweave.data.unified import facesynth_seed
from faceweave.eval import mask_scores
from faceweave.eval.evaluate import METRICS, evaluate, run_evaluation
from faceweave.eval.inception import InceptionV3, load_inception
from faceweave.models.classifier import PRESETS as CLASSIFIER_PRESETS, AttributeClassifier
from faceweave.models.parser import PRESETS as PARSER_PRESETS, FaceParser
from faceweave.synth import FACESYNTH_ATTRIBUTES

SIZE, N, BANK = 32, 24, 48


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


class Oracle:
    """Parser and classifier stand-in that knows the true labels of the faces it was shown.

    features are 4 x 4 block means of the colours (48-d): cheap, deterministic, and they
    separate different faces, which is all fd and diversity need here."""

    attributes = list(FACESYNTH_ATTRIBUTES)
    path = None
    size = SIZE

    def __init__(self, faces):
        self.truth = {_key(f.image): f for f in faces}

    def predict(self, images):
        return np.stack([self.truth[_key(im)].mask for im in images])

    def predict_proba(self, images):
        return np.array([[self.truth[_key(im)].attributes[a] for a in self.attributes] for im in images],
                        np.float32)

    def features(self, images):
        blocks = np.asarray(images, np.float32).reshape(len(images), 4, SIZE // 4, 4, SIZE // 4, 3)
        return blocks.mean(axis=(2, 4)).reshape(len(images), -1)


@pytest.fixture(scope="module")
def test_faces():
    return [synth.render(facesynth_seed("test"), i, SIZE) for i in range(N)]


@pytest.fixture(scope="module")
def oracle(test_faces):
    bank = [synth.render(facesynth_seed("train"), i, SIZE, captions=0) for i in range(BANK)]
    return Oracle(test_faces + bank)


@pytest.fixture(scope="module")
def copy_run(oracle):
    return evaluate("copy", given="prompt,mask", n=N, size=SIZE, seeds_per_condition=2, parser=oracle,
                    classifier=oracle, backend_options={"bank_size": BANK}, progress=False)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ruler")
    torch.manual_seed(0)
    for family, model in (("parser", FaceParser.from_config(PARSER_PRESETS["tiny"])),
                          ("classifier", AttributeClassifier.from_config(CLASSIFIER_PRESETS["tiny"]))):
        checkpoint.save(root / family, family, dataclasses.asdict(model.config), model.state_dict(),
                        image_size=SIZE)
    return root / "parser", root / "classifier"


# --- backends ------------------------------------------------------------------------------

def test_registry_errors_name_the_available_backends():
    with pytest.raises(FaceweaveError, match="unknown backend 'nope'; available backends: collab, copy"):
        get_backend("nope")
    with pytest.raises(FaceweaveError,
                       match="unknown backend 'eg3d'; available backends: collab, copy, ddgi, diffusion, gan, multiview, "
                             "stylize"):
        get_backend("eg3d")
    with pytest.raises(FaceweaveError, match="no model"):
        get_backend("copy", model="some/checkpoint")
    with pytest.raises(FaceweaveError, match="bank size"):
        get_backend("copy", bank_size=0)


def test_copy_returns_the_bank_face_whose_mask_is_asked_for():
    bank = facesynth_bank(SIZE, BANK)
    backend = get_backend("copy", bank_size=BANK)
    for j in (0, 7, BANK - 1):
        mask = bank.masks[:, j].reshape(SIZE, SIZE)
        out, = backend.generate([Conditions(mask=mask)], [123], SIZE)
        assert np.array_equal(out, bank.images[j])


def test_copy_depends_only_on_its_own_condition_and_seed(test_faces):
    backend = get_backend("copy", bank_size=BANK)
    conds = [Conditions(), Conditions(prompt=test_faces[0].captions[0]), Conditions(mask=test_faces[1].mask),
             Conditions(sketch=test_faces[2].sketch), Conditions(attributes={"Male": 1, "Smiling": 0})]
    seeds = [5, 6, 7, 8, 9]
    batch = backend.generate(conds, seeds, SIZE)
    for cond, seed, image in zip(conds, seeds, batch):
        assert np.array_equal(backend.generate([cond], [seed], SIZE)[0], image)
    unconditional = backend.generate([Conditions()] * 4, [0, 1, 2, 0], SIZE)
    assert np.array_equal(unconditional[0], unconditional[3])
    assert len({_key(im) for im in unconditional[:3]}) > 1          # the seed picks the face
    male = backend.generate([Conditions(attributes={"Male": 1})] * 6, list(range(6)), SIZE)
    assert len({_key(im) for im in male}) > 1                         # seed breaks attribute ties
    with pytest.raises(FaceweaveError, match="cannot condition on image"):
        backend.generate([Conditions(image=test_faces[0].image)], [0], SIZE)
    with pytest.raises(FaceweaveError, match="one seed per image"):
        backend.generate([Conditions()], [0, 1], SIZE)


# --- metrics.json --------------------------------------------------------------------------

def test_metrics_json_has_every_key_and_nulls_where_meaningless(copy_run):
    m = copy_run.metrics
    for key in METRICS:
        assert key in m and key in m["ceiling"], key
    assert m["sketch_f"] is None and m["ceiling"]["sketch_f"] is None        # no sketch given
    assert m["fid"] is None and m["kid_inception"] is None                   # no Inception weights
    assert m["ceiling"]["diversity"] is None and m["ceiling"]["sec_per_image"] is None
    assert m["n"] == m["ceiling"]["n"] == N and m["sec_per_image"] > 0
    protocol = m["protocol"]
    assert protocol["split"] == "test" and protocol["given"] == ["prompt", "mask"]
    assert protocol["backend"] == {"backend": "copy", "bank": f"FaceSynth train split, faces 0..{BANK - 1}",
                                   "bank_size": BANK}
    assert protocol["size"] == SIZE and protocol["seeds_per_condition"] == 2
    # 24 images in 48 feature dimensions: fd is computed but flagged as biased
    assert any(w.startswith("fd:") and "biased" in w for w in m["warnings"])
    json.dumps(m, allow_nan=False)


def test_ceiling_is_perfect_and_copy_is_below_it(copy_run, test_faces):
    m = copy_run.metrics
    # the oracle reads the truth off real faces, so the ceiling is exact
    assert m["ceiling"]["mask_miou"] == 1.0 and m["ceiling"]["mask_pixel_acc"] == 1.0
    assert m["ceiling"]["attr_acc"] == 1.0
    # the copy baseline's mIoU is that of the best bank mask of each face, pooled over faces
    bank = facesynth_bank(SIZE, BANK)
    bank_masks = bank.masks.T.reshape(BANK, SIZE, SIZE)
    best = [bank_masks[int(np.argmax([mask_scores(b, f.mask, per_image=True)["miou_image_mean"]
                                      for b in bank_masks]))] for f in test_faces]
    expected = mask_scores(np.stack(best), np.stack([f.mask for f in test_faces]))
    assert m["mask_miou"] == pytest.approx(expected["miou"], abs=1e-12)
    assert m["mask_pixel_acc"] == pytest.approx(expected["pixel_acc"], abs=1e-12)
    assert 0.2 < m["mask_miou"] < m["ceiling"]["mask_miou"]
    assert m["attr_acc"] < m["ceiling"]["attr_acc"]
    checked = m["details"]["run"]["per_attribute_checked"]           # what each accuracy is over
    assert sum(checked.values()) == m["details"]["run"]["attributes_checked"] > 0
    assert checked == m["details"]["ceiling"]["per_attribute_checked"]
    assert all((checked[a] == 0) == (acc is None) for a, acc in m["details"]["run"]["per_attribute"].items())
    assert m["fd"] > 0 and m["ceiling"]["fd"] > 0
    assert m["diversity"] == 0.0                         # nearest-by-mask ignores the seed


def test_other_modalities_fill_their_own_keys(oracle):
    m = evaluate("copy", given="sketch,attributes", n=4, size=SIZE, seeds_per_condition=1, parser=oracle,
                 classifier=oracle, backend_options={"bank_size": BANK}, progress=False).metrics
    assert m["mask_miou"] is None and m["mask_pixel_acc"] is None and m["diversity"] is None
    assert 0 < m["sketch_f"] <= 1 and 0 < m["ceiling"]["sketch_f"] <= 1
    assert m["ceiling"]["attr_acc"] == 1.0 and m["attr_acc"] is not None
    nothing = evaluate("copy", given="none", n=2, size=SIZE, seeds_per_condition=3, parser=oracle,
                       classifier=oracle, backend_options={"bank_size": BANK}, progress=False).metrics
    assert nothing["attr_acc"] is None and nothing["ceiling"]["attr_acc"] is None
    assert nothing["diversity"] > 0                     # unconditional copies: the seed picks the face


def test_bad_arguments_are_one_line_errors(oracle):
    for kwargs, needle in (({"n": 1}, "at least 2 per side"), ({"given": "prompt,colour"}, "unknown modality"),
                           ({"seeds_per_condition": 0}, "seeds-per-condition"), ({"size": 8}, "out of range")):
        with pytest.raises(FaceweaveError, match=needle):
            evaluate("copy", parser=oracle, classifier=oracle, progress=False, **kwargs)


# --- the output folder -----------------------------------------------------------------------

def test_output_folder_refused_replaced_and_never_half_written(oracle, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    options = dict(backend="copy", n=4, size=SIZE, seeds_per_condition=1, parser=oracle, classifier=oracle,
                   backend_options={"bank_size": BANK}, progress=False)
    with pytest.raises(FaceweaveError, match="--overwrite"):
        run_evaluation(out, **options)
    assert (out / "keep.txt").read_text() == "mine"

    import faceweave.eval.report as report

    def crash(*_):
        raise RuntimeError("disk full")
    monkeypatch.setattr(report, "report_html", crash)
    with pytest.raises(RuntimeError):
        run_evaluation(out, overwrite=True, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"] and (out / "keep.txt").exists()
    monkeypatch.undo()

    run_evaluation(out, overwrite=True, **options)
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "metrics.json", "report.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 * 3 and "ceiling" in page   # 4 x (mask, real, output)
    assert Image.open(out / "grid.png").size[1] > 4 * 128


# --- the command line -------------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_end_to_end_with_tiny_checkpoints(tiny_checkpoints, tmp_path):
    parser, classifier = tiny_checkpoints
    out = tmp_path / "eval_copy"
    res = run("evaluate", "--backend", "copy", "--n", 6, "--size", SIZE, "--seeds-per-condition", 2,
              "--given", "prompt,mask,sketch", "--bank-size", BANK, "--parser", parser,
              "--classifier", classifier, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(metrics[k] is not None for k in ("mask_miou", "attr_acc", "sketch_f", "fd", "kid", "diversity"))
    assert metrics["protocol"]["parser"]["checkpoint"] == str(parser)
    assert len(metrics["protocol"]["classifier"]["weights_sha256"]) == 16
    assert "mask_miou" in res.output and "ceiling" in res.output
    help_text = run("evaluate", "--help").output
    assert "faceweave evaluate --backend copy --n 64" in help_text and "--data celebamask1k --n 64" in help_text


def test_cli_bad_inputs_exit_2_with_one_line(tiny_checkpoints, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    not_weights = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(not_weights))
    parser, classifier = tiny_checkpoints
    common = ["--parser", parser, "--classifier", classifier, "--size", SIZE, "--quiet"]
    cases = [
        (["--backend", "nope", "--out", tmp_path / "a"], "unknown backend 'nope'; available backends: collab, copy"),
        (["--backend", "multiview", "--out", tmp_path / "a"], "multiview backend has no bundled model"),
        (["--backend", "copy", "--n", 0, "--out", tmp_path / "a"], "at least 2 per side"),
        (["--backend", "copy", "--given", "prompt,colour", "--out", tmp_path / "a"], "unknown modality 'colour'"),
        (["--backend", "copy", "--out", full], "--overwrite"),
        (["--backend", "copy", "--model", "x", "--out", tmp_path / "a"], "no model"),
        (["--backend", "copy", "--n", 2, "--inception-weights", not_weights, "--out", tmp_path / "a"],
         "not InceptionV3 FID weights"),
    ]
    for args, needle in cases:
        res = run("evaluate", *args, *common)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and needle in lines[0], (args, res.output)
    assert not (tmp_path / "a").exists() and sorted(p.name for p in full.iterdir()) == ["x"]


# --- Inception -----------------------------------------------------------------------------

def test_inception_is_the_fid_architecture():
    model = InceptionV3()
    # torchvision's Inception3 has 27,161,264 parameters; minus its aux head (3,326,696) and
    # its 1000-way fc (2,049,000) that is 21,785,568: the pool3 network FID uses.
    assert sum(p.numel() for p in model.parameters()) == 21_785_568
    assert "Mixed_7c.branch3x3dbl_3b.conv.weight" in model.state_dict()


def test_inception_loader_rejects_what_is_not_inception(tmp_path, tiny_checkpoints):
    with pytest.raises(FaceweaveError, match="does not exist"):
        load_inception(tmp_path / "missing.pth")
    with pytest.raises(FaceweaveError, match=r"not InceptionV3 FID weights: \d+ of \d+ tensors are missing"):
        load_inception(tiny_checkpoints[1] / "model.safetensors")
    partial = tmp_path / "partial.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, partial)
    with pytest.raises(FaceweaveError, match="469 of 470 tensors are missing, in Conv2d_1a_3x3, .* and 12 more"):
        load_inception(partial)
    pickled = tmp_path / "pickled.pth"
    torch.save({"scale": Fraction(1, 3)}, pickled)     # any pickled object weights_only must refuse
    with pytest.raises(FaceweaveError, match="cannot be read as plain tensors"):
        load_inception(pickled)
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    with pytest.raises(FaceweaveError, match="unknown weights format"):
        load_inception(text)


def test_fid_with_random_stand_in_weights(oracle, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "inception.safetensors"
    save_file({k: v.half() for k, v in InceptionV3().state_dict().items()}, str(weights))
    m = evaluate("copy", given="mask", n=2, size=SIZE, seeds_per_condition=1, parser=oracle, classifier=oracle,
                 inception_weights=weights, backend_options={"bank_size": BANK}, progress=False).metrics
    for scores in (m, m["ceiling"]):
        assert np.isfinite(scores["fid"]) and scores["fid"] >= 0 and np.isfinite(scores["kid_inception"])
    assert m["protocol"]["inception"]["file"] == "inception.safetensors"
    assert any(w.startswith("fid:") for w in m["warnings"])       # 2 images in 2048 dimensions


def test_attribute_shortfall_recounts_old_files_and_ranks_the_lost_checks(copy_run, benchmark_module, tmp_path):
    """benchmarks/attribute_shortfall.py: checks per attribute from metrics.json, or recounted from
    the protocol for a file written before they were recorded; losses ranked and summed."""
    shortfall = benchmark_module("attribute_shortfall")
    m = json.loads(json.dumps(copy_run.metrics))
    recorded = shortfall.checks_per_attribute(m)
    del m["details"]["run"]["per_attribute_checked"]                  # as in a file written before the count was recorded
    assert shortfall.checks_per_attribute(m) == recorded
    rows, summary = shortfall.shortfall(m, target=0.9)
    assert [r["lost"] for r in rows] == sorted((r["lost"] for r in rows), reverse=True)
    assert summary["checks"] == m["details"]["run"]["attributes_checked"]
    assert summary["lost"] == pytest.approx((m["ceiling"]["attr_acc"] - m["attr_acc"]) * summary["checks"])
    assert summary["needed"] == pytest.approx(max(0, 0.9 * m["ceiling"]["attr_acc"] - m["attr_acc"]) * summary["checks"])
    m["details"]["run"]["attributes_checked"] += 1                    # not the protocol it claims
    with pytest.raises(SystemExit, match="not written under the protocol"):
        shortfall.checks_per_attribute(m)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(copy_run.metrics))
    shown = subprocess.run([sys.executable, str(Path(shortfall.__file__)), str(path), "--top", "3"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    assert len([line for line in shown.stdout.splitlines() if line.startswith("| ")]) == 1 + 3
    assert "more correct checks reach 90 % of the ceiling" in shown.stdout
    path.write_text("{}")
    bad = subprocess.run([sys.executable, str(Path(shortfall.__file__)), str(path)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert bad.returncode == 2 and "not a metrics.json" in bad.stderr and "Traceback" not in bad.stderr
