"""The stylize backend (MMFS): tiny real models on the CPU, a few steps, fixed seeds.

One module-scoped set of tiny checkpoints (a 32 px StyleGAN2 trained 2 steps, the stylizer's
stage 1, stage 2 and text stage a few steps each, a tiny joint image-text space) serves
every test: the networks, the training stages, the pipeline's one-shot and zero-shot calls,
the save/load round trip, the CLI end to end and every bad input's one-line error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import faceweave
from faceweave.backends.stylize import styles
from faceweave.backends.stylize.networks import ParserLevels, RandomFilters, Stylizer, synthesis_until
from faceweave.backends.stylize.pipeline import StylizePipeline
from faceweave.cli import main
from faceweave.errors import FaceweaveError
from faceweave.io import write_png
from faceweave.synth import render
from faceweave.train.loop import train

QUIET = {"progress": False}
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "photos"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stylize")
    torch.manual_seed(0)
    train("stylegan2", "tiny", "facesynth:32", root / "sg", overrides={"max_steps": 2}, **QUIET)
    train("stylize", "tiny", "facesynth:32", root / "enc", overrides={"max_steps": 3, "generator": str(root / "sg/last")},
          **QUIET)
    train("stylize_joint", "tiny", "facesynth:32", root / "joint", overrides={"max_steps": 2}, **QUIET)
    train("stylize", "tiny", "facesynth:32", root / "text", overrides={
        "max_steps": 2, "stage": "text", "base": str(root / "enc/last"), "joint": str(root / "joint/last")}, **QUIET)
    train("stylize", "tiny", "facesynth:32", root / "domain", overrides={
        "max_steps": 2, "stage": "domain", "base": str(root / "enc/last"), "style": "cartoon"}, **QUIET)
    return {"root": root, "enc": root / "enc/last", "text": root / "text/last", "domain": root / "domain/last",
            "joint": root / "joint/last", "sg": root / "sg/last"}


@pytest.fixture(scope="module")
def pipe(tiny) -> StylizePipeline:
    return faceweave.load(str(tiny["text"]))


def _face(index: int = 0) -> np.ndarray:
    return render(seed=3_000_000, index=index, size=32, captions=0).image


def _reference() -> np.ndarray:
    return styles.apply(_face(5), "cartoon with dark outlines", " in warm colors", np.random.default_rng(0))


# -- the offline looks ------------------------------------------------------------------------

def test_styled_pairs_are_reproducible_and_described():
    photo = _face()
    a, text_a = styles.stylize_photo(photo, np.random.default_rng(3))
    b, text_b = styles.stylize_photo(photo, np.random.default_rng(3))
    assert np.array_equal(a, b) and text_a == text_b and text_a in styles.DESCRIPTIONS
    assert a.shape == photo.shape and a.dtype == np.uint8 and not np.array_equal(a, photo)
    assert styles.parse_domain("cartoon+warm") == ("cartoon with dark outlines", " in warm colors")
    with pytest.raises(FaceweaveError, match="unknown style domain 'velvet'"):
        styles.parse_domain("velvet")


# -- networks and training stages ---------------------------------------------------------------

def test_the_decoder_continues_the_generator_exactly():
    """Encoder and decoder split the generator at `split`: the decoder fed the generator's own
    features at split reproduces the generator's image (the alignment target of stage 1)."""
    from faceweave.models.stylegan2 import PRESETS
    import dataclasses
    model = Stylizer.from_config({"generator": dataclasses.asdict(PRESETS["tiny"]), "split": 16, "encoder_width": 8})
    G = model.generator.eval()
    w = G.get_latent(torch.randn(2, G.config.z_dim, generator=torch.Generator().manual_seed(0)))
    wplus = w[:, None].expand(-1, G.num_ws, -1)
    feat, skip = synthesis_until(G, wplus, model.config.first_block - 1)
    with torch.no_grad():
        whole = G([wplus], input_is_latent=True, randomize_noise=False)[0]
        split = model.decoder(feat, skip, wplus)
    assert torch.allclose(whole, split, atol=1e-5)
    assert feat.shape[-1] == 16 and model.encoder(whole)[0].shape == feat.shape


