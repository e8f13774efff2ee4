"""The ruler: FaceParser / AttributeClassifier models, ruler.load_*, `faceweave parse|describe`.

Tiny random models for the mechanics (shapes, round trips, batch-vs-single identity, bad
checkpoints); the bundled models for the end-to-end commands and one real quality check.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from faceweave import checkpoint
from faceweave.cli import main
from faceweave.data import FaceSynthDataset
from faceweave.errors import FaceweaveError
from faceweave.eval import mask_scores
from faceweave.models.classifier import PRESETS as CLASSIFIER_PRESETS, AttributeClassifier
from faceweave.models.parser import PRESETS as PARSER_PRESETS, FaceParser
from faceweave.ruler import load_classifier, load_parser
from faceweave.synth import FACESYNTH_ATTRIBUTES


def _randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so eval mode differs from a fresh model."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def tiny_parser_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = _randomise_norms(FaceParser.from_config(PARSER_PRESETS["tiny"]))
    path = tmp_path_factory.mktemp("ckpt") / "parser-tiny"
    checkpoint.save(path, "parser", dataclasses.asdict(model.config), model.state_dict(), image_size=32)
    return path, model


@pytest.fixture(scope="module")
def tiny_classifier_dir(tmp_path_factory):
    torch.manual_seed(1)
    model = _randomise_norms(AttributeClassifier.from_config(CLASSIFIER_PRESETS["tiny"]))
    path = tmp_path_factory.mktemp("ckpt") / "classifier-tiny"
    checkpoint.save(path, "classifier", dataclasses.asdict(model.config), model.state_dict(), image_size=32)
    return path, model


def _images(n=5, h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


# --- models -------------------------------------------------------------------------------

def test_forward_shapes():
    x = torch.randn(2, 3, 32, 32)
    parser = FaceParser.from_config(PARSER_PRESETS["tiny"])
    assert parser(x).shape == (2, 19, 32, 32)
    clf = AttributeClassifier.from_config(CLASSIFIER_PRESETS["tiny"])
    assert clf(x).shape == (2, len(FACESYNTH_ATTRIBUTES))
    assert clf.features(x).shape == (2, clf.feature_dim)
    assert clf(torch.randn(1, 3, 48, 40)).shape == (1, len(FACESYNTH_ATTRIBUTES))   # any size
    with pytest.raises(FaceweaveError, match="divisible"):
        FaceParser(channels=(8, 16, 32))(torch.randn(1, 3, 30, 30))
    with pytest.raises(FaceweaveError, match="attribute"):
        AttributeClassifier(attributes=("Smiling", "Not_An_Attribute"))


# --- ruler: round trip, identity, resizing ------------------------------------------------

def test_save_load_round_trip_identical(tiny_parser_dir, tiny_classifier_dir):
    x = torch.randn(3, 3, 32, 32)
    for (path, model), load in ((tiny_parser_dir, load_parser), (tiny_classifier_dir, load_classifier)):
        instrument = load(path)
        assert instrument.size == 32 and not instrument.model.training
        with torch.no_grad():
            assert torch.equal(instrument.model(x), model(x))


def test_parser_predict_matches_model_and_is_batch_independent(tiny_parser_dir):
    path, model = tiny_parser_dir
    parser = load_parser(path, batch_size=2)             # several internal batches
    images = _images(5)
    masks = parser.predict(images)
    assert masks.shape == (5, 32, 32) and masks.dtype == np.uint8 and masks.max() < 19
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        expected = model(x).argmax(1).numpy()
    assert np.array_equal(masks, expected)
    for i in range(5):
        assert np.array_equal(parser.predict(images[i]), masks[i])      # single image: (H, W)
    assert np.array_equal(parser.predict(list(images)), masks)
    assert np.array_equal(load_parser(path, batch_size=5).predict(images), masks)


def test_parser_brings_masks_back_to_the_input_size(tiny_parser_dir):
    parser = load_parser(tiny_parser_dir[0])
    assert parser.predict(_images(2, 80, 64)).shape == (2, 80, 64)    # enlarged scores
    assert parser.predict(_images(1, 20, 24)[0]).shape == (20, 24)    # shrunk scores


def test_classifier_predict_is_batch_independent(tiny_classifier_dir):
    clf = load_classifier(tiny_classifier_dir[0], batch_size=3)
    assert clf.attributes == list(FACESYNTH_ATTRIBUTES)
    images = _images(7, 40, 40, seed=3)
    probs, feats = clf.predict_proba(images), clf.features(images)
    assert probs.shape == (7, len(FACESYNTH_ATTRIBUTES)) and probs.dtype == np.float32
    assert feats.shape == (7, clf.feature_dim) and feats.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    for i in (0, 4, 6):
        np.testing.assert_allclose(clf.predict_proba(images[i]), probs[i], atol=1e-6)
        np.testing.assert_allclose(clf.features(images[i]), feats[i], atol=1e-5)
    as_dicts = clf.predict(images[:2])
    assert list(as_dicts[0]) == clf.attributes and abs(as_dicts[1]["Smiling"] - probs[1, clf.attributes.index("Smiling")]) < 1e-4


# --- ruler: bad checkpoints and inputs ----------------------------------------------------

def test_wrong_family_and_incomplete_folders(tiny_parser_dir, tiny_classifier_dir, tmp_path):
    with pytest.raises(FaceweaveError, match="holds a 'parser' model, not a 'classifier'"):
        load_classifier(tiny_parser_dir[0])
    with pytest.raises(FaceweaveError, match="holds a 'classifier' model"):
        load_parser(tiny_classifier_dir[0])
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_parser_dir[0] / "config.json").read_text())
    with pytest.raises(FaceweaveError, match="no model.safetensors"):
        load_parser(no_weights)
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes((tiny_parser_dir[0] / "model.safetensors").read_bytes())
    with pytest.raises(FaceweaveError, match="config.json is missing"):
        load_parser(no_config)
    with pytest.raises(FaceweaveError, match="no checkpoint folder or bundled model"):
        load_parser(tmp_path / "nowhere")
    with pytest.raises(FaceweaveError, match="no bundled parser for 96 px"):
        load_parser(size=96)


def test_bad_images(tiny_parser_dir):
    parser = load_parser(tiny_parser_dir[0])
    with pytest.raises(FaceweaveError, match="uint8"):
        parser.predict(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(FaceweaveError, match=r"\(N, H, W, 3\)"):
        parser.predict(np.zeros((32, 32), np.uint8))
    with pytest.raises(FaceweaveError, match="share a size"):
        parser.predict([np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)])


# --- the bundled models -------------------------------------------------------------------

def _test_faces(n, size):
    data = FaceSynthDataset(size, n=n, split="test")
    faces = [data.render(i) for i in range(n)]
    return np.stack([f.image for f in faces]), np.stack([f.mask for f in faces]), faces


@pytest.mark.parametrize("size", [64, 128])
def test_bundled_parser_reads_held_out_facesynth(size):
    images, masks, _ = _test_faces(16, size)
    parser = load_parser(size=size)
    assert parser.size == size
    assert mask_scores(parser.predict(images), masks)["miou"] > 0.8


@pytest.mark.parametrize("size", [64, 128])
def test_bundled_classifier_reads_held_out_facesynth(size):
    """One classifier for every size: 128 px faces are area-downsampled to its 64 px."""
    images, _, faces = _test_faces(32, size)
    clf = load_classifier(size=size)
    assert clf.size == 64
    truth = np.array([[f.attributes[a] for a in clf.attributes] for f in faces])
    assert ((clf.predict_proba(images) > 0.5) == truth).mean() > 0.9
    assert clf.features(images).shape == (32, clf.feature_dim)
    with pytest.raises(FaceweaveError, match="no bundled classifier for 32 px"):
        load_classifier(size=32)


# --- the commands -------------------------------------------------------------------------

def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_parse_command(tmp_path, tiny_parser_dir):
    _, masks, faces = _test_faces(1, 64)
    photo = tmp_path / "face.png"
    Image.fromarray(np.kron(faces[0].image, np.ones((2, 2, 1), np.uint8))).save(photo)   # 128 px file
    res = _run("parse", photo, "--out", tmp_path / "mask.png", "--model", "parser-64")   # a FaceSynth face
    assert res.exit_code == 0, res.output
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (128, 128) and mask.max() < 19
    assert mask_scores(mask[::2, ::2], masks[0])["pixel_acc"] > 0.8
    res = _run("parse", photo, "--out", tmp_path / "colour.png", "--color", "--model", tiny_parser_dir[0])
    assert res.exit_code == 0, res.output
    assert np.asarray(Image.open(tmp_path / "colour.png")).shape == (128, 128, 3)
    for args, words in ((["--model", tmp_path / "nope"], "no checkpoint folder"),
                        (["--model", "classifier-64"], "not a 'parser' model")):
        res = _run("parse", photo, "--out", tmp_path / "x.png", *args)
        assert res.exit_code == 2 and words in res.output and len(res.output.strip().splitlines()) == 1
    res = _run("parse", tmp_path / "missing.png", "--out", tmp_path / "x.png")
    assert res.exit_code == 2


def test_parse_command_takes_many_images_into_a_folder(tmp_path, tiny_parser_dir):
    paths = []
    for i, image in enumerate(_images(3, 40, 40)):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(image).save(paths[-1])
    res = _run("parse", *paths, "--out", tmp_path / "masks", "--model", tiny_parser_dir[0])
    assert res.exit_code == 0, res.output
    assert sorted(f.name for f in (tmp_path / "masks").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert np.asarray(Image.open(tmp_path / "masks" / "p1.png")).shape == (40, 40)
    again = _run("parse", *paths, "--out", tmp_path / "masks", "--model", tiny_parser_dir[0])
    assert again.exit_code == 2 and "already holds files" in again.output
    (tmp_path / "sub").mkdir()
    Image.open(paths[0]).save(tmp_path / "sub" / "p0.png")
    clash = _run("parse", paths[0], tmp_path / "sub" / "p0.png", "--out", tmp_path / "m2")
    assert clash.exit_code == 2 and "named 'p0'" in clash.output and not (tmp_path / "m2").exists()
    jpg = _run("parse", paths[0], "--out", tmp_path / "mask.jpg", "--model", tiny_parser_dir[0])
    assert jpg.exit_code == 2 and "must end in .png" in jpg.output


def test_flip_average_makes_the_parser_mirror_equivariant(tiny_parser_dir, tmp_path):
    """With "inference": {"flip_average": true}, parsing a mirrored photo gives the mirrored
    mask with left and right classes swapped, exactly; the plain parser need not."""
    from faceweave.conditions import MIRRORED_CLASSES

    path, _ = tiny_parser_dir
    flipped_dir = tmp_path / "flip"
    meta, state = checkpoint.load(path)
    checkpoint.save(flipped_dir, "parser", meta["config"], state, image_size=32,
                    inference={"flip_average": True})
    images = _images(4)
    mirror = np.ascontiguousarray(images[:, :, ::-1])
    table = np.asarray(MIRRORED_CLASSES, np.uint8)
    averaged = load_parser(flipped_dir)
    assert averaged.flip_average and not load_parser(path).flip_average
    expected = table[averaged.predict(images)[:, :, ::-1]]
    assert (averaged.predict(mirror) == expected).mean() > 0.999       # ties may break either way


def test_an_ensemble_averages_a_second_parser_read_at_its_own_size(tiny_parser_dir, tmp_path):
    """"inference": {"ensemble": [{"model": B, "weight": w}]}: the scores are (1 - w) * A's
    probabilities + w * B's, B reading the image at its own size; bad entries are refused."""
    import torch.nn.functional as F

    path, _ = tiny_parser_dir
    torch.manual_seed(5)
    other = _randomise_norms(FaceParser.from_config(PARSER_PRESETS["tiny"]), seed=3)
    checkpoint.save(tmp_path / "b16", "parser", dataclasses.asdict(other.config), other.state_dict(), image_size=16)
    meta, state = checkpoint.load(path)
    checkpoint.save(tmp_path / "ens", "parser", meta["config"], state, image_size=32,
                    inference={"ensemble": [{"model": str(tmp_path / "b16"), "weight": 0.3}]})
    plain, mixed, partner = load_parser(path), load_parser(tmp_path / "ens"), load_parser(tmp_path / "b16")
    x = plain._tensor(_images(3))
    with torch.no_grad():
        theirs = partner.model(F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False,
                                             antialias=True)).softmax(1)
        expected = 0.7 * plain.model(x).softmax(1) + 0.3 * F.interpolate(theirs, size=(32, 32), mode="bilinear",
                                                                          align_corners=False)
        assert torch.allclose(mixed._scores(x), expected, atol=1e-5)
    assert mixed.predict(_images(3)).shape == (3, 32, 32)
    assert (mixed.predict(_images(3)) != plain.predict(_images(3))).any()     # the partner has a say
    for weight in (2, "heavy"):
        checkpoint.update_config(tmp_path / "ens", inference={"ensemble": [{"model": str(tmp_path / "b16"),
                                                                            "weight": weight}]})
        with pytest.raises(FaceweaveError, match="bad inference.ensemble entry"):
            load_parser(tmp_path / "ens").predict(_images(1))


def test_describe_command(tmp_path, tiny_classifier_dir):
    _, _, faces = _test_faces(2, 64)
    paths = []
    for i, face in enumerate(faces):
        paths.append(tmp_path / f"face{i}.png")
        Image.fromarray(face.image).save(paths[-1])
    res = _run("describe", *paths, "--json")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.splitlines()]
    assert [d["image"] for d in lines] == [str(p) for p in paths]
    for d, face in zip(lines, faces):
        assert set(d["attributes"]) == set(FACESYNTH_ATTRIBUTES) and d["caption"]
        assert (d["attributes"]["Male"] > 0.5) == bool(face.attributes["Male"])
    res = _run("describe", paths[0], "--model", tiny_classifier_dir[0])
    assert res.exit_code == 0 and str(paths[0]) in res.output
    res = _run("describe", paths[0], "--model", "parser-64")
    assert res.exit_code == 2 and "not a 'classifier' model" in res.output


def test_help_has_examples():
    for cmd in ("train", "parse", "describe"):
        res = _run(cmd, "--help")
        assert res.exit_code == 0 and "Example" in res.output, cmd
