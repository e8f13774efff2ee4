"""The latent-diffusion autoencoder: training, scaling factor, and a latent diffusion model
built on it that generates and edits at the image size, end to end through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import faceweave
from faceweave import checkpoint
from faceweave.cli import main
from faceweave.conditions import Conditions
from faceweave.models.vae import VAE, LatentSpace, VAEConfig, downsample_conditions, kl_divergence
from faceweave.synth import render


def test_shapes_factor_and_kl():
    vae = VAE(VAEConfig(base=8, mults=(1, 2, 2), groups=4))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar = vae.encode(x)
    assert vae.factor == 4 and mean.shape == (2, 4, 8, 8)
    assert vae.decode(mean).shape == x.shape
    assert float(kl_divergence(torch.zeros(1, 4), torch.zeros(1, 4))) == 0.0
    with pytest.raises(ValueError, match="divisible by 4"):
        vae.encode(torch.zeros(1, 3, 30, 30))


def test_conditions_reach_the_latent_side_without_losing_thin_lines():
    mask = torch.zeros(1, 32, 32, dtype=torch.long)
    mask[:, 8:24, 8:24] = 1
    sketch = torch.zeros(1, 1, 32, 32)
    sketch[..., 5, :] = 1.0                                 # a one-pixel line
    m, s = downsample_conditions(mask, sketch, 16)
    assert m.shape == (1, 16, 16) and m[0, 8, 8] == 1 and m[0, 0, 0] == 0
    assert s.shape == (1, 1, 16, 16) and s[0, 0, 2].min() == 1.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    runner = CliRunner()
    vae = runner.invoke(main, ["train", "vae", "--preset", "tiny", "--data", "facesynth:32", "--out",
                               str(root / "vae"), "--max-steps", "6", "--quiet"])
    assert vae.exit_code == 0, vae.output
    diff = runner.invoke(main, ["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32", "--out",
                                str(root / "diff"), "--max-steps", "4", "--set", f"vae={root / 'vae' / 'best'}",
                                "--set", "weighting=p2", "--quiet"])
    assert diff.exit_code == 0, diff.output
    return root


def test_vae_run_measures_its_scaling_factor(runs):
    meta = checkpoint.read_config(runs / "vae" / "best", "vae")
    val = meta["val"]
    assert np.isfinite(val["psnr"]) and val["latent_std"] > 0
    assert meta["config"]["scaling_factor"] == pytest.approx(1 / val["latent_std"])


def test_latent_diffusion_run_embeds_the_vae(runs):
    record = json.loads((runs / "diff" / "run.json").read_text())
    assert record["weighting"] == "p2" and record["model"]["channels"] == 4 and record["model"]["size"] == 16
    _, vae_state = checkpoint.load(runs / "vae" / "best")
    _, state = checkpoint.load(runs / "diff" / "last")
    for key, value in vae_state.items():                   # frozen: the VAE weights never moved
        assert torch.equal(state[f"space.vae.{key}"], value)


def test_latent_pipeline_generates_and_edits_at_image_size(runs):
    pipe = faceweave.load(str(runs / "diff" / "last"))
    assert isinstance(pipe.model.space, LatentSpace) and pipe.size == 32
    face = render(seed=2_000_000, index=0, size=32)
    out = pipe(prompt="a woman", mask=face.mask, sketch=face.sketch, seeds=[0, 1], num_inference_steps=2,
               progress=False)
    assert [im.shape for im in out.images] == [(32, 32, 3)] * 2 and out.metadata[0]["notes"] == []
    target = face.mask.copy()
    target[:8, :8] = 13
    edited = pipe.edit(face.image, Conditions(mask=face.mask), Conditions(mask=target), num_inference_steps=3,
                       progress=False).images[0]
    outside = np.ones((32, 32), bool)
    outside[:11, :11] = False
    assert np.array_equal(edited[outside], face.image[outside])   # pasted back exactly


def test_bad_vae_setting_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32",
                                       "--out", str(tmp_path / "d"), "--set", "vae=parser-64", "--quiet"])
    assert result.exit_code == 2 and "holds a 'parser' model, not a 'vae' model" in result.output
    result = CliRunner().invoke(main, ["train", "diffusion", "--preset", "tiny", "--data", "facesynth:32",
                                       "--out", str(tmp_path / "e"), "--set", "colour=3", "--quiet"])
    assert result.exit_code == 2 and "unknown training setting 'colour'" in result.output