def test_stages_train_what_they_should_and_record_their_parts(tiny):
    from faceweave import checkpoint
    enc_meta, enc = checkpoint.load(tiny["enc"], "stylize")
    dom_meta, dom = checkpoint.load(tiny["domain"], "stylize")
    txt_meta, txt = checkpoint.load(tiny["text"], "stylize")
    assert dom_meta["config"]["stages"] == ["encoder", "domain"] and txt_meta["config"]["stages"] == ["encoder", "text"]
    assert dom_meta["config"]["domain"] == "cartoon with dark outlines"
    changed = lambda a, b, part: any(not torch.equal(a[k], b[k]) for k in a if k.startswith(part))  # noqa: E731
    assert changed(enc, dom, "decoder.") and not changed(enc, dom, "encoder.")        # stage 2: decoder only
    assert not changed(enc, txt, "decoder.") and not changed(enc, txt, "encoder.")     # text: mapper only
    assert any(k.startswith("mapper.") for k in txt) and not any(k.startswith("mapper.") for k in enc)
    assert not changed(enc, dom, "generator.")                                          # the prior stays frozen


def test_stage_settings_missing_are_one_line_errors(tiny, tmp_path):
    cases = [({}, "needs the StyleGAN2 prior"),
             ({"stage": "domain"}, "starts from a trained stylizer"),
             ({"stage": "domain", "base": str(tiny["enc"])}, "needs the artistic domain"),
             ({"stage": "domain", "base": str(tiny["enc"]), "style": "velvet"}, "unknown style domain"),
             ({"stage": "text", "base": str(tiny["enc"])}, "needs the joint image-text space"),
             ({"stage": "warp"}, "stage must be one of")]
    for i, (overrides, message) in enumerate(cases):
        with pytest.raises(FaceweaveError, match=message) as info:
            train("stylize", "tiny", "facesynth:32", tmp_path / str(i), overrides={"max_steps": 1, **overrides}, **QUIET)
        assert "\n" not in str(info.value)


# -- the pipeline -----------------------------------------------------------------------------

