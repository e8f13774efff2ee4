"""The multiview backend (EG3D-style): a tiny real model trained 2 steps on FaceSynth, on the CPU.

Geometry first (cameras, ray marching through a known density), then the pipeline
(determinism, batch = single, save/load, turning), the yaw estimator on FaceSynth renders
whose yaw is known, ddgi driving the generator, and the command with its mistakes.
"""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import faceweave
from faceweave.backends.multiview.networks import PRESETS, MultiviewGAN, camera, camera_rays, render_rays
from faceweave.backends.multiview.pipeline import MultiviewPipeline, parse_yaws
from faceweave.backends.multiview.views import estimate_yaw, render_at_yaw
from faceweave.cli import main
from faceweave.errors import FaceweaveError
from faceweave.io import write_png

HAS_DLIB = importlib.util.find_spec("dlib") is not None
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="the yaw estimator needs dlib's landmarks (dlib-bin)")


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return tiny_checkpoint("multiview")


@pytest.fixture(scope="module")
def pipe(ckpt):
    return faceweave.load(str(ckpt))


# --- geometry ------------------------------------------------------------------------------

def test_cameras_sit_on_the_sphere_and_look_at_the_origin():
    cam = camera(torch.tensor([-30.0, 0.0, 30.0]), 10.0, radius=2.7)
    rot, pos = cam[:, :, :3], cam[:, :, 3]
    assert torch.allclose(rot.transpose(1, 2) @ rot, torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(pos.norm(dim=1), torch.full((3,), 2.7))
    assert torch.allclose(camera(0.0)[0, :, 3], torch.tensor([0.0, 0.0, 2.7]))
    # the central ray of an even image runs between the four middle pixels: their mean passes the origin
    origins, dirs = camera_rays(cam, 2, fov=20.0)
    centre = dirs.mean(1)
    closest = origins[:, 0] - (origins[:, 0] * centre).sum(1, keepdim=True) * centre / centre.norm(dim=1, keepdim=True) ** 2
    assert closest.norm(dim=1).max() < 1e-5
    # positive yaw moves the camera towards +x
    assert cam[2, 0, 3] > 0 > cam[0, 0, 3]


def test_ray_marching_a_known_density():
    """A ball of radius 0.5 and density 50 at the origin, coloured (1, 0, 0): a ray through
    its centre is opaque, red, and stops at its surface; a ray that misses it is empty; a
    thin slab of density s over length L lets exp(-s L) through."""
    def ball(points):
        inside = (points.norm(dim=-1, keepdim=True) < 0.5).float()
        return 50.0 * inside, inside * torch.tensor([1.0, 0.0, 0.0])

    origins = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.9, 2.0]]])
    dirs = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]])
    out = render_rays(ball, origins, dirs, near=1.0, far=3.0, samples=400)
    assert out["opacity"][0, 0] > 0.99 and out["opacity"][0, 1] < 1e-6
    assert torch.allclose(out["features"][0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=0.01)
    assert abs(float(out["depth"][0, 0]) - 1.5) < 0.03             # the ball's near surface: 2.0 - 0.5

    def slab(points):
        inside = ((points[..., 2:] > -0.25) & (points[..., 2:] < 0.25)).float()
        return 2.0 * inside, inside
    out = render_rays(slab, origins[:, :1], dirs[:, :1], near=1.0, far=3.0, samples=800)
    assert abs(float(out["opacity"][0, 0]) - (1 - math.exp(-2.0 * 0.5))) < 0.01
    # stratified jitter draws from the generator it is given: the same draws, the same result
    a = render_rays(slab, origins[:, :1], dirs[:, :1], 1.0, 3.0, 64, torch.Generator().manual_seed(0), jitter=True)
    b = render_rays(slab, origins[:, :1], dirs[:, :1], 1.0, 3.0, 64, torch.Generator().manual_seed(0), jitter=True)
    assert torch.equal(a["opacity"], b["opacity"])


def test_the_generator_renders_shapes_and_tracks_the_camera():
    torch.manual_seed(0)
    m = MultiviewGAN(PRESETS["tiny"]).eval()
    c = m.config
    w = torch.randn(2, c.w_dim)
    out = m.synthesize(w, m.camera(torch.tensor([0.0, 30.0])))
    assert out.image.shape == (2, 3, c.size, c.size) and out.raw.shape == (2, 3, c.render_size, c.render_size)
    assert out.depth.shape == out.opacity.shape == (2, c.render_size, c.render_size)
    again = m.synthesize(w[:1], m.camera(torch.tensor([0.0])))
    assert torch.allclose(again.image, out.image[:1], atol=1e-5)       # a batch renders as single faces do
    d = m.discriminator(out.image, out.raw, m.camera(torch.tensor([0.0, 30.0])))
    assert d.shape == (2, 1)
    with pytest.raises(FaceweaveError, match="latents have shape"):
        m.synthesize(torch.randn(1, 3), m.camera([0.0]))


# --- the pipeline --------------------------------------------------------------------------

def test_same_seed_same_views_and_batch_equals_single(pipe):
    yaws = [-30, 0, 30]
    both = pipe.views(seeds=[3, 4], yaws=yaws)
    again = pipe.views(seeds=[4], yaws=yaws)
    assert len(both.views) == 2 and all(len(v) == 3 for v in both.views)
    assert all(np.array_equal(a, b) for a, b in zip(both.views[1], again.views[0]))
    assert not np.array_equal(both.views[0][1], both.views[1][1])
    single = pipe(seeds=[4]).images[0]
    assert np.array_equal(single, again.views[0][1])                    # generate is the yaw-0 view
    assert both.strip(0).shape == (pipe.size, 3 * pipe.size, 3)


def test_turning_changes_the_view_and_the_views_are_one_face(pipe):
    out = pipe.views(seeds=[0], yaws=[-30, 0, 30])
    left, front, right = (v.astype(float) for v in out.views[0])
    assert np.abs(left - front).mean() > 0.05 and np.abs(right - front).mean() > 0.05
    # one w from every camera: the latents are the same whatever the yaw list
    other = pipe.views(seeds=[0], yaws=[15])
    assert torch.equal(out.latents[0], other.latents[0])


def test_save_pretrained_round_trip(pipe, tmp_path):
    before = pipe.views(seeds=[1], yaws=[-15, 15]).views[0]
    again = faceweave.load(str(pipe.save_pretrained(tmp_path / "copy")))
    assert isinstance(again, MultiviewPipeline) and again.sampling == pipe.sampling
    assert all(np.array_equal(a, b) for a, b in zip(before, again.views(seeds=[1], yaws=[-15, 15]).views[0]))
    config = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert config["family"] == "multiview" and config["config"]["size"] == pipe.size


def test_training_resumes_and_writes_its_files(ckpt):
    run = ckpt.parent
    assert (run / "metrics.jsonl").is_file() and (run / "last" / "model.safetensors").is_file()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(x["kind"] == "val" and "novel_view_l1" in x for x in lines)
    assert all(math.isfinite(x["recon"]) for x in lines if x["kind"] == "train")


@pytest.mark.parametrize("yaws, words", [
    ("a,b", "yaw 'a' is not a number"), ("-31", "out of range"), ("", "empty"), ("0,nan", "out of range"),
    (",".join(["0"] * 33), "at most 32"),
])
def test_bad_yaw_lists(yaws, words):
    with pytest.raises(FaceweaveError, match=words):
        parse_yaws(yaws)


def test_bad_calls_are_one_line_errors(pipe):
    with pytest.raises(FaceweaveError, match="exactly one"):
        pipe.views(seeds=[0], image=np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(FaceweaveError, match="truncation"):
        pipe.views(seeds=[0], truncation=2)
    with pytest.raises(FaceweaveError, match="invert_steps"):
        pipe.views(image=np.zeros((64, 64, 3), np.uint8), invert_steps=-1)
    with pytest.raises(FaceweaveError, match="reads no conditions"):
        pipe(prompt="a man", seeds=[0])


# --- poses of FaceSynth heads and photos ---------------------------------------------------

def test_render_at_yaw_is_the_same_head_turned():
    from faceweave.synth import render
    face = render(7, 3, 64, captions=0)
    image, mask = render_at_yaw(7, 3, 64, face.params["yaw"])
    assert np.array_equal(image, face.image) and np.array_equal(mask, face.mask)
    left, _ = render_at_yaw(7, 3, 64, -30)
    assert not np.array_equal(left, image)


@needs_dlib
def test_yaw_estimate_follows_the_true_yaw_on_facesynth():
    errors, ordered = [], 0
    for index in range(6):
        yaws = [-30.0, 0.0, 30.0]
        est = [estimate_yaw(render_at_yaw(2_000_000, index, 64, y)[0]) for y in yaws]
        ordered += est[0] < est[1] < est[2]
        errors += [abs(e - y) for e, y in zip(est, yaws)]
    assert ordered >= 5 and np.mean(errors) < 12, (ordered, np.mean(errors))


@needs_dlib
def test_photo_poses_come_from_landmarks_and_the_mirror(tmp_path):
    from faceweave.backends.multiview.train import MultiviewTask, to_tensor
    from faceweave.train.loop import train
    images = [render_at_yaw(2_000_000, i, 64, 25.0)[0] for i in range(2)]
    a, yaw_a, b, yaw_b = MultiviewTask()._views({"image": to_tensor(images)}, {"pose": "landmarks"},
                                                 torch.Generator(), "cpu")
    assert torch.equal(b, a.flip(3)) and torch.equal(yaw_b, -yaw_a) and bool((yaw_a > 5).all()), yaw_a
    result = train("multiview", "tiny", "facesynth:32", tmp_path / "photos", progress=False,
                   overrides={"max_steps": 1, "pose": "landmarks"})
    assert math.isfinite(result["same_view_l1"])


# --- ddgi drives the generator ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ddgi_on_multiview(ckpt, tmp_path_factory):
    from faceweave.backends.diffusion.train import tiny_checkpoint as tiny_diffusion
    from faceweave.train.loop import train
    root = tmp_path_factory.mktemp("ddgi-mv")
    diffusion = tiny_diffusion(root)
    train("ddgi", "tiny", "facesynth:32", root / "ddgi", progress=False,
          overrides={"max_steps": 2, "diffusion": str(diffusion), "generator": str(ckpt)})
    return root / "ddgi" / "last"


def test_ddgi_on_a_multiview_generator_turns_faces_from_a_mask(ddgi_on_multiview, tmp_path):
    from faceweave.synth import render
    ddgi = faceweave.load(str(ddgi_on_multiview))
    face = render(2_000_000, 0, 32, captions=0)
    write_png(tmp_path / "mask.png", face.mask)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["multiview", "--mask", str(tmp_path / "mask.png"), "--yaws=-30,0,30",
                                       "--model", str(ddgi_on_multiview), "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["given"] == ["mask"] and meta["faces"][0]["source"] == "ddgi"
    assert {p.name for p in out.glob("*.png")} >= {"000000_yaw-30.png", "000000_yaw+0.png", "000000_strip.png"}
    # the ddgi model's own image is the multiview render at yaw 0 of the same code
    from faceweave.backends.multiview.pipeline import ddgi_multiview
    from faceweave.conditions import Conditions
    mv = ddgi_multiview(ddgi)
    turned = mv.views_from_ddgi(ddgi, [Conditions(mask=face.mask)], [0], yaws=[0]).views[0][0]
    assert np.array_equal(turned, ddgi(mask=face.mask, seeds=[0]).images[0])
    with pytest.raises(FaceweaveError, match="multiview generator"):
        ddgi.edit_photo(face.image, Conditions(mask=face.mask))
    copy = faceweave.load(str(ddgi.save_pretrained(tmp_path / "ddgi-copy")))
    assert np.array_equal(copy(mask=face.mask, seeds=[0]).images[0], ddgi(mask=face.mask, seeds=[0]).images[0])


# --- the command ---------------------------------------------------------------------------

def _run(args):
    return CliRunner().invoke(main, ["multiview", *map(str, args)])


def test_cli_seeds_write_one_png_per_yaw_and_a_strip(ckpt, tmp_path):
    out = tmp_path / "out"
    result = _run(["--seed", "0-1", "--yaws=-30,0,30", "--model", ckpt, "--out", out])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"000000_yaw-30.png", "000000_yaw+0.png", "000000_yaw+30.png", "000001_strip.png", "meta.json"} <= names
    meta = json.loads((out / "meta.json").read_text())
    assert meta["yaws"] == [-30.0, 0.0, 30.0] and [f["seed"] for f in meta["faces"]] == [0, 1]


@needs_dlib
def test_cli_photo_is_inverted_at_its_estimated_yaw(ckpt, tmp_path):
    image, _ = render_at_yaw(2_000_000, 1, 64, 20.0)
    write_png(tmp_path / "face.png", image)
    out = tmp_path / "out"
    result = _run(["--image", tmp_path / "face.png", "--no-align", "--invert-steps", 3, "--yaws=0,20",
                   "--model", ckpt, "--out", out])
    assert result.exit_code == 0, result.output
    face = json.loads((out / "meta.json").read_text())["faces"][0]
    assert face["source"] == "photo" and face["invert_steps"] == 3 and 5 < face["estimated_yaw"] < 35
    assert face["l1_inverted"] <= face["l1_encoder"] + 1e-6
    assert (out / "photo_aligned.png").is_file() and (out / "photo_strip.png").is_file()


def test_cli_mistakes_are_one_line_errors(ckpt, tmp_path):
    flat = tmp_path / "flat.png"
    write_png(flat, np.full((64, 64, 3), 128, np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    base = ["--model", ckpt, "--out", tmp_path / "o"]
    cases = [
        (["--yaws=a,b", *base], "yaw 'a' is not a number"),
        (["--yaws=0,45", *base], "out of range"),
        (["--image", flat, "--prompt", "a man", *base], "not both"),
        (["--seed", 0, "--out", tmp_path / "o"], "no bundled model"),
        (["--prompt", "a man", *base], "conditions need a ddgi model"),
        (["--image", broken, *base], "broken.png"),
        (["--image", tmp_path / "missing.png", *base], "missing.png"),
        (["--image", flat, "--no-align", *base], "flat image"),
        (["--seed", 0, "--invert-steps", 3, *base], "apply to --image"),
    ]
    for args, words in cases:
        result = _run(args)
        assert result.exit_code != 0, args
        text = result.output.strip()
        assert words in text and "Traceback" not in text and len(text.splitlines()) == 1, (args, text)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(importlib.util.find_spec("facenet_pytorch") is None,
                    reason="finding a face in a photo needs the MTCNN weights of facenet-pytorch")
def test_cli_photo_without_a_face(ckpt, tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    write_png(tmp_path / "noise.png", noise)
    result = _run(["--image", tmp_path / "noise.png", "--model", ckpt, "--out", tmp_path / "o"])
    assert result.exit_code != 0 and "no face found" in result.output and "Traceback" not in result.output


def test_the_app_turns_a_seed(ckpt):
    from faceweave import app
    models = app.Models(model=str(ckpt))
    views, meta = app.run_multiview(models, None, seed=2, yaws="-30,0")
    assert len(views) == 2 and meta["seed"] == 2 and views[0].shape == (models.pipeline("multiview").size,) * 2 + (3,)
    with pytest.raises(FaceweaveError, match="not a number"):
        app.run_multiview(models, None, yaws="a")
