"""The diffusion pipeline and backend on a tiny random model: determinism, batch-vs-single
identity, save/load, guidance per modality, samplers, editing, bad input, CLI end to end."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import faceweave
from faceweave import checkpoint
from faceweave.backends import get_backend
from faceweave.backends.diffusion import DiffusionPipeline
from faceweave.cli import main
from faceweave.conditions import Conditions
from faceweave.errors import FaceweaveError
from faceweave.io import read_image, write_mask
from faceweave.models.denoiser import ConditionalDenoiser, DenoiserConfig
from faceweave.synth import render
from faceweave.synth.layout import draw_layout
from faceweave.text import parse_prompt

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
FAST = {"num_inference_steps": 3, "progress": False}


@pytest.fixture(scope="module")
def pipe(tiny_model) -> DiffusionPipeline:
    return faceweave.load(str(tiny_model), device="cpu")


@pytest.fixture(scope="module")
def face():
    return render(seed=2_000_000, index=0, size=32)


def _conditions(face, **kw) -> Conditions:
    base = dict(prompt=face.captions[0], attributes={"Smiling": 1, "Male": 0}, mask=face.mask,
                sketch=face.sketch)
    base.update(kw)
    return Conditions(**base)


def test_same_seed_same_image_and_seeds_differ(pipe, face):
    cond = _conditions(face)
    a = pipe(conditions=cond, seeds=[0, 1], **FAST)
    b = pipe(conditions=cond, seeds=[0], **FAST)
    assert a.images[0].shape == (32, 32, 3) and a.images[0].dtype == np.uint8
    assert np.array_equal(a.images[0], b.images[0])
    assert np.abs(a.images[0].astype(int) - a.images[1]).mean() > 5
    meta = a.metadata[1]
    assert meta["seed"] == 1 and meta["steps"] == 3 and meta["conditions"] == cond.digest()
    assert set(meta["given"]) == {"prompt", "attributes", "mask", "sketch"}


def test_batch_equals_single(pipe, face):
    """Image i depends only on (conditions[i], seeds[i]): mixed modalities and prompt lengths
    in one batch give the images each would get alone."""
    other = render(seed=2_000_000, index=1, size=32)
    conds = [_conditions(face), Conditions(prompt="a man"), _conditions(other, sketch=None, prompt=None),
             Conditions()]
    seeds = [3, 4, 5, 6]
    for scale in (2.0, {"mask": 2.5}):
        batch = pipe(conditions=conds, seeds=seeds, guidance_scale=scale, **FAST).images
        for c, s, im in zip(conds, seeds, batch):
            drawn = c.mask is None and c.sketch is None and bool(c.prompt or c.attributes)   # the layout prior
            alone = pipe(conditions=c, seeds=[s], guidance_scale=scale if c.mask is not None or drawn or
                         not isinstance(scale, dict) else 1.0, **FAST).images[0]
            assert np.abs(alone.astype(int) - im).max() <= 1


def test_layout_prior_draws_one_mask_per_seed_and_conditions_on_it(pipe):
    """Given a prompt but no mask, each image follows the FaceSynth layout drawn from its own
    seed: exactly the image that mask would give with the prior off."""
    prompt = "a smiling man wearing eyeglasses"
    out = pipe(prompt=prompt, seeds=[0, 1], **FAST)
    meta = out.metadata[0]
    assert set(meta["given"]) == {"prompt", "mask"} and meta["layout_prior"] is True
    assert {"Eyeglasses", "Male", "Smiling"} <= set(meta["layout"]["matched"]) and not meta["layout"]["unmatched"]
    assert meta["layout"]["match"] == "all"
    assert any("FaceSynth layout" in n for n in meta["notes"])
    lay = draw_layout(parse_prompt(prompt), 0, 32)
    assert np.array_equal(out.layouts[0], lay.mask) and meta["layout"]["draw"] == lay.draw
    assert not np.array_equal(out.layouts[0], out.layouts[1])
    same = pipe(prompt=prompt, mask=lay.mask, seeds=[0], layout_prior=False, **FAST)
    assert np.array_equal(same.images[0], out.images[0])
    off = pipe(prompt=prompt, seeds=[0], layout_prior=False, **FAST)
    assert off.layouts == [None] and "layout" not in off.metadata[0] and off.metadata[0]["given"] == ["prompt"]
    assert np.abs(off.images[0].astype(int) - out.images[0]).mean() > 0.5
    attrs = pipe(attributes={"Wearing_Hat": 1}, seeds=[2], **FAST)     # attributes alone get one too
    assert set(attrs.metadata[0]["given"]) == {"attributes", "mask"} and (attrs.layouts[0] == 14).any()
    odd = pipe(attributes={"Male": 0, "Goatee": 1}, seeds=[0], **FAST).metadata[0]   # FaceSynth never draws it
    assert odd["layout"]["unmatched"] in (["Goatee"], ["Male"])
    assert any(n.startswith(f"no FaceSynth person drawn for the layout had {odd['layout']['unmatched'][0]}")
               for n in odd["notes"])


def test_layout_prior_leaves_masks_sketches_and_empty_calls_alone(pipe, face, tiny_model, tmp_path):
    for cond in (Conditions(prompt="a man", mask=face.mask), Conditions(prompt="a man", sketch=face.sketch),
                 Conditions()):
        out = pipe(conditions=cond, seeds=[0], **FAST)
        assert out.layouts == [None] and "layout" not in out.metadata[0]
        assert set(out.metadata[0]["given"]) == set(cond.given)
    with pytest.raises(FaceweaveError, match="layout_prior must be True, False or None"):
        pipe(prompt="a man", seeds=[0], layout_prior="yes", **FAST)
    config = DenoiserConfig(size=32, unet="tiny", patch=8, modalities=("text", "attributes"))
    checkpoint.save(tmp_path / "nomask", "diffusion", dataclasses.asdict(config),
                    ConditionalDenoiser(config).state_dict(), image_size=32)
    unmasked = faceweave.load(str(tmp_path / "nomask"))(prompt="a man", seeds=[0], **FAST)
    assert unmasked.layouts == [None] and unmasked.metadata[0]["given"] == ["prompt"]


def test_a_checkpoint_sets_its_own_layout_prior_default_and_a_call_overrides_it(pipe, tmp_path):
    """config.json's "sampling": {"layout_prior": false} turns the prior off for calls that do
    not say (diffusion-64-real's setting); layout_prior=True still draws one, and the
    default stays on for checkpoints without the key."""
    assert pipe.default_layout_prior is True
    checkpoint.save(tmp_path / "off", "diffusion", dataclasses.asdict(pipe.model.config), pipe.model.state_dict(),
                    image_size=32, sampling={"layout_prior": False})
    off = faceweave.load(str(tmp_path / "off"))
    assert off.default_layout_prior is False
    plain = off(prompt="a man with eyeglasses", seeds=[0], **FAST)
    assert plain.layouts == [None] and plain.metadata[0]["layout_prior"] is False
    assert plain.metadata[0]["given"] == ["prompt"]
    drawn = off(prompt="a man with eyeglasses", seeds=[0], layout_prior=True, **FAST)
    assert drawn.layouts[0] is not None and drawn.metadata[0]["layout_prior"] is True
    same = pipe(prompt="a man with eyeglasses", seeds=[0], **FAST)
    assert np.array_equal(same.images[0], drawn.images[0])     # same weights, same drawn layout


def test_save_load_round_trip_and_fp16_export(pipe, face, tmp_path):
    cond = _conditions(face)
    before = pipe(conditions=cond, seeds=[7], **FAST).images[0]
    checkpoint.save(tmp_path / "again", "diffusion", dataclasses.asdict(pipe.model.config),
                    pipe.model.state_dict(), image_size=32)
    again = faceweave.load(str(tmp_path / "again"))
    assert np.array_equal(again(conditions=cond, seeds=[7], **FAST).images[0], before)
    checkpoint.save(tmp_path / "half", "diffusion", dataclasses.asdict(pipe.model.config),
                    pipe.model.state_dict(), dtype=torch.float16, image_size=32)
    half = faceweave.load(str(tmp_path / "half"))(conditions=cond, seeds=[7], **FAST).images[0]
    assert np.abs(half.astype(int) - before).mean() < 2


def test_guidance_per_modality_changes_only_with_its_condition(pipe, face):
    cond = _conditions(face)
    plain = pipe(conditions=cond, seeds=[0], guidance_scale=1.0, **FAST).images[0].astype(int)
    by_mask = pipe(conditions=cond, seeds=[0], guidance_scale={"mask": 4.0}, **FAST).images[0]
    by_text = pipe(conditions=cond, seeds=[0], guidance_scale={"text": 4.0}, **FAST).images[0]
    assert np.abs(by_mask - plain).mean() > 0.5 and np.abs(by_text - plain).mean() > 0.5
    assert np.abs(by_mask.astype(int) - by_text).mean() > 0.5
    unit = pipe(conditions=cond, seeds=[0], guidance_scale={"mask": 1.0, "prompt": 1.0}, **FAST).images[0]
    assert np.array_equal(unit, plain)                     # scale 1 = conditioned, not guided
    windowed = pipe(conditions=cond, seeds=[0], guidance_scale=4.0, guidance_window=(0.0, 0.4), **FAST)
    assert not np.array_equal(windowed.images[0], pipe(conditions=cond, seeds=[0], guidance_scale=4.0,
                                                       **FAST).images[0])


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "ddim", "euler_ancestral"])
def test_every_sampler_runs(pipe, face, sampler):
    out = pipe(conditions=_conditions(face), seeds=[0, 1], sampler=sampler, **FAST)
    assert len(out.images) == 2 and out.metadata[0]["sampler"] == sampler


def test_ddim_eta_is_stochastic_yet_a_function_of_each_seed(pipe, face):
    """eta > 0 adds fresh noise at every step, drawn from each image's own seed: the image
    changes, stays reproducible, and a batch gives what single calls give."""
    cond = _conditions(face)
    plain = pipe(conditions=cond, seeds=[0, 1], sampler="ddim", **FAST)
    noisy = pipe(conditions=cond, seeds=[0, 1], sampler="ddim", eta=1.0, **FAST)
    again = pipe(conditions=cond, seeds=[0, 1], sampler="ddim", eta=1.0, **FAST)
    single = pipe(conditions=cond, seeds=[1], sampler="ddim", eta=1.0, **FAST)
    assert np.abs(noisy.images[0].astype(int) - plain.images[0]).mean() > 0.5
    assert all(np.array_equal(a, b) for a, b in zip(noisy.images, again.images))
    assert np.abs(noisy.images[1].astype(int) - single.images[0]).max() <= 1   # batch float noise only
    assert noisy.metadata[0]["eta"] == 1.0 and plain.metadata[0]["eta"] == 0.0
    euler = pipe(conditions=cond, seeds=[0], sampler="euler", **FAST).images[0]
    assert np.array_equal(euler, plain.images[0])          # eta 0: DDIM takes Euler's steps
    ancestral = pipe(conditions=cond, seeds=[0, 1], sampler="euler_ancestral", **FAST)
    assert all(np.array_equal(a, b) for a, b in zip(ancestral.images, noisy.images))   # = eta 1


def test_s_tmin_limits_the_fresh_noise_of_a_stochastic_sampler(pipe, face):
    """s_tmin above every step's sigma makes euler_ancestral deterministic DDIM; a window that
    holds some steps gives a third image, still a function of its seed; settings are recorded."""
    cond = _conditions(face)
    ddim = pipe(conditions=cond, seeds=[0], sampler="ddim", **FAST).images[0]
    never = pipe(conditions=cond, seeds=[0], s_tmin=1000.0, **FAST)
    assert np.array_equal(never.images[0], ddim)
    assert (never.metadata[0]["s_tmin"], never.metadata[0]["s_tmax"]) == (1000.0, None)
    always = pipe(conditions=cond, seeds=[0, 1], **FAST)
    assert always.metadata[0]["s_tmin"] is None                  # the default: noise at every step
    some = pipe(conditions=cond, seeds=[0, 1], s_tmin=10.0, **FAST)        # sigmas 80, 2.5, 0.002: noise once
    assert not np.array_equal(some.images[0], always.images[0]) and not np.array_equal(some.images[0], ddim)
    single = pipe(conditions=cond, seeds=[1], s_tmin=10.0, **FAST).images[0]
    assert np.abs(some.images[1].astype(int) - single).max() <= 1
    assert np.array_equal(pipe(conditions=cond, seeds=[0], sampler="ddim", eta=1.0, s_tmin=1000.0,
                               **FAST).images[0], ddim)


def test_empty_prompt_is_no_prompt_and_resized_mask_is_reported(pipe, face):
    a = pipe(prompt="   ", mask=face.mask, seeds=[0], **FAST)
    b = pipe(mask=face.mask, seeds=[0], **FAST)
    assert np.array_equal(a.images[0], b.images[0]) and a.metadata[0]["given"] == ["mask"]
    big = np.kron(face.mask, np.ones((2, 2), np.uint8))
    c = pipe(mask=big, seeds=[0], **FAST)
    assert c.metadata[0]["notes"] == ["mask resized from 64x64 to 32x32"]
    assert np.abs(c.images[0].astype(int) - b.images[0]).mean() < 8


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m"])
def test_bf16_precision_is_close_to_fp32_and_a_function_of_each_seed(tiny_model, pipe, face, sampler, monkeypatch):
    """precision="bf16" runs the denoiser under bfloat16 autocast: within a few grey levels of
    fp32 (measured: 0.6 and 1.3 mean on this tiny random model, 0.5 on diffusion-64), and
    still image i = f(seed i)."""
    fast = faceweave.load(str(tiny_model), device="cpu", precision="bf16")
    kw = {"conditions": _conditions(face), "num_inference_steps": 3, "progress": False, "sampler": sampler}
    full = np.stack(pipe(seeds=[0, 1, 2], **kw).images).astype(int)
    result = fast(seeds=[0, 1, 2], **kw)
    half = np.stack(result.images).astype(int)
    assert result.metadata[0]["precision"] == "bf16" and pipe(seeds=[0], **kw).metadata[0]["precision"] == "fp32"
    assert 0 < np.abs(full - half).mean() < 3                      # it did run in bf16, and is close
    assert np.abs(full[0] - full[1]).mean() > 10 * np.abs(full - half).mean()
    alone = fast(seeds=[1], **kw).images[0].astype(int)
    assert np.abs(alone - half[1]).max() <= 1                       # batch-vs-single identity
    assert np.array_equal(fast(seeds=[1], **kw).images[0], alone.astype(np.uint8))
    # bf16 keeps the weights channels-last; back to fp32 is the fp32 layout, image for image
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    fast.precision = "fp32"
    assert conv.weight.is_contiguous()
    assert np.array_equal(np.stack(fast(seeds=[0, 1, 2], **kw).images), full.astype(np.uint8))
    fast.precision = "bf16"
    monkeypatch.setattr("faceweave.backends.diffusion.pipeline.native_bf16", lambda device: False)
    assert any("bf16 is not native on this cpu" in n for n in fast(seeds=[0], **kw).metadata[0]["notes"])
    assert not any("native" in n for n in pipe(seeds=[0], **kw).metadata[0]["notes"])


def test_bad_precision_is_a_one_line_error(tiny_model):
    with pytest.raises(FaceweaveError, match="precision must be one of fp32, bf16, got 'fp16'"):
        faceweave.load(str(tiny_model), precision="fp16")
    with pytest.raises(FaceweaveError, match="applies to diffusion models"):
        faceweave.load("gan", precision="bf16")


def test_a_prompt_longer_than_the_text_encoder_reads_is_reported(pipe, face):
    """The encoder reads 48 tokens; a longer prompt is said to be cut, not cut silently, and
    the attributes it names after the cut still count."""
    long = "a portrait of a person, " * 12 + "a smiling man"
    result = pipe(prompt=long, seeds=[0], layout_prior=False, **FAST)
    count = pipe.text_encoder.token_count(long)
    assert count > pipe.text_encoder.max_tokens
    note = (f"the prompt is {count} tokens long; the text encoder reads its first "
            f"{pipe.text_encoder.max_tokens} (the attributes it names are read from all of it)")
    assert result.metadata[0]["notes"] == [note]
    assert result.metadata[0]["attributes_from_prompt"] == {"Smiling": 1, "Male": 1}
    assert pipe(prompt="a smiling man", seeds=[0], layout_prior=False, **FAST).metadata[0]["notes"] == []


def test_a_prompt_also_sets_the_attributes_it_names(pipe, face):
    """prompt_attributes (the default): the attributes parse_prompt reads from the prompt join
    the attribute tokens, exactly as if they were given with it; explicit ones win."""
    from faceweave.text import parse_prompt
    prompt = "a smiling blond man with eyeglasses"
    named = parse_prompt(prompt)
    assert named == {"Smiling": 1, "Blond_Hair": 1, "Male": 1, "Eyeglasses": 1}
    on = pipe(prompt=prompt, mask=face.mask, seeds=[0, 1], **FAST)
    off = pipe(prompt=prompt, mask=face.mask, seeds=[0, 1], prompt_attributes=False, **FAST)
    spelled = pipe(prompt=prompt, attributes=named, mask=face.mask, seeds=[0, 1], prompt_attributes=False, **FAST)
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(on.images, spelled.images))
    assert np.abs(on.images[0].astype(int) - off.images[0]).mean() > 0.5
    assert on.metadata[0]["attributes_from_prompt"] == named and on.metadata[0]["prompt_attributes"] is True
    assert "attributes_from_prompt" not in off.metadata[0] and off.metadata[0]["given"] == ["prompt", "mask"]
    # explicit attributes win over the prompt's, the rest of the prompt's still count
    mixed = pipe(prompt=prompt, attributes={"Male": 0}, seeds=[0], **FAST).images[0]
    merged = pipe(prompt=prompt, attributes={**named, "Male": 0}, seeds=[0], prompt_attributes=False,
                  **FAST).images[0]
    assert np.abs(mixed.astype(int) - merged).max() <= 1
    # a prompt that names no attribute changes nothing
    plain = [pipe(prompt="a face", seeds=[0], prompt_attributes=flag, **FAST).images[0] for flag in (True, False)]
    assert np.array_equal(*plain)


def test_prompt_attributes_go_with_the_prompt_under_guidance(pipe, face):
    """With per-modality guidance the prompt's attributes are on exactly when the prompt is:
    guiding the mask contrasts (prompt + its attributes + mask) with (prompt + its attributes)."""
    from faceweave.text import parse_prompt
    prompt = "a smiling blond man with eyeglasses"
    on = pipe(prompt=prompt, mask=face.mask, seeds=[0], guidance_scale={"mask": 3.0}, **FAST).images[0]
    spelled = pipe(prompt=prompt, attributes=parse_prompt(prompt), mask=face.mask, seeds=[0],
                   guidance_scale={"mask": 3.0}, prompt_attributes=False, **FAST).images[0]
    assert np.abs(on.astype(int) - spelled).max() <= 1
    without = pipe(prompt=prompt, mask=face.mask, seeds=[0], guidance_scale={"mask": 3.0}, prompt_attributes=False,
                   **FAST).images[0]
    assert np.abs(on.astype(int) - without).mean() > 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 0}, "num_inference_steps must be a whole number from 1 to 1000"),
    ({"guidance_scale": 500.0}, "guidance scale for all must be a number from 0 to 30"),
    ({"guidance_scale": {"sketch": 2.0}}, "guidance scale given for 'sketch', but that condition is not given"),
    ({"guidance_scale": {"colour": 2.0}}, "cannot guide 'colour'"),
    ({"sampler": "magic"}, "unknown sampler 'magic'"),
    ({"seeds": [-1]}, "non-negative"),
    ({"guidance_window": (0.5, 0.2)}, "guidance window"),
    ({"eta": 0.5}, "eta applies to the ddim sampler, not euler_ancestral"),
    ({"sampler": "ddim", "eta": 1.5}, "eta must be a number from 0"),
    ({"sampler": "dpmpp_2m", "s_tmin": 1.0}, "dpmpp_2m adds none; use sampler='euler_ancestral'"),
    ({"sampler": "ddim", "s_tmax": 5.0}, "ddim at eta 0 adds none"),
    ({"s_tmin": 5.0, "s_tmax": 1.0}, "s_tmin \\(5.0\\) must not exceed s_tmax"),
    ({"s_tmin": "1"}, "s_tmin must be a noise level"),
    # these were tracebacks, or (0.5) silently seed 0
    ({"seeds": "0-3"}, "seeds must be a list of non-negative integers"),
    ({"seeds": [0.5]}, "got 0.5 among the seeds"),
    ({"seeds": [2**70]}, "up to 2\\*\\*63 - 1 = 9223372036854775807, got 1180591620717411303424"),
    ({"negative_prompt": "y"}, "DiffusionPipeline\\(\\) takes no keyword .negative_prompt.; it takes prompt, attributes"),
    ({"seeds": []}, "got an empty list"),
    ({"guidance_window": (0.5,)}, "guidance window must be two fractions"),
    ({"guidance_window": ("0.2", "0.8")}, "guidance window must be two fractions"),
    ({"callback": 3}, "callback must be a function"),
    ({"attributes": ["Smiling"]}, "attributes must be a dict of name -> 0 or 1"),
    ({"prompt": "a woman " * 200}, "the prompt is 1,599 characters long, over the limit of 1,000"),
])
def test_bad_settings_are_one_line_errors(pipe, face, kwargs, message):
    args = {"prompt": "a woman", "mask": face.mask, **FAST, **kwargs}
    with pytest.raises(FaceweaveError, match=message):
        pipe(**args)


def test_a_failing_callback_is_one_error_naming_its_step(pipe, face):
    def callback(i, sigma, x, denoised):
        if i == 1:
            raise ValueError("preview window closed")
    with pytest.raises(FaceweaveError, match="^callback raised at step 2 of 3: ValueError: preview window closed$"):
        pipe(prompt="a woman", mask=face.mask, seeds=[0], num_inference_steps=3, progress=False, callback=callback)


def test_wrong_family_and_broken_model(pipe, face, tmp_path):
    with pytest.raises(FaceweaveError, match="holds a 'parser' model, not a 'diffusion' model"):
        DiffusionPipeline.from_pretrained("parser-64")
    broken = DiffusionPipeline(ConditionalDenoiser(pipe.model.config), text_encoder=pipe.text_encoder)
    broken.model.load_state_dict(pipe.model.state_dict())
    with torch.no_grad():
        broken.model.denoiser.net.out[-1].weight.fill_(float("nan"))
    with pytest.raises(FaceweaveError, match="NaN"):
        broken(prompt="a woman", seeds=[0], **FAST)


def test_backend_generate_contract(tiny_model, face):
    backend = get_backend("diffusion", model=str(tiny_model), steps=2)
    images = backend.generate([_conditions(face), Conditions()], seeds=[0, 1], size=48)
    assert [im.shape for im in images] == [(48, 48, 3)] * 2
    assert backend.describe()["num_inference_steps"] == 2


def test_edit_keeps_what_was_not_edited(pipe, face):
    photo = face.image
    target = face.mask.copy()
    target[8:16, 8:16] = 13                                # paint hair into a corner
    out = pipe.edit(photo, Conditions(mask=face.mask), Conditions(mask=target), num_inference_steps=6,
                    progress=False)
    edited = out.images[0].astype(int)
    changed = (target != face.mask).astype(np.uint8)
    region = cv2.dilate(changed, np.ones((5, 5), np.uint8)) > 0   # the change, dilated by 2 px
    assert out.metadata[0]["edited_pixels"] == region.sum() > changed.sum() > 20
    assert np.abs(edited[~region] - photo[~region]).max() <= 1
    assert np.abs(edited[region] - photo[region]).mean() > 3
    with pytest.raises(FaceweaveError, match="source must be a faceweave.Conditions"):
        pipe.edit(photo, {"mask": face.mask}, Conditions(mask=target), num_inference_steps=2, progress=False)
    with pytest.raises(FaceweaveError, match="conditions must be a faceweave.Conditions"):
        pipe.invert(photo, face.mask, num_inference_steps=2)


def test_inversion_round_trip_is_close(pipe, face):
    """Invert + regenerate under the same conditions, nothing pinned: a deterministic ODE
    round trip; its error is discretisation only (a random tiny model is a smooth field)."""
    recon = pipe.reconstruct(face.image, Conditions(mask=face.mask), num_inference_steps=30)
    err = np.abs(recon.astype(float) - face.image).mean()
    assert err < 6.0, err                                  # of 255; the photo's own spread is ~60


@pytest.mark.skipif(not (REAL / "pairs").is_dir(), reason="../shared/data/real/pairs not present")
def test_cli_edit_on_the_real_edited_mask_pair(tiny_model, tmp_path):
    from faceweave.io import read_image, read_mask
    photo = REAL / "pairs" / "edit_27044.jpg"
    mask = REAL / "pairs" / "edit_27044_mask_no_smile_no_earrings.png"
    out = tmp_path / "edit"
    result = CliRunner().invoke(main, ["edit", "--image", str(photo), "--mask", str(mask), "--model",
                                       str(tiny_model), "--steps", "4", "--out", str(out), "--quiet"])
    narrow = CliRunner().invoke(main, ["edit", "--image", str(photo), "--mask", str(mask), "--model",
                                       str(tiny_model), "--steps", "4", "--out", str(tmp_path / "narrow"),
                                       "--classes", "mouth,u_lip,l_lip,ear_r", "--quiet"])
    assert narrow.exit_code == 0, narrow.output
    narrow_meta = json.loads((tmp_path / "narrow" / "meta.json").read_text())
    bad = CliRunner().invoke(main, ["edit", "--image", str(photo), "--mask", str(mask), "--model", str(tiny_model),
                                    "--out", str(tmp_path / "bad"), "--classes", "moustache", "--quiet"])
    assert bad.exit_code == 2 and "unknown class 'moustache'" in bad.output
    assert result.exit_code == 0, result.output
    edited = read_image(out / "edited.png")
    meta = json.loads((out / "meta.json").read_text())
    assert edited.shape == (32, 32, 3) and 0 < meta["edited_pixels"] < 32 * 32
    assert 0 < narrow_meta["edited_pixels"] < meta["edited_pixels"]
    assert "photo resized from 256x256 to 32x32" in meta["notes"]
    assert read_image(out / "comparison.png").shape[1] > 4 * 32
    assert read_mask(mask).shape == (256, 256)


def test_cli_generate_end_to_end(tiny_model, face, tmp_path):
    mask = tmp_path / "mask.png"
    write_mask(mask, face.mask)
    out = tmp_path / "gen"
    args = ["generate", "--prompt", "a smiling woman", "--mask", str(mask), "--attr", "Smiling=1",
            "--model", str(tiny_model), "--seeds", "0-2", "--steps", "2", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000001.png", "000002.png", "grid.png",
                                                      "meta.json"]
    meta = json.loads((out / "meta.json").read_text())
    assert [r["seed"] for r in meta["results"]] == [0, 1, 2] and meta["results"][0]["prompt"] == "a smiling woman"
    assert meta["results"][0]["attributes_from_prompt"] == {"Smiling": 1, "Male": 0}
    again = CliRunner().invoke(main, args)                 # never overwrite silently
    assert again.exit_code == 2 and "--overwrite" in again.output
    plain = CliRunner().invoke(main, args + ["--overwrite", "--no-prompt-attributes"])
    assert plain.exit_code == 0, plain.output
    meta = json.loads((out / "meta.json").read_text())["results"][0]
    assert meta["prompt_attributes"] is False and "attributes_from_prompt" not in meta
    tuned = CliRunner().invoke(main, args + ["--overwrite", "--sampler", "ddim", "--ddim-eta", "1",
                                             "--guidance-window", "0.2,0.8"])
    assert tuned.exit_code == 0, tuned.output
    meta = json.loads((out / "meta.json").read_text())["results"][0]
    assert meta["sampler"] == "ddim" and meta["eta"] == 1.0 and meta["guidance_window"] == [0.2, 0.8]
    calm = CliRunner().invoke(main, args + ["--overwrite", "--s-tmin", "10"])
    assert calm.exit_code == 0, calm.output
    meta = json.loads((out / "meta.json").read_text())["results"][0]
    assert (meta["sampler"], meta["s_tmin"], meta["s_tmax"]) == ("euler_ancestral", 10.0, None)
    for extra, message in ((["--sampler", "dpmpp_2m", "--s-tmin", "1"], "dpmpp_2m adds none"),
                           (["--s-tmin", "-1"], "s_tmin must be a noise level")):
        bad = CliRunner().invoke(main, args + ["--overwrite"] + extra)
        assert bad.exit_code == 2 and message in bad.output and len(bad.output.strip().splitlines()) == 1
    fast = CliRunner().invoke(main, args + ["--overwrite", "--precision", "bf16"])
    assert fast.exit_code == 0, fast.output
    assert json.loads((out / "meta.json").read_text())["results"][0]["precision"] == "bf16"


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "3-1"], "is not a seed list"),
    (["--attr", "Smiley=1"], "unknown attribute 'Smiley'"),
    (["--attr", "Smiling=maybe"], "not a valid value"),
    (["--scale", "mask=2", "--guidance", "3"], "either --guidance"),
    (["--steps", "0"], "num_inference_steps must be"),
    (["--mask", "nope.png"], "nope.png"),
    (["--ddim-eta", "1"], "--ddim-eta applies to --sampler ddim"),
    (["--sampler", "ddim", "--ddim-eta", "2"], "eta must be a number from 0"),
    (["--guidance-window", "0.2"], "must be two fractions START,END"),
    (["--guidance-window", "0.8,0.2"], "guidance window must satisfy"),
])
def test_cli_generate_bad_input(tiny_model, tmp_path, extra, message):
    args = ["generate", "--prompt", "a woman", "--model", str(tiny_model), "--out", str(tmp_path / "o"), "--quiet"]
    result = CliRunner().invoke(main, args + extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_generate_writes_the_drawn_layouts(tiny_model, tmp_path):
    """A prompt alone: each seed's layout is written as a colour mask that --mask reads back
    into the same image, and grid.png shows the layouts under the faces."""
    out = tmp_path / "gen"
    args = ["generate", "--prompt", "a man with a hat", "--model", str(tiny_model), "--seeds", "0-1", "--steps", "2",
            "--quiet"]
    result = CliRunner().invoke(main, args + ["--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["000000.png", "000000_layout.png", "000001.png",
                                                      "000001_layout.png", "grid.png", "meta.json"]
    assert "FaceSynth layout" in result.output
    assert read_image(out / "grid.png").shape[:2] == (2 * 32 + 2, 2 * 32 + 2)      # faces over layouts
    listing = json.loads((out / "meta.json").read_text())
    assert listing["layouts"] == ["000000_layout.png", "000001_layout.png"]
    assert listing["results"][1]["layout"]["matched"] == ["Male", "Wearing_Hat"]
    back = tmp_path / "back"
    again = CliRunner().invoke(main, ["generate", "--prompt", "a man with a hat", "--mask",
                                      str(out / "000001_layout.png"), "--model", str(tiny_model), "--seeds", "1",
                                      "--steps", "2", "--quiet", "--out", str(back)])
    assert again.exit_code == 0, again.output
    assert np.array_equal(read_image(back / "000001.png"), read_image(out / "000001.png"))
    off = tmp_path / "off"
    plain = CliRunner().invoke(main, args + ["--no-layout-prior", "--out", str(off)])
    assert plain.exit_code == 0, plain.output
    assert not list(off.glob("*_layout.png")) and "layout" not in json.loads((off / "meta.json").read_text())[
        "results"][0]
    for cmd in (["generate", "--backend", "gan", "--prompt", "a man"], ["evaluate", "--backend", "copy", "--n", "2"]):
        bad = CliRunner().invoke(main, cmd + ["--no-layout-prior", "--out", str(tmp_path / "x")])
        assert bad.exit_code == 2 and "--layout-prior/--no-layout-prior apply to --backend diffusion" in bad.output
        assert len(bad.output.strip().splitlines()) == 1


def test_precision_flag_is_for_the_diffusion_backend(tmp_path):
    for args in (["generate", "--backend", "gan", "--prompt", "a man"], ["evaluate", "--backend", "copy", "--n", "2"]):
        result = CliRunner().invoke(main, args + ["--precision", "bf16", "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and "--precision applies to --backend diffusion" in result.output
        assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ["evaluate", "--backend", "copy", "--n", "2"],
    ["generate", "--backend", "gan", "--prompt", "a man"],
    ["edit", "--backend", "collab", "--image", "photo.png", "--prompt", "a man"],
])
def test_prompt_attributes_flag_is_for_the_diffusion_backend(args, tmp_path):
    result = CliRunner().invoke(main, args + ["--no-prompt-attributes", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "apply to --backend diffusion" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_evaluate_scores_the_diffusion_backend(tiny_model, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--backend", "diffusion", "--model", str(tiny_model), "--given", "prompt,mask",
            "--n", "4", "--size", "64", "--seeds-per-condition", "2", "--steps", "2", "--scale", "mask=2",
            "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 4 and 0 <= metrics["mask_miou"] <= 1 and metrics["sec_per_image"] > 0
    assert metrics["latency_batch1"] > 0 and metrics["peak_memory_mb"] > 100
    assert metrics["protocol"]["backend"]["guidance_scale"] == {"mask": 2.0}
    assert metrics["protocol"]["backend"]["prompt_attributes"] is True
    assert metrics["protocol"]["backend"]["layout_prior"] is True
    assert metrics["protocol"]["backend"]["layout_match"] == "all"
    bad = CliRunner().invoke(main, args[:-3] + ["--guidance", "2", "--out", str(tmp_path / "e2")])
    assert bad.exit_code == 2 and "either --guidance" in bad.output
    tuned = CliRunner().invoke(main, args[:-3] + ["--sampler", "ddim", "--ddim-eta", "1", "--guidance-window",
                                                  "0,0.5", "--seeds-per-condition", "1", "--no-layout-prior",
                                                  "--s-tmin", "10",
                                                  "--out", str(tmp_path / "e3"), "--quiet"])
    assert tuned.exit_code == 0, tuned.output
    protocol = json.loads((tmp_path / "e3" / "metrics.json").read_text())["protocol"]["backend"]
    assert (protocol["sampler"], protocol["eta"], protocol["guidance_window"]) == ("ddim", 1.0, [0.0, 0.5])
    assert protocol["layout_prior"] is False and protocol["layout_match"] is None and protocol["s_tmin"] == 10.0
    for extra, message in ((["--ddim-eta", "1"], "--ddim-eta applies to --sampler ddim"),
                           (["--edit", "--sampler", "ddim"], "--edit inverts and regenerates"),
                           (["--edit", "--s-tmin", "1"], "drop --sampler/--ddim-eta/--s-tmin"),
                           (["--s-tmin", "1", "--sampler", "heun"], "heun adds none")):
        bad = CliRunner().invoke(main, args[:-3] + extra + ["--out", str(tmp_path / "e4")])
        assert bad.exit_code == 2 and message in bad.output and len(bad.output.strip().splitlines()) == 1
    copy = CliRunner().invoke(main, ["evaluate", "--backend", "copy", "--n", "2", "--sampler", "heun",
                                     "--out", str(tmp_path / "e5")])
    assert copy.exit_code == 2 and "--sampler applies to --backend diffusion or collab, not copy" in copy.output
    copy = CliRunner().invoke(main, ["evaluate", "--backend", "copy", "--n", "2", "--s-tmin", "1",
                                     "--out", str(tmp_path / "e6")])
    assert copy.exit_code == 2 and "--s-tmin applies to --backend diffusion, not copy" in copy.output


def test_hairstyle_edit_only_paints_hair_and_background():
    from faceweave.eval.editing import HAIR, hairstyle_edit
    a, b = render(seed=2_000_000, index=0, size=32).mask, render(seed=2_000_000, index=1, size=32).mask
    target = hairstyle_edit(a, b)
    touched = target != a
    assert touched.any() and np.isin(a[touched], [0, HAIR]).all() and np.isin(target[touched], [0, HAIR]).all()


def test_cli_evaluate_edit(tiny_model, tmp_path):
    out = tmp_path / "edit_eval"
    result = CliRunner().invoke(main, ["evaluate", "--backend", "diffusion", "--model", str(tiny_model), "--edit",
                                       "--n", "2", "--size", "64", "--steps", "3", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["recon_psnr"] > 5 and 0 <= metrics["edit_region_acc"] <= 1
    assert metrics["edit_mae_outside"] >= 0 and (out / "grid.png").exists()
    if importlib.util.find_spec("dlib") is not None:      # the identity metrics need the real extra
        assert metrics["recon_identity_dist"] >= 0 and 0 <= metrics["edit_same_person"] <= 1
    copy = CliRunner().invoke(main, ["evaluate", "--backend", "copy", "--edit", "--n", "2", "--out",
                                     str(tmp_path / "c"), "--quiet"])
    assert copy.exit_code == 2 and "cannot edit photos" in copy.output


def test_cli_invert_writes_noise_and_a_faithful_reconstruction(tiny_model, face, tmp_path):
    from safetensors.torch import load_file

    from faceweave.io import write_png
    photo = tmp_path / "face.png"
    write_png(photo, face.image)
    mask = tmp_path / "mask.png"
    write_mask(mask, face.mask)
    out = tmp_path / "inv"
    result = CliRunner().invoke(main, ["invert", str(photo), "--mask", str(mask), "--model", str(tiny_model),
                                       "--steps", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    noise = load_file(str(out / "latent.safetensors"))["noise"]
    meta = json.loads((out / "meta.json").read_text())
    assert noise.shape == (1, 3, 32, 32) and float(noise.std()) > 5      # noise at sigma_max = 20
    assert meta["reconstruction_psnr"] > 25 and meta["sigma_max"] == pytest.approx(20.0)
    both = CliRunner().invoke(main, ["invert", str(photo), "--mask", str(mask), "--no-mask", "--model",
                                     str(tiny_model), "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "not both" in both.output