def test_one_shot_is_reproducible_and_strength_blends_from_the_model_own_look(pipe):
    face, ref = _face(), _reference()
    a = pipe(face, style=ref, tune_steps=3, align=False)
    b = pipe(face, style=ref, tune_steps=3, align=False)
    assert np.array_equal(a.stylized, b.stylized) and a.stylized.shape == (32, 32, 3)
    assert a.metadata[0]["mode"] == "one-shot" and a.metadata[0]["tune_seconds"] > 0
    assert a.metadata[0]["style_loss_last"] < a.metadata[0]["style_loss_first"]       # tuning moves towards the style
    plain = pipe(face, style=ref, tune_steps=3, strength=0.0, align=False).stylized
    with torch.no_grad():
        x = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1
        own = ((pipe.model(x)[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(plain, own) and not np.array_equal(plain, a.stylized)


def test_random_filters_are_made_by_the_seed_see_edges_not_brightness_and_are_never_saved():
    a, b, c = RandomFilters(), RandomFilters(), RandomFilters(seed=1)
    assert a.state_dict() == {} and a.sizes == (3, 5, 7, 11)
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
    assert not torch.equal(a.bank_3, c.bank_3)
    flat = torch.full((1, 3, 32, 32), 0.3)
    edge = flat.clone()
    edge[..., 16:] = -0.3
    for f_flat, f_edge in zip(a.block_features(flat), a.block_features(edge)):
        inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))     # away from the zero padding
        assert f_flat[inner].abs().max() < 1e-5 and f_edge[inner].abs().max() > 0.1


def test_parser_levels_are_the_parser_encoder_outputs_and_stay_frozen():
    from faceweave.backends.stylize.pipeline import style_network
    from faceweave.ruler import load_parser
    parser = load_parser("parser-64")
    levels = ParserLevels(parser.model)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = levels.block_features(x)
    assert [f.shape[1:] for f in feats] == [(32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4)]
    seen = []
    hooks = [s.register_forward_hook(lambda m, a, out: seen.append(out)) for s in parser.model.down]
    with torch.no_grad():
        parser.model(x)
    for h in hooks:
        h.remove()
    assert all(torch.allclose(a, b) for a, b in zip(feats, seen))
    assert not any(p.requires_grad for p in levels.parameters())
    model = Stylizer.from_config(faceweave.load("stylize-64-real").config["stylizer"])
    assert style_network(model, "parser-64") is style_network(model, "parser-64")       # loaded once
    with pytest.raises(FaceweaveError, match="not a 'parser' model"):
        style_network(model, "stylize-64-real")


@pytest.mark.parametrize("statistic,features,blocks", [("gram", "critic", 1), ("moments", "critic", 3),
                                                       ("gram", "random", 4), ("moments", "random", 2),
                                                       ("gram", "parser-64", 2), ("moments", "parser-64", 4)])
def test_either_style_statistic_tunes_towards_the_reference(pipe, statistic, features, blocks):
    import copy
    other = copy.copy(pipe)
    other.meta = {**pipe.meta, "sampling": {**(pipe.meta.get("sampling") or {}), "style_statistic": statistic,
                                             "style_features": features, "style_blocks": blocks}}
    out = other(_face(), style=_reference(), tune_steps=3, align=False)
    assert out.metadata[0]["style_loss_last"] < out.metadata[0]["style_loss_first"]
    other.meta["sampling"]["style_statistic"] = "histogram"
    with pytest.raises(FaceweaveError, match="unknown style statistic 'histogram'"):
        other(_face(), style=_reference(), tune_steps=1, align=False)
    other.meta["sampling"].update(style_statistic=statistic, style_features="vgg")
    with pytest.raises(FaceweaveError, match="unknown style_features 'vgg'; choose critic, random or a face parser"):
        other(_face(), style=_reference(), tune_steps=1, align=False)
    other.meta["sampling"].update(style_features=features, style_blocks=0)
    with pytest.raises(FaceweaveError, match="style_blocks must be a whole number from 1 to"):
        other(_face(), style=_reference(), tune_steps=1, align=False)


def test_a_folder_or_list_of_references_is_one_style(pipe, tmp_path):
    refs = [_reference(), styles.apply(_face(6), "pencil sketch", "", np.random.default_rng(1))]
    for i, ref in enumerate(refs):
        write_png(tmp_path / f"{i}.png", ref)
    from_list = pipe(_face(), style=refs, tune_steps=2, align=False)
    from_folder = pipe(_face(), style=str(tmp_path), tune_steps=2, align=False)
    assert from_list.metadata[0]["references"] == 2
    assert np.array_equal(from_list.stylized, from_folder.stylized)


def test_zero_shot_texts_give_different_looks_and_strength_zero_none(pipe):
    with torch.no_grad():                             # a tiny mapper barely trained: give it a visible range
        for p in pipe.model.mapper.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.2)
    face = _face()
    sketch = pipe(face, style_text="a pencil sketch", align=False)
    warm = pipe(face, style_text="a watercolor painting in warm colors", align=False)
    none = pipe(face, style_text="a pencil sketch", strength=0.0, align=False)
    assert sketch.metadata[0]["mode"] == "zero-shot" and not np.array_equal(sketch.stylized, warm.stylized)
    neutral = pipe(face, style=_reference(), strength=0.0, tune_steps=1, align=False)
    assert np.array_equal(none.stylized, neutral.stylized)
    assert np.array_equal(sketch.stylized, pipe(face, style_text="a  pencil sketch ", align=False).stylized)


def test_save_pretrained_loads_back_to_the_same_stylization(pipe, tmp_path):
    face, ref = _face(), _reference()
    before = pipe(face, style=ref, tune_steps=2, align=False).stylized
    again = faceweave.load(str(pipe.save_pretrained(tmp_path / "copy")))
    assert type(again) is StylizePipeline and again.sampling == pipe.sampling
    assert np.array_equal(before, again(face, style=ref, tune_steps=2, align=False).stylized)
    small = faceweave.load(str(pipe.save_pretrained(tmp_path / "int8", storage="int8")))
    assert small.meta["storage"] == "int8" and small(face, style_text="a sketch", align=False).stylized.shape == before.shape


