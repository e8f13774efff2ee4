"""`faceweave evaluate --data celebamask1k|FOLDER`: the real-face protocol end to end.

Runs on a small copy of the real collection in its own layout (tests/test_real_data.py's
fixture), with the bundled FaceSynth parser standing in for the real one where only the
plumbing is under test; skips with a reason when ../shared or dlib is absent.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from faceweave.cli import main
from faceweave.data.unified import UnifiedWriter
from faceweave.errors import FaceweaveError
from faceweave.eval.evaluate import evaluate
from faceweave.eval.real import RealProtocol, memorisation

from test_real_data import small_collection  # noqa: F401  (the fixture)


def test_memorisation_flags_copies_and_spares_strangers():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(50, 128)).astype(np.float32)
    held_out = rng.normal(size=(20, 128)).astype(np.float32)
    copies = bank[:10] + 0.01
    strangers = rng.normal(size=(10, 128)).astype(np.float32)
    assert memorisation(copies, bank, held_out)["memorised"] == 1.0
    assert memorisation(strangers, bank, held_out)["memorised"] <= 0.1
    assert memorisation(held_out, bank, held_out)["memorised"] <= 0.05  # the 1st percentile


def test_celeba_test_ids_are_the_conditions(tmp_path):
    """A converted CelebAMask-HQ copy is split as the papers split it: ids 27000-29999 held out."""
    image = np.full((16, 16, 3), 100, np.uint8)
    mask = np.ones((16, 16), np.uint8)
    with UnifiedWriter(tmp_path / "cm", source="celebamask-hq") as writer:
        for name in ("26998", "26999", "27000", "27001", "29999"):
            writer.add(name, image, mask, captions=["a face"], attributes={"Smiling": 1}, split="train")
    protocol = RealProtocol(str(tmp_path / "cm"), 16)
    assert [r["file"] for r in protocol.held] == ["27000.png", "27001.png", "29999.png"]
    assert [r["file"] for r in protocol.rest] == ["26998.png", "26999.png"]
    assert protocol.max_n == 2
    assert protocol.condition(0).captions == ["a face"] and protocol.condition(0).mask.shape == (16, 16)


def test_a_folder_without_held_out_photos_is_refused(tmp_path):
    image = np.full((16, 16, 3), 100, np.uint8)
    with UnifiedWriter(tmp_path / "f", source="folder") as writer:
        writer.add("a", image, captions=["a face"], split="train")
    with pytest.raises(FaceweaveError, match="need held-out photos and training photos"):
        RealProtocol(str(tmp_path / "f"), 16)
    with pytest.raises(FaceweaveError, match="not facesynth, celebamask1k or a unified data folder"):
        RealProtocol(str(tmp_path / "nothing"), 16)


@pytest.fixture
def real_env(small_collection, monkeypatch):  # noqa: F811
    pytest.importorskip("dlib", reason="the real ruler needs dlib (pip install dlib-bin)")
    monkeypatch.setenv("FACEWEAVE_CELEBAMASK1K", str(small_collection))
    return small_collection


def test_copy_baseline_on_real_photos_copies_and_the_ceiling_does_not(real_env):
    result = evaluate("copy", data="celebamask1k", given="prompt,mask", n=2, size=32, seeds_per_condition=1,
                      parser="parser-64", progress=False)
    m = result.metrics
    assert m["memorised"] == 1.0, "the copy baseline answers with training photos"
    assert m["ceiling"]["memorised"] <= 0.5     # held-out photos: at the 1st percentile by construction
    assert 0 < m["ceiling"]["mask_miou"] <= 1 and m["mask_miou"] is not None
    assert m["attr_acc"] is not None and m["fd"] is not None
    assert m["protocol"]["fd_features"].startswith("dlib")
    assert "val split" in m["protocol"]["conditions"]
    details = m["details"]["ceiling"]
    assert set(details["per_attribute"]) >= {"Male", "Young", "Eyeglasses"}


def test_cli_real_protocol_refuses_what_it_cannot_do(real_env, tmp_path):
    runner = CliRunner()
    too_many = runner.invoke(main, ["evaluate", "--backend", "copy", "--data", "celebamask1k", "--n", "50",
                                    "--size", "32", "--out", str(tmp_path / "a")])
    assert too_many.exit_code == 2 and "must be from 2 to 2 for --data celebamask1k" in too_many.output
    clf = runner.invoke(main, ["evaluate", "--backend", "copy", "--data", "celebamask1k", "--n", "2",
                               "--classifier", "classifier-64", "--out", str(tmp_path / "b")])
    assert clf.exit_code == 2 and "drop --classifier" in clf.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_cli_real_protocol_writes_metrics(real_env, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["evaluate", "--backend", "copy", "--data", "celebamask1k", "--n", "2",
                                       "--size", "32", "--seeds-per-condition", "1", "--parser", "parser-64",
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["memorised"] == 1.0 and "memorised" in result.output
