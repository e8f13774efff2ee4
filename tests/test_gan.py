"""Backend `gan` (MM2Latent): the mapper task, the pipeline, editing and the CLI, on tiny
models trained for a few steps on the CPU."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import faceweave
from faceweave import Conditions, checkpoint
from faceweave.cli import main
from faceweave.data import open_dataset
from faceweave.errors import FaceweaveError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    """A whole tiny gan model (32 px): generator, autoencoders, inversion encoder, mapper (the gan
    backend's registered tiny recipe, shared with the contract tests)."""
    return tiny_checkpoint("gan")


@pytest.fixture(scope="module")
def pipe(tiny):
    return faceweave.load(str(tiny))


@pytest.fixture(scope="module")
def face():
    sample = open_dataset("facesynth:32", size=32, split="val")[0]
    image = ((sample["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    return {"image": image, "mask": sample["mask"].numpy().astype(np.uint8),
            "sketch": (sample["sketch"][0].numpy() * 255).astype(np.uint8)}


def test_the_checkpoint_holds_every_part(tiny):
    config = checkpoint.read_config(tiny, "gan")["config"]
    assert set(config) == {"generator", "mask_ae", "sketch_ae", "mapper", "encoder"}
    assert config["encoder"] is not None
    assert (config["mapper"]["num_ws"], config["mapper"]["w_dim"]) == (8, 32)      # fitted to the tiny generator


@pytest.mark.parametrize("given", [(), ("prompt",), ("mask",), ("sketch",), ("attributes",),
                                   ("prompt", "mask"), ("prompt", "mask", "sketch", "attributes")])
def test_every_subset_of_conditions_generates(pipe, face, given):
    kw = {"prompt": "a smiling man" if "prompt" in given else None,
          "attributes": {"Eyeglasses": 1} if "attributes" in given else {},
          "mask": face["mask"] if "mask" in given else None,
          "sketch": face["sketch"] if "sketch" in given else None}
    out = pipe(conditions=Conditions(**kw), seeds=[0, 1])
    assert len(out.images) == 2 and out.images[0].shape == (32, 32, 3) and out.images[0].dtype == np.uint8
    assert out.metadata[0]["given"] == list(Conditions(**kw).given)
    assert not np.array_equal(out.images[0], out.images[1])          # seeds differ


def test_image_i_depends_only_on_seed_i(pipe, face):
    conds = [Conditions(prompt="a smiling man", mask=face["mask"]), Conditions(sketch=face["sketch"]), Conditions()]
    batch = pipe(conditions=conds, seeds=[3, 4, 5]).images
    for cond, seed, image in zip(conds, [3, 4, 5], batch):
        alone = pipe(conditions=cond, seeds=[seed]).images[0]
        assert np.array_equal(alone, image)
    again = pipe(conditions=conds, seeds=[3, 4, 5], batch_size=1).images
    assert all(np.array_equal(a, b) for a, b in zip(batch, again))


def test_images_are_bit_for_bit_the_same_alone_in_a_batch_and_at_any_thread_count(pipe, face):
    """Every image is computed alone on one thread (faceweave.parallel), the images of a batch
    side by side: the float output of image i cannot depend on the batch or the thread count."""
    conds = [Conditions(prompt=f"a smiling man number {i}", mask=face["mask"]) for i in range(4)]
    conds.append(Conditions(sketch=face["sketch"]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        batch = pipe(conditions=conds, seeds=range(5), output_type="pt").images
        torch.set_num_threads(1)
        pipe.text_encoder._cache.clear()
        alone = [pipe(conditions=c, seeds=[s], output_type="pt").images[0] for s, c in enumerate(conds)]
        codes_one, _ = pipe.map(conds)
        torch.set_num_threads(2)
        codes_two, _ = pipe.map(conds[::-1])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(batch, alone))
    assert torch.equal(codes_one, codes_two.flip(0))


def test_conditions_change_the_mapped_code(pipe, face):
    w_mask, _ = pipe.map([Conditions(mask=face["mask"])])
    w_other, _ = pipe.map([Conditions(mask=np.zeros_like(face["mask"]))])
    w_text, _ = pipe.map([Conditions(prompt="a bald man with eyeglasses")])
    assert not torch.allclose(w_mask, w_other) and not torch.allclose(w_mask, w_text)
    assert w_mask.shape == (1, pipe.model.generator.num_ws, pipe.model.generator.config.w_dim)


def test_diversity_zero_keeps_the_mapped_code_on_every_layer(pipe, face):
    """With diversity 0 two seeds share the code and differ only by their noise maps."""
    strengths = [m.strength for m in pipe.model.generator.modules() if hasattr(m, "strength")]
    saved = [s.detach().clone() for s in strengths]
    for s in strengths:
        s.data.zero_()                                               # silence the noise inputs
    try:
        a, b = pipe(mask=face["mask"], seeds=[0, 1], diversity=0.0).images
        assert np.array_equal(a, b)
        c, d = pipe(mask=face["mask"], seeds=[0, 1], diversity=1.0).images
        assert not np.array_equal(c, d)
    finally:
        for s, v in zip(strengths, saved):
            s.data.copy_(v)


def test_attributes_become_words_and_zeros_are_noted(pipe):
    text, notes = pipe.sentence(Conditions(prompt="a portrait", attributes={"Smiling": 1, "Eyeglasses": 0}))
    assert text.startswith("a portrait ") and len(text) > len("a portrait ")
    assert notes and "Eyeglasses" in notes[0]


@pytest.mark.parametrize("kwargs,match", [
    ({"diversity": 1.5}, "diversity must be from 0 to 1"),
    ({"diversity": float("nan")}, "diversity must be from 0 to 1"),
    ({"truncation": -0.1}, "truncation must be from 0 to 1"),
    ({"mix_from": 99}, "mix_from must be a W\\+ layer"),
    ({"seeds": []}, "non-empty"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
])
def test_bad_generation_settings_are_one_line_errors(pipe, kwargs, match):
    with pytest.raises(FaceweaveError, match=match):
        pipe(**{"prompt": "a face", **kwargs})


def test_masks_of_another_size_are_resized_with_a_note(pipe, face):
    big = np.kron(face["mask"], np.ones((2, 2), np.uint8))
    out = pipe(mask=big, seeds=[0])
    assert out.images[0].shape == (32, 32, 3)
    assert any("resized from 64x64" in n for n in out.metadata[0]["notes"])


def test_inversion_reduces_the_reconstruction_error(pipe, face):
    start = pipe.invert(face["image"], steps=0)
    refined = pipe.invert(face["image"], steps=30)
    assert start.metadata["method"] == "encoder"
    assert refined.metadata["psnr"] > start.metadata["psnr"]
    assert refined.wplus.shape == (1, pipe.model.generator.num_ws, pipe.model.generator.config.w_dim)


def test_edit_of_an_aligned_face_moves_along_the_mapped_difference(pipe, face):
    same = pipe.edit(face["image"], Conditions(prompt="a smiling woman"), strength=0.0, steps=0, align=False)
    assert np.array_equal(same.images[0], face["image"])          # residual blend, no change: the photo itself
    moved = pipe.edit(face["image"], Conditions(prompt="a bald man with a beard"), strength=2.0, steps=0,
                      align=False, blend="generated")
    assert moved.metadata[0]["delta_norm"] > 0
    assert not np.array_equal(moved.edited_face, moved.reconstruction)
    with pytest.raises(FaceweaveError, match="edit strength must be from 0 to 3"):
        pipe.edit(face["image"], Conditions(prompt="x"), strength=5, align=False)
    with pytest.raises(FaceweaveError, match="nothing to edit"):
        pipe.edit(face["image"], Conditions(), align=False)
    with pytest.raises(FaceweaveError, match="unknown blend"):
        pipe.edit(face["image"], Conditions(prompt="x"), blend="paste", align=False)


def test_pivotal_tuning_reconstructs_closer_and_one_inversion_serves_several_edits(pipe, face):
    plain = pipe.invert(face["image"], steps=0)
    tuned = pipe.invert(face["image"], steps=0, tune_steps=30)
    assert plain.generator is None and tuned.generator is not None
    assert tuned.metadata["psnr"] > plain.metadata["psnr"] + 1.0, (plain.metadata, tuned.metadata)
    assert "30 pivotal tuning steps" in tuned.metadata["method"]
    # the pipeline's own generator is untouched by tuning
    again = pipe.invert(face["image"], steps=0)
    assert np.array_equal(again.reconstruction, plain.reconstruction)
    # an edit reusing the tuned inversion draws with the tuned generator: same as tuning inside edit
    target = Conditions(prompt="a bald man with a beard")
    reused = pipe.edit(face["image"], target, strength=2.0, align=False, blend="generated", inversion=tuned)
    inside = pipe.edit(face["image"], target, strength=2.0, steps=0, tune_steps=30, align=False, blend="generated")
    assert np.array_equal(reused.reconstruction, tuned.reconstruction)
    assert np.array_equal(reused.edited_face, inside.edited_face)
    assert reused.inversion is tuned
    other = np.ascontiguousarray(face["image"][:, ::-1])
    with pytest.raises(FaceweaveError, match="not of this photo's face"):
        pipe.edit(other, target, align=False, inversion=tuned)
    with pytest.raises(FaceweaveError, match="tuning steps must be a whole number"):
        pipe.invert(face["image"], steps=0, tune_steps=-1)


def _real_photo() -> Path:
    photos = sorted((REAL / "photos").glob("*.jpg")) if (REAL / "photos").is_dir() else []
    if not photos:
        pytest.skip(f"real sample photos not found at {REAL} (they live beside the repository)")
    return photos[0]


def test_edit_of_a_real_photo_changes_only_the_face(pipe):
    from faceweave.align import align_face
    from faceweave.io import read_image
    try:
        photo = read_image(_real_photo())
        aligned = align_face(photo, size=32)
    except FaceweaveError as exc:
        pytest.skip(f"face detector unavailable: {exc}")
    out = pipe.edit(photo, Conditions(prompt="a smiling man"), strength=2.0, steps=0, blend="generated")
    edited = out.images[0]
    assert edited.shape == photo.shape
    # everything outside the aligned crop's quad is untouched, bit for bit
    quad = np.asarray(aligned.quad, np.float32)
    import cv2
    inside = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, np.round(quad).astype(np.int32), 1)
    outside = cv2.dilate(inside, np.ones((5, 5), np.uint8)) == 0
    assert np.array_equal(edited[outside], photo[outside])
    assert (edited != photo).any()


# --- the mapper's training pairs -------------------------------------------------------------

def test_training_pairs_are_read_off_the_generated_faces(tiny):
    from faceweave.io import sketch_from_mask
    from faceweave.backends.gan.train import GANTask
    from faceweave.train.loop import resolve_config
    task = GANTask()
    cfg = resolve_config("gan", "tiny", {"generator": "x", "mask_ae": "y", "sketch_ae": "z"})
    model = faceweave.load(str(tiny)).model
    task.setup(cfg, torch.device("cpu"))
    pairs = task.pairs(model, 3, cfg, torch.Generator().manual_seed(0))
    assert pairs["w"].shape == (3, model.generator.config.w_dim)
    assert pairs["mask"].shape == (3, 32, 32) and pairs["text"].shape == (3, 384)
    assert all(isinstance(c, str) and c for c in pairs["captions"])
    expected = sketch_from_mask(pairs["mask"][0].numpy().astype(np.uint8)) / 255.0
    assert np.array_equal(pairs["sketch"][0, 0].numpy(), expected.astype(np.float32))
    # the image is G(w) with the constant noise: the pair is exact
    again = model.generator([pairs["w"]], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
    torch.testing.assert_close(again, pairs["images"])


def test_mapper_trains_on_inverted_real_faces_too(tiny, tmp_path):
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    common = {"generator": str(root / "stylegan2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
              "sketch_ae": str(root / "sketch_ae" / "last")}
    with pytest.raises(FaceweaveError, match="pairs=inverted needs an inversion encoder"):
        train("gan", "tiny", "facesynth:32", tmp_path / "a", progress=False, overrides={**common, "pairs": "inverted"})
    out = train("gan", "tiny", "facesynth:32", tmp_path / "b", progress=False,
                overrides={**common, "pairs": "inverted", "encoder": str(root / "encoder" / "last"), "max_steps": 3})
    assert out["step"] == 3 and 0 <= out["miou_all"] <= 1


def test_image_and_discriminator_feature_terms_reach_the_mapper(tiny, tmp_path):
    from faceweave.backends.gan.train import feature_distance, load_discriminator
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    sg2_run = root / "stylegan2" / "last"
    critic = load_discriminator(str(sg2_run))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1, torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    assert float(feature_distance(critic, a, a)) == 0.0
    made = b.clone().requires_grad_(True)
    distance = feature_distance(critic, made, a)
    distance.backward()
    assert float(distance.detach()) > 0 and float(made.grad.abs().sum()) > 0
    assert all(p.grad is None for p in critic.parameters())
    # an export with the generator alone cannot serve the feature term
    meta, state = checkpoint.load(sg2_run, "stylegan2")
    checkpoint.save(tmp_path / "g_only", "stylegan2", meta["config"],
                    {k: v for k, v in state.items() if k.startswith("generator.")})
    with pytest.raises(FaceweaveError, match="holds no discriminator.*feature_weight=0"):
        load_discriminator(str(tmp_path / "g_only"))
    common = {"generator": str(sg2_run), "mask_ae": str(root / "mask_ae" / "last"),
              "sketch_ae": str(root / "sketch_ae" / "last"), "encoder": str(root / "encoder" / "last"),
              "max_steps": 2, "log_every": 1, "image_weight": 1.0, "feature_weight": 0.5}
    for pairs in ("generated", "inverted"):
        train("gan", "tiny", "facesynth:32", tmp_path / pairs, progress=False, overrides={**common, "pairs": pairs})
        logs = [json.loads(line) for line in (tmp_path / pairs / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in logs if r["kind"] == "train"]
        assert steps and all(r["image_l1"] > 0 and r["feature"] > 0 for r in steps), steps
        # the total is the latent error plus the weighted terms
        r = steps[-1]
        assert r["loss"] == pytest.approx(r["w_mse"] + r["image_l1"] + 0.5 * r["feature"], rel=1e-4)


def test_a_guide_parser_gives_the_mapper_a_mask_loss(tiny, tmp_path, monkeypatch):
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    train("parser", "tiny", "facesynth:32", tmp_path / "guide", progress=False, overrides={"max_steps": 2})
    common = {"generator": str(root / "stylegan2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
              "sketch_ae": str(root / "sketch_ae" / "last"), "encoder": str(root / "encoder" / "last"),
              "pairs": "inverted", "max_steps": 2, "log_every": 1, "image_weight": 1.0, "mask_weight": 2.0,
              "iou_weight": 0.5, "drop": 0.0}
    train("parser", "tiny", "facesynth:32", tmp_path / "reader", progress=False, overrides={"max_steps": 1})
    reader = str(tmp_path / "reader" / "last")
    train("gan", "tiny", "facesynth:32", tmp_path / "run", progress=False,
          overrides={**common, "guide_parser": str(tmp_path / "guide" / "last"), "val_parser": reader})
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "train"]
    assert steps and all(r["mask_ce"] > 0 and 0 < r["mask_iou_loss"] < 1 for r in steps), steps
    r = steps[-1]
    assert r["loss"] == pytest.approx(r["w_mse"] + r["image_l1"] + 2.0 * r["mask_ce"] + 0.5 * r["mask_iou_loss"],
                                      rel=1e-4)
    # the validation parser travels with the model: its pipeline reads photos with it
    from faceweave.train.loop import export
    exported = export(tmp_path / "run", tmp_path / "exported", which="last")
    assert checkpoint.read_config(exported)["instruments"] == {"parser": reader}
    assert Path(faceweave.load(str(exported))._helper("parser").path) == Path(reader)
    # noise=random renders the loss's faces with fresh noise maps, one per sample, from the
    # step's seeded generator (the stored buffers otherwise)
    from faceweave.models.stylegan2 import Generator
    drawn = []
    real_make_noise = Generator.make_noise

    def counting(self, batch=1, generator=None):
        drawn.append(batch)
        return real_make_noise(self, batch, generator)

    monkeypatch.setattr(Generator, "make_noise", counting)
    random_noise = {**common, "guide_parser": str(tmp_path / "guide" / "last"), "val_parser": reader,
                    "noise": "random", "max_steps": 1}
    train("gan", "tiny", "facesynth:32", tmp_path / "noisy", progress=False, overrides=random_noise)
    from faceweave.backends.gan.train import GANTask
    assert drawn == [GANTask.presets["tiny"]["batch_size"]]          # one step, one map per sample
    with pytest.raises(FaceweaveError, match="use noise=fixed or noise=random"):
        train("gan", "tiny", "facesynth:32", tmp_path / "bad", progress=False,
              overrides={**random_noise, "noise": "loud"})
    # no guide, or a parser of the ruler as the guide: refused in one line
    with pytest.raises(FaceweaveError, match="mask_weight, iou_weight and sampled_n need a guide parser"):
        train("gan", "tiny", "facesynth:32", tmp_path / "none", progress=False, overrides=common)
    with pytest.raises(FaceweaveError, match="is a parser of the ruler"):
        train("gan", "tiny", "facesynth:32", tmp_path / "ruler", progress=False,
              overrides={**common, "guide_parser": "parser-64"})



def test_sampled_pairs_read_by_the_guide_join_the_photos(tiny, tmp_path):
    """sampled_n: generated faces, labelled by the guide parser, join each batch of photos;
    they carry no text, and the attribute term reads the photos only."""
    from faceweave.backends.gan.train import GANTask
    from faceweave.train.guide import load_guide
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    train("parser", "tiny", "facesynth:32", tmp_path / "guide", progress=False, overrides={"max_steps": 1})
    train("classifier", "tiny", "facesynth:32", tmp_path / "clf", progress=False, overrides={"max_steps": 1})
    common = {"generator": str(root / "stylegan2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
              "sketch_ae": str(root / "sketch_ae" / "last"), "encoder": str(root / "encoder" / "last"),
              "pairs": "inverted", "max_steps": 2, "log_every": 1, "image_weight": 1.0, "mask_weight": 1.0,
              "attr_weight": 1.0, "guide_classifier": str(tmp_path / "clf" / "last"), "drop": 0.0,
              "guide_parser": str(tmp_path / "guide" / "last"), "sampled_n": 3}
    train("gan", "tiny", "facesynth:32", tmp_path / "run", progress=False, overrides=common)
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "train"]
    assert steps and all(r["mask_ce"] > 0 and r["attr_bce"] > 0 for r in steps), steps
    task = GANTask()
    task._helpers["guide"] = load_guide(str(tmp_path / "guide" / "last"), "cpu")
    model = faceweave.load(str(tmp_path / "run" / "last")).model
    pair = task.sampled_pairs(model, 3, torch.Generator().manual_seed(0))
    G = model.generator
    assert pair["w"].shape == (3, G.num_ws, G.config.w_dim) and pair["mask"].shape == (3, 32, 32)
    assert pair["text"].abs().sum() == 0 and pair["sketch"].shape == (3, 1, 32, 32)
    with torch.no_grad():
        again = G([pair["w"]], input_is_latent=True, randomize_noise=False)[0].clamp(-1, 1)
    torch.testing.assert_close(again, pair["images"])
    with pytest.raises(FaceweaveError, match="mask_weight, iou_weight and sampled_n need a guide parser"):
        train("gan", "tiny", "facesynth:32", tmp_path / "none", progress=False,
              overrides={**common, "guide_parser": None, "mask_weight": 0.0})
    with pytest.raises(FaceweaveError, match="use it with pairs=inverted"):
        train("gan", "tiny", "facesynth:32", tmp_path / "gen", progress=False,
              overrides={**common, "pairs": "generated", "attr_weight": 0.0})


def test_a_guide_classifier_gives_the_mapper_an_attribute_loss(tiny, tmp_path):
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    train("classifier", "tiny", "facesynth:32", tmp_path / "guide", progress=False, overrides={"max_steps": 1})
    common = {"generator": str(root / "stylegan2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
              "sketch_ae": str(root / "sketch_ae" / "last"), "encoder": str(root / "encoder" / "last"),
              "pairs": "inverted", "max_steps": 2, "log_every": 1, "image_weight": 1.0, "attr_weight": 2.0,
              "drop": 0.0, "guide_classifier": str(tmp_path / "guide" / "last")}
    train("gan", "tiny", "facesynth:32", tmp_path / "run", progress=False, overrides=common)
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "train"]
    assert steps and all(r["attr_bce"] > 0 for r in steps), steps
    r = steps[-1]
    assert r["loss"] == pytest.approx(r["w_mse"] + r["image_l1"] + 2.0 * r["attr_bce"], rel=1e-4)
    for bad, match in (({"guide_classifier": "classifier-64"}, "is a bundled classifier"),
                       ({"pairs": "generated"}, "reads the photos' own labels")):
        with pytest.raises(FaceweaveError, match=match):
            train("gan", "tiny", "facesynth:32", tmp_path / "bad", progress=False, overrides={**common, **bad})


def test_a_mapper_learns_from_a_bank_of_projected_codes(tiny, tmp_path):
    """scripts/project_codes.py inverts the photos (encoder + projector steps, resumable,
    shares merged); pairs=projected regresses those codes, a mirrored sample owes no latent
    loss, and codes of another generator are refused in one line."""
    import subprocess
    import sys

    from faceweave.backends.gan.codes import read_codes, write_codes
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    script = Path(__file__).resolve().parents[1] / "scripts" / "project_codes.py"
    for part in ("1/2", "2/2"):
        subprocess.run([sys.executable, str(script), "--model", str(tiny), "--data", "facesynth:32:n=6",
                        "--steps", "2", "--batch", "2", "--part", part, "--out", str(tmp_path / f"c{part[0]}.st")],
                       check=True, capture_output=True)
    subprocess.run([sys.executable, str(script), "--merge", str(tmp_path / "c1.st"), str(tmp_path / "c2.st"),
                    "--out", str(tmp_path / "codes.st")], check=True, capture_output=True)
    codes, meta = read_codes(tmp_path / "codes.st")
    assert sorted(codes) == [f"{i:06d}.png" for i in range(6)] and meta["steps"] == "2"
    assert codes["000000.png"].shape == (8, 32)
    # a guided bank: from those codes, with a guide parser's mask term; it moves the codes
    train("parser", "tiny", "facesynth:32", tmp_path / "guide", progress=False, overrides={"max_steps": 1})
    guided = [sys.executable, str(script), "--model", str(tiny), "--data", "facesynth:32:n=6", "--steps", "2",
              "--batch", "3", "--init-codes", str(tmp_path / "codes.st"), "--out", str(tmp_path / "guided.st")]
    subprocess.run(guided + ["--guide", str(tmp_path / "guide" / "last"), "--mask-weight", "5"],
                   check=True, capture_output=True)
    subprocess.run(guided[:-1] + [str(tmp_path / "pixels.st")], check=True, capture_output=True)
    g, g_meta = read_codes(tmp_path / "guided.st")
    p, p_meta = read_codes(tmp_path / "pixels.st")
    assert g_meta["mask_weight"] == "5.0" and g_meta["init_codes"] == str(tmp_path / "codes.st")
    assert "guide" not in p_meta and sorted(g) == sorted(codes)
    assert not torch.equal(g["000000.png"], p["000000.png"])
    assert not torch.equal(p["000000.png"], codes["000000.png"])
    refused = subprocess.run(guided[:-1] + [str(tmp_path / "x.st"), "--mask-weight", "1"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "--mask-weight needs --guide" in refused.stderr
    common = {"generator": str(root / "stylegan2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
              "sketch_ae": str(root / "sketch_ae" / "last"), "max_steps": 2, "log_every": 1,
              "pairs": "projected", "codes": str(tmp_path / "codes.st"), "image_weight": 1.0}
    train("gan", "tiny", "facesynth:32:n=6", tmp_path / "run", progress=False, overrides=common)
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "train"]
    assert steps and all(r["w_mse"] > 0 and r["image_l1"] > 0 for r in steps), steps
    # the latent loss counts only samples with a code: mirrored ones are left out
    from faceweave.backends.gan.train import GANTask
    task = GANTask()
    task._codes = {"a.png": torch.ones(8, 32)}
    task._helpers["text"] = type("T", (), {"encode": lambda self, c: type("E", (), {
        "pooled": torch.zeros(len(c), 384)})()})()
    batch = {"image": torch.zeros(3, 3, 32, 32), "mask": torch.zeros(3, 32, 32, dtype=torch.long),
             "sketch": torch.zeros(3, 1, 32, 32), "captions": [["a"], ["b"], ["c"]],
             "file": ["a.png", "a.png", "b.png"], "flipped": torch.tensor([False, True, False])}
    pair = task.projected_pairs(None, batch, torch.Generator().manual_seed(0))
    assert pair["known"].tolist() == [1.0, 0.0, 0.0] and pair["w"][0].eq(1).all() and pair["w"][1:].eq(0).all()
    # codes of another generator, or none at all
    write_codes(tmp_path / "other.st", codes, {**meta, "generator": "0" * 16})
    with pytest.raises(FaceweaveError, match="belong to another generator"):
        train("gan", "tiny", "facesynth:32:n=6", tmp_path / "other", progress=False,
              overrides={**common, "codes": str(tmp_path / "other.st")})
    with pytest.raises(FaceweaveError, match="needs a bank of codes"):
        train("gan", "tiny", "facesynth:32:n=6", tmp_path / "none", progress=False,
              overrides={**common, "codes": None})


def test_an_encoder_joins_a_gan_checkpoint_trained_without_one(tiny, tmp_path):
    from faceweave.backends.gan.train import attach_encoder
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    train("gan", "tiny", "facesynth:32", tmp_path / "bare", progress=False, overrides={
        "max_steps": 2, "generator": str(root / "stylegan2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
        "sketch_ae": str(root / "sketch_ae" / "last")})
    assert checkpoint.read_config(tmp_path / "bare" / "last", "gan")["config"]["encoder"] is None
    attach_encoder(str(tmp_path / "bare" / "last"), str(root / "encoder" / "last"), str(tmp_path / "whole"))
    pipe = faceweave.load(str(tmp_path / "whole"))
    assert pipe.model.encoder is not None
    assert pipe.invert(np.zeros((32, 32, 3), np.uint8), steps=0).metadata["method"] == "encoder"


def test_init_carries_the_mapper_over_to_the_generator_the_recipe_names(tiny, tmp_path):
    """With init= a whole gan model and generator= another StyleGAN2 (e.g. trained further), the
    run keeps the named generator, not the one inside the init checkpoint."""
    from faceweave.backends.gan.train import load_generator
    from faceweave.train.loop import train
    root = Path(tiny).parents[1]
    train("stylegan2", "tiny", "facesynth:32", tmp_path / "g2", progress=False, overrides={"max_steps": 1, "seed": 7})
    train("gan", "tiny", "facesynth:32", tmp_path / "run", progress=False, overrides={
        "max_steps": 1, "generator": str(tmp_path / "g2" / "last"), "mask_ae": str(root / "mask_ae" / "last"),
        "sketch_ae": str(root / "sketch_ae" / "last"), "encoder": str(root / "encoder" / "last"), "init": str(tiny)})
    wanted, _ = load_generator(str(tmp_path / "g2" / "last"))
    old = faceweave.load(str(tiny)).model.generator.state_dict()
    got = faceweave.load(str(tmp_path / "run" / "last")).model.generator.state_dict()
    assert all(torch.equal(got[k], v) for k, v in wanted.state_dict().items())
    assert any(not torch.equal(got[k], old[k]) for k in got)


def test_gan_training_needs_its_parts(tmp_path):
    from faceweave.train.loop import train
    with pytest.raises(FaceweaveError, match="faceweave train gan needs generator, mask_ae, sketch_ae"):
        train("gan", "tiny", "facesynth:32", tmp_path / "x", progress=False)


# --- CLI ------------------------------------------------------------------------------------

def test_cli_generate_edit_and_invert_with_the_gan_backend(tiny, face, tmp_path):
    from faceweave.io import write_mask, write_png
    runner = CliRunner()
    mask_path, photo_path = tmp_path / "mask.png", tmp_path / "face.png"
    write_mask(mask_path, face["mask"])
    write_png(photo_path, face["image"])
    r = runner.invoke(main, ["generate", "--model", str(tiny), "--prompt", "a smiling man", "--mask", str(mask_path),
                             "--seeds", "0-2", "--out", str(tmp_path / "gen"), "--quiet"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "gen" / "meta.json").read_text())
    assert len(meta["results"]) == 3 and meta["results"][0]["backend"] == "gan"
    assert (tmp_path / "gen" / "000002.png").exists()
    r = runner.invoke(main, ["generate", "--model", str(tiny), "--prompt", "x", "--steps", "5", "--out",
                             str(tmp_path / "bad")])
    assert r.exit_code != 0 and "--steps applies to --backend diffusion or collab, not gan" in r.output
    r = runner.invoke(main, ["edit", "--model", str(tiny), "--image", str(photo_path), "--prompt", "a smiling man",
                             "--no-align", "--steps", "2", "--out", str(tmp_path / "edit"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "edit").iterdir()} >= {"edited.png", "comparison.png", "meta.json"}
    r = runner.invoke(main, ["edit", "--model", str(tiny), "--image", str(photo_path), "--prompt", "x",
                             "--strength", "9", "--no-align", "--out", str(tmp_path / "edit2")])
    assert r.exit_code != 0 and "edit strength must be from 0 to 3" in r.output
    grey = tmp_path / "grey.png"
    write_png(grey, np.full((200, 200, 3), 128, np.uint8))
    r = runner.invoke(main, ["edit", "--model", str(tiny), "--image", str(grey), "--prompt", "a smiling man",
                             "--out", str(tmp_path / "edit3")])
    if "facenet-pytorch" not in r.output:                          # the detector is installed
        assert r.exit_code != 0 and "no face found" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["invert", str(photo_path), "--model", str(tiny), "--no-align", "--steps", "3",
                             "--out", str(tmp_path / "inv")])
    assert r.exit_code == 0, r.output
    from safetensors.torch import load_file
    latent = load_file(str(tmp_path / "inv" / "latent.safetensors"))
    assert latent["wplus"].shape[1:] == (8, 32) and "noise.0" in latent
    assert json.loads((tmp_path / "inv" / "meta.json").read_text())["reconstruction_psnr"] > 0
    r = runner.invoke(main, ["invert", str(photo_path), "--model", str(tiny), "--prompt", "x",
                             "--out", str(tmp_path / "inv2")])
    assert r.exit_code != 0 and "--prompt applies to --backend diffusion, not gan" in r.output


def test_evaluate_scores_the_gan_backend(tiny, tmp_path):
    from faceweave.eval.evaluate import evaluate
    metrics = evaluate(backend="gan", model=str(tiny), given=("prompt", "mask"), n=4, size=64,
                       seeds_per_condition=1, progress=False).metrics
    assert metrics["mask_miou"] is not None and 0 <= metrics["mask_miou"] <= 1
    assert metrics["sketch_f"] is None


def test_a_gan_models_parts_come_out_as_checkpoints_of_their_own(tiny, tmp_path):
    from faceweave.backends.gan.train import _load_part, extract_part
    meta, state = checkpoint.load(tiny, "gan")
    for part, family in (("mask_ae", "mask_ae"), ("sketch_ae", "sketch_ae"), ("encoder", "gan_encoder")):
        out = extract_part(str(tiny), part, str(tmp_path / part))
        model, pmeta = _load_part(str(out), family)
        assert pmeta["family"] == family and pmeta["config"] == meta["config"][part]
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, state[f"{part}.{key}"].float())
    with pytest.raises(FaceweaveError, match="unknown gan part 'mapper2'"):
        extract_part(str(tiny), "mapper2", str(tmp_path / "x"))