def test_samples_of_the_domain_are_batch_independent(pipe):
    batch = pipe.sample([0, 1, 2]).images
    assert all(np.array_equal(batch[i], pipe.sample([i]).images[0]) for i in range(3))
    assert not np.array_equal(batch[0], batch[1])


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give exactly one style"),
    ({"style": "REF", "style_text": "a sketch"}, "not both"),
    ({"style_text": "   "}, "style text is empty"),
    ({"style_text": 3}, "must be a sentence"),
    ({"style_text": "a sketch", "strength": float("nan")}, "strength must be from 0 to 1"),
    ({"style_text": "a sketch", "strength": 1.5}, "strength must be from 0 to 1"),
    ({"style_text": "a sketch", "strength": "lots"}, "strength must be a number"),
    ({"style": "REF", "tune_steps": -1}, "tune_steps must be a whole number"),
    ({"style": []}, "empty list"),
    ({"style": np.zeros((4, 4), np.uint8)}, "style reference must be an H x W x 3"),
    ({"style_text": "a sketch", "negative": "x"}, "no keyword 'negative'"),
    ({"style_text": "a sketch", "blend": "soft"}, "unknown blend 'soft'"),
])
def test_bad_calls_are_one_line_errors(pipe, kwargs, message):
    kwargs = {k: _reference() if isinstance(v, str) and v == "REF" else v for k, v in kwargs.items()}
    with pytest.raises(FaceweaveError, match=message) as info:
        pipe(_face(), align=False, **kwargs)
    assert "\n" not in str(info.value)


def test_text_without_a_mapper_is_a_one_line_error(tiny):
    with pytest.raises(FaceweaveError, match="has no text mapper"):
        faceweave.load(str(tiny["enc"]))(_face(), style_text="a sketch", align=False)
    with pytest.raises(FaceweaveError, match="a face photo must|must be an H x W x 3"):
        faceweave.load(str(tiny["enc"]))(np.zeros((5, 5)), style=_reference(), name="a face photo")


# -- the command ------------------------------------------------------------------------------

