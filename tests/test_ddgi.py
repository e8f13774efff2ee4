"""The ddgi backend: the UNet tap, the two networks, training errors, the CLI (tiny models)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import faceweave
from faceweave.backends.ddgi.networks import DDGIConfig, DDGINets, UNetTap, decoder_attention_blocks
from faceweave.cli import main
from faceweave.conditions import Conditions
from faceweave.errors import FaceweaveError
from faceweave.synth import render


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return faceweave.load(str(tiny_checkpoint("ddgi")))


def _tensors(pipe, cond):
    tensors, _ = pipe.diffusion.condition_tensors([cond])
    return tensors


def test_the_tap_reads_the_unet_without_changing_it(pipe):
    face = render(seed=2_000_000, index=1, size=pipe.size)
    cond = Conditions(prompt=face.captions[0], mask=face.mask)
    evaluate = pipe.diffusion.evaluator(_tensors(pipe, cond))
    x = 5.0 * torch.randn(1, 3, pipe.size, pipe.size, generator=torch.Generator().manual_seed(0))
    plain = evaluate(x, 5.0, [frozenset(cond.given)])[0]
    unet = pipe.diffusion.model.denoiser.net
    blocks = list(range(len(decoder_attention_blocks(unet))))
    with UNetTap(unet, blocks) as tap:
        tapped = evaluate(x, 5.0, [frozenset(cond.given)])[0]
    assert torch.equal(plain, tapped)                                  # hooks only read
    assert not any(m._forward_hooks for m in unet.modules())           # and are gone after
    assert tap.bottleneck.shape[0] == 1 and len(tap.features) == len(blocks) == len(tap.maps)
    for f, a in zip(tap.features, tap.maps):
        assert a.shape == (1, 2, *f.shape[2:])
        peak, spread = a[0]
        assert (peak >= 1 - 1e-4).all() and (spread >= 0).all()        # max weight x tokens >= 1
        assert peak.max() > 1.01                                        # some pixel attends unevenly
    with UNetTap(unet, blocks) as bare:                                 # no conditions: no cross-attention
        pipe.diffusion.evaluator(_tensors(pipe, Conditions()))(x, 5.0, [frozenset()])
    assert all(not a.any() for a in bare.maps)
    with pytest.raises(ValueError, match="decoder block 9 does not exist"):
        UNetTap(unet, [9])


def test_an_untrained_modulation_leaves_the_mapped_code():
    cfg = DDGIConfig(num_ws=4, w_dim=8, bottleneck_channels=6, bottleneck_size=4, decoder_channels=(5,),
                     width=8, decoder_blocks=(0,))
    nets = DDGINets(cfg)
    torch.nn.init.normal_(nets.mapping.fc[-1].weight)
    h, f, a = torch.randn(3, 6, 4, 4), torch.randn(3, 5, 8, 8), torch.rand(3, 2, 8, 8)
    assert torch.equal(nets(h, [f], [a]), nets.mapping(h))
    torch.nn.init.normal_(nets.modulation.out.weight)
    moved = nets(h, [f], [a])
    assert not torch.equal(moved, nets.mapping(h))
    assert torch.allclose(nets(h[1:2], [f[1:2]], [a[1:2]]), moved[1:2], atol=1e-6)   # no batch mixing


def test_settings_and_bad_values(pipe):
    face = render(seed=2_000_000, index=2, size=pipe.size)
    a = pipe(prompt=face.captions[0], seeds=[3], sigma=10.0).images[0]
    b = pipe(prompt=face.captions[0], seeds=[3], sigma=40.0).images[0]
    assert not np.array_equal(a, b)                                    # the pass reads its noise level
    c = pipe(prompt=face.captions[0], seeds=[3], sigma=10.0, diversity=1.0).images[0]
    assert not np.array_equal(a, c)
    for kwargs, match in (({"sigma": 0.0}, "sigma must be a noise level from 0.1 to 80"),
                          ({"sigma": float("nan")}, "sigma must be"),
                          ({"diversity": 2}, "diversity must be from 0 to 1"),
                          ({"diversity": "lots"}, "diversity must be a number")):
        with pytest.raises(FaceweaveError, match=match):
            pipe(prompt="a man", seeds=[0], **kwargs)


def test_a_part_that_changed_is_refused(pipe, tmp_path):
    saved = pipe.save_pretrained(tmp_path / "copy")
    config = json.loads((saved / "config.json").read_text())
    config["config"]["generator"]["fingerprint"] = "0" * 16
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(FaceweaveError, match="generator model parts/generator is not the one these networks"):
        faceweave.load(str(saved))


def test_cli_generate_and_train_errors(pipe, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["generate", "--backend", "ddgi", "--model", pipe.meta["path"], "--prompt", "a bald man",
                             "--seeds", "0-1", "--sigma", "10", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    results = json.loads((tmp_path / "out" / "meta.json").read_text())["results"]
    assert (tmp_path / "out" / "000001.png").is_file()
    assert [r["seed"] for r in results] == [0, 1] and all(r["sigma"] == 10.0 for r in results)
    for args, match in (
            (["generate", "--backend", "ddgi", "--model", pipe.meta["path"], "--steps", "4", "--out",
              str(tmp_path / "y")], "--steps applies to --backend diffusion or collab, not ddgi"),
            (["train", "ddgi", "--preset", "tiny", "--data", "facesynth:32", "--out", str(tmp_path / "t")],
             "faceweave train ddgi needs diffusion and generator"),
            (["train", "ddgi", "--preset", "tiny", "--data", "facesynth:32", "--out", str(tmp_path / "t"),
              "--set", f"diffusion={pipe.config['diffusion']['model']}", "--set",
              f"generator={pipe.config['generator']['model']}", "--set", "model.blocks=[5]"],
             "decoder block 5 does not exist")):
        r = runner.invoke(main, args)
        assert r.exit_code != 0 and match in r.output, r.output
        assert "Traceback" not in r.output


def test_the_app_offers_a_ddgi_checkpoint(pipe):
    from faceweave.app import Models, run_generate
    models = Models(model=pipe.meta["path"])
    assert models.backends[0] == "ddgi"
    result = run_generate(models, prompt="a smiling woman", backend="ddgi", seed=4, n_images=2)
    direct = pipe(prompt="a smiling woman", seeds=[4, 5]).images
    assert all(np.array_equal(a, b) for a, b in zip(result.images, direct))


def test_editing_an_aligned_face_moves_along_the_difference_of_two_read_codes(pipe):
    face = render(seed=2_000_000, index=1, size=pipe.size).image
    kept = pipe.edit(face, Conditions(prompt="a smiling woman"), strength=0.0, steps=2, align=False)
    assert np.array_equal(kept.images[0], face)              # residual blend, no change: the photo itself
    moved = pipe.edit(face, Conditions(prompt="a bald man with a beard"), strength=2.0, steps=2, align=False,
                      blend="generated")
    meta = moved.metadata[0]
    assert meta["delta_norm"] > 0 and meta["backend"] == "ddgi" and "2 projector steps" in meta["inversion"]["method"]
    assert not np.array_equal(moved.edited_face, moved.reconstruction)
    # the same inversion serves a second edit; a face it does not belong to is refused
    again = pipe.edit(face, Conditions(prompt="a bald man with a beard"), strength=2.0, align=False,
                      blend="generated", inversion=moved.inversion)
    assert np.array_equal(again.edited_face, moved.edited_face)
    with pytest.raises(FaceweaveError, match="not of this photo's face"):
        pipe.edit(np.ascontiguousarray(face[::-1]), Conditions(prompt="x"), align=False, inversion=moved.inversion)
    with pytest.raises(FaceweaveError, match="nothing to edit"):
        pipe.edit(face, Conditions(), align=False)
    with pytest.raises(FaceweaveError, match="edit strength must be from 0 to 3"):
        pipe.edit(face, Conditions(prompt="x"), strength=float("nan"), align=False)
    with pytest.raises(FaceweaveError, match="sigma must be a noise level"):
        pipe.edit(face, Conditions(prompt="x"), sigma=500, align=False)


def test_a_guide_parser_adds_a_mask_term(pipe, tmp_path):
    from faceweave.train.loop import train
    train("parser", "tiny", "facesynth:32", tmp_path / "guide", progress=False, overrides={"max_steps": 1})
    parts = {"diffusion": pipe.config["diffusion"]["model"], "generator": pipe.config["generator"]["model"],
             "max_steps": 2, "log_every": 1, "mask_weight": 0.5, "iou_weight": 2.0}
    train("ddgi", "tiny", "facesynth:32", tmp_path / "run", progress=False,
          overrides={**parts, "guide_parser": str(tmp_path / "guide" / "last")})
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "train"]
    assert steps and all(r["mask_ce"] > 0 and 0 < r["mask_iou_loss"] < 1 for r in steps), steps
    r = steps[-1]
    assert r["loss"] == pytest.approx(r["l1"] + 1e-3 * r["w_reg"] + 0.5 * r["mask_ce"] + 2.0 * r["mask_iou_loss"],
                                      rel=1e-4)
    with pytest.raises(FaceweaveError, match="is a parser of the ruler"):
        train("ddgi", "tiny", "facesynth:32", tmp_path / "ruler", progress=False,
              overrides={**parts, "guide_parser": "parser-64"})


def test_a_guide_classifier_and_a_code_bank_add_their_terms(pipe, tmp_path):
    from faceweave.backends.ddgi.pipeline import load_generator_part
    from faceweave.backends.gan.codes import write_codes
    from faceweave.train.loop import train
    train("classifier", "tiny", "facesynth:32", tmp_path / "guide", progress=False, overrides={"max_steps": 1})
    ref = pipe.config["generator"]["model"]
    G, _, own = load_generator_part(ref)
    codes = {f"{i:06d}.png": torch.randn(G.num_ws, G.config.w_dim) for i in range(8)}
    write_codes(tmp_path / "codes.st", codes, {"generator": own})
    parts = {"diffusion": pipe.config["diffusion"]["model"], "generator": ref, "max_steps": 3, "log_every": 1,
             "attr_weight": 0.5, "guide_classifier": str(tmp_path / "guide" / "last"),
             "code_weight": 2.0, "codes": str(tmp_path / "codes.st")}
    train("ddgi", "tiny", "facesynth:32:n=8", tmp_path / "run", progress=False, overrides=parts)
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "train"]
    assert steps and all(r["attr_bce"] > 0 for r in steps) and any(r["code_mse"] > 0 for r in steps), steps
    for r in steps:
        assert r["loss"] == pytest.approx(r["l1"] + 1e-3 * r["w_reg"] + 0.5 * r["attr_bce"] + 2.0 * r["code_mse"],
                                          rel=1e-4)
    # a bundled classifier as the guide, no guide, codes of another generator, no codes: one line each
    for bad, match in (({"guide_classifier": "classifier-64"}, "is a bundled classifier"),
                       ({"guide_classifier": None}, "attr_weight needs a guide classifier"),
                       ({"codes": None}, "code_weight needs a bank of codes")):
        with pytest.raises(FaceweaveError, match=match):
            train("ddgi", "tiny", "facesynth:32:n=8", tmp_path / "bad", progress=False, overrides={**parts, **bad})
    write_codes(tmp_path / "other.st", codes, {"generator": "0" * 16})
    with pytest.raises(FaceweaveError, match="belong to another generator"):
        train("ddgi", "tiny", "facesynth:32:n=8", tmp_path / "other", progress=False,
              overrides={**parts, "codes": str(tmp_path / "other.st")})


def test_the_bundled_model_follows_a_real_mask_from_the_command_line(tmp_path):
    """`--backend ddgi` alone runs the bundled ddgi-64-real on its two bundled parts."""
    from faceweave import io
    from faceweave.conditions import colorize_mask
    mask = np.zeros((64, 64), np.uint8)
    mask[8:60, 12:52] = 1                                     # skin
    mask[4:20, 8:56] = 13                                     # hair
    io.write_png(tmp_path / "mask.png", colorize_mask(mask))
    r = CliRunner().invoke(main, ["generate", "--backend", "ddgi", "--prompt", "a smiling woman", "--mask",
                                  str(tmp_path / "mask.png"), "--seeds", "0-1", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert [Path(r["model"]).name for r in meta["results"]] == ["ddgi-64-real"] * 2
    assert meta["results"][0]["given"] == ["prompt", "mask"]
    a, b = (io.read_image(tmp_path / "out" / f"00000{i}.png") for i in (0, 1))
    assert a.shape == (64, 64, 3) and np.abs(a.astype(int) - b.astype(int)).mean() > 1    # two seeds, two faces


def test_a_run_can_start_from_a_ddgi_model_on_another_generator(pipe, tmp_path):
    """init= carries the two networks over to other parts of the same shapes (a generator
    trained further); the run records its own parts."""
    from faceweave import checkpoint
    from faceweave.train.loop import train
    train("stylegan2", "tiny", "facesynth:32", tmp_path / "g2", progress=False, overrides={"max_steps": 1, "seed": 7})
    train("ddgi", "tiny", "facesynth:32", tmp_path / "run", progress=False,
          overrides={"diffusion": pipe.config["diffusion"]["model"], "generator": str(tmp_path / "g2" / "last"),
                     "init": pipe.meta["path"], "max_steps": 1})
    config = checkpoint.read_config(tmp_path / "run" / "last", "ddgi")["config"]
    assert config["generator"]["model"] == str(tmp_path / "g2" / "last")
    assert config["generator"]["fingerprint"] != pipe.config["generator"]["fingerprint"]
    assert config["nets"] == pipe.config["nets"]