def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_writes_the_stylized_face_comparison_and_meta(tiny, tmp_path):
    write_png(tmp_path / "face.png", _face())
    write_png(tmp_path / "ref.png", _reference())
    out = tmp_path / "out"
    result = _run("stylize", "--image", tmp_path / "face.png", "--style", tmp_path / "ref.png", "--no-align",
                  "--tune-steps", 2, "--model", tiny["text"], "--out", out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"stylized.png", "pasted.png", "comparison.png", "meta.json"}
    import json
    meta = json.loads((out / "meta.json").read_text())
    assert meta["mode"] == "one-shot" and meta["tune_steps"] == 2 and meta["aligned"] is False
    result = _run("stylize", "--image", tmp_path / "face.png", "--style-text", "a pencil sketch", "--no-align",
                  "--model", tiny["text"], "--out", tmp_path / "out2")
    assert result.exit_code == 0 and "zero-shot" in result.output


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent (the shared real photos)")
def test_cli_aligns_a_real_photo_and_pastes_the_face_back(tiny, tmp_path):
    import importlib.util
    if importlib.util.find_spec("facenet_pytorch") is None:
        pytest.skip("aligning a real photo needs the MTCNN weights of facenet-pytorch (scripts/setup.sh)")
    from faceweave.io import read_image
    photo = sorted(REAL.glob("*.jpg"))[0]
    result = _run("stylize", "--image", photo, "--style", sorted(REAL.glob("*.jpg"))[1], "--tune-steps", 1,
                  "--model", tiny["enc"], "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    pasted = read_image(tmp_path / "o" / "pasted.png")
    assert pasted.shape == read_image(photo).shape                     # the whole photo, the face replaced
    assert read_image(tmp_path / "o" / "stylized.png").shape == (32, 32, 3)


def test_cli_bad_inputs_are_one_line_errors(tiny, tmp_path):
    write_png(tmp_path / "face.png", _face())
    write_png(tmp_path / "blank.png", np.full((96, 96, 3), 128, np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "empty").mkdir()
    face, model = tmp_path / "face.png", tiny["text"]
    cases = [
        (["--image", face, "--model", model], "give exactly one style"),
        (["--image", face, "--style", face, "--style-text", "x", "--model", model], "not both"),
        (["--image", face, "--style-text", "  ", "--model", model], "--style-text is empty"),
        (["--image", face, "--style-text", "x", "--strength", "nan", "--model", model], "out of range"),
        (["--image", face, "--style-text", "x", "--strength", "1.5", "--model", model], "out of range"),
        (["--image", tmp_path / "missing.png", "--style-text", "x", "--model", model], "no such file"),
        (["--image", tmp_path / "broken.png", "--style-text", "x", "--model", model], "broken.png"),
        (["--image", face, "--style", tmp_path / "nope.png", "--model", model], "does not exist"),
        (["--image", face, "--style", tmp_path / "empty", "--model", model], "holds no images"),
        (["--image", face, "--style-text", "x", "--model", tiny["sg"]], "not a stylize one"),
        (["--image", face, "--style-text", "x", "--model", tiny["enc"]], "has no text mapper"),
        (["--image", tmp_path / "blank.png", "--style-text", "x", "--model", model], "no face found"),
    ]
    for i, (args, message) in enumerate(cases):
        result = _run("stylize", *args, "--out", tmp_path / f"out{i}")
        assert result.exit_code == 2, (args, result.output)
        line = result.output.strip()
        assert message in line and line.startswith("error:") and "\n" not in line, (args, line)
        assert not (tmp_path / f"out{i}").exists()


# -- the app ----------------------------------------------------------------------------------

def test_app_stylize_tab_runs_one_shot_and_zero_shot_and_refuses_mistakes(tiny):
    from faceweave import app
    models = app.Models(model=str(tiny["text"]))
    assert models.stylize_source == str(tiny["text"]) and "diffusion" in models.backends
    face = np.pad(_face(), ((4, 4), (4, 4), (0, 0)), mode="edge")     # a photo bigger than the model's side
    one = app.run_stylize(models, _face(), _reference(), None, strength=1.0, tune_steps=2, align=False)
    assert one.stylized.shape == (32, 32, 3) and one.metadata["mode"] == "one-shot"
    two = app.run_stylize(models, _face(), None, "a pencil sketch", strength=0.5, align=False)
    assert two.metadata["mode"] == "zero-shot"
    for kwargs, message in [({"reference": None, "style_text": " "}, "give exactly one style"),
                            ({"reference": _reference(), "style_text": "a sketch"}, "not both"),
                            ({"reference": _reference(), "tune_steps": 900}, "tune steps")]:
        with pytest.raises(FaceweaveError, match=message):
            app.run_stylize(models, face, align=False, **kwargs)
    with pytest.raises(FaceweaveError, match="no photo"):
        app.run_stylize(models, None, _reference())
    bundled = app.Models()
    assert bundled.stylize_source == "stylize-64-real"
    bundled.stylize_source = None                     # an installation without the bundled stylizer
    with pytest.raises(FaceweaveError, match="no stylize model is installed: start the app with --model"):
        bundled.stylizer()


# -- the bundled model ------------------------------------------------------------------------

def test_the_bundled_stylizer_is_the_default_and_does_both_modes(tmp_path):
    """`faceweave stylize` without --model runs stylize-64-real (real-face StyleGAN2 prior,
    with a text mapper): a reference and a text each change the face; strength 0 gives the
    model's plain reconstruction of it."""
    assert faceweave.DEFAULT_MODELS["stylize"] == "stylize-64-real"
    pipe = faceweave.load("stylize")
    assert pipe.size == 64 and pipe.reads_text
    face = render(seed=2_000_000, index=5, size=64).image
    plain = pipe(face, style_text="a pencil sketch", strength=0.0, align=False).stylized
    text = pipe(face, style_text="a pencil sketch", align=False).stylized
    warm = pipe(face, style_text="a watercolor painting in warm colors", align=False).stylized
    # measured with the bundled weights: 7.6 grey levels from the face; 70 and 39 from that
    assert np.abs(plain.astype(int) - face).mean() < 20                  # it reconstructs the face
    assert np.abs(text.astype(int) - plain).mean() > 20                  # a text changes the look ...
    assert np.abs(warm.astype(int) - plain).mean() > 20
    assert np.abs(text.astype(int) - warm).mean() > 10                   # ... and two texts differently
    write_png(tmp_path / "face.png", face)
    write_png(tmp_path / "ref.png", styles.apply(render(seed=2_000_000, index=6, size=64).image, "pencil sketch", "",
                                                 np.random.default_rng(0)))
    result = _run("stylize", "--image", tmp_path / "face.png", "--style", tmp_path / "ref.png", "--no-align",
                  "--tune-steps", 5, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    import json
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["mode"] == "one-shot" and Path(meta["model"]).name == "stylize-64-real"
