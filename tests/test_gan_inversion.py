"""GAN inversion: the W+ encoder, the parser-feature distance, the projector and the encoder's
training task, with a tiny random StyleGAN2 on the CPU."""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from faceweave import checkpoint
from faceweave.errors import FaceweaveError
from faceweave.models import gan_encoder
from faceweave.models import stylegan2 as sg2
from faceweave.projector import (FeatureDistance, learning_rate, pivotal_tune, project, psnr,
                                 reconstruction_metrics)

TINY = sg2.PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny_gan() -> sg2.StyleGAN2:
    torch.manual_seed(0)
    gan = sg2.StyleGAN2.from_config(dataclasses.asdict(TINY)).eval()
    with torch.no_grad():
        gan.generator.w_avg.copy_(gan.generator.mean_latent(512)[0])
        for m in gan.generator.modules():              # noise strengths start at 0: make noise matter
            if isinstance(m, sg2.NoiseInjection):
                m.strength.fill_(0.1)
    return gan


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_gan, tmp_path_factory):
    path = tmp_path_factory.mktemp("gan") / "stylegan2-tiny"
    checkpoint.save(path, "stylegan2", dataclasses.asdict(TINY), tiny_gan.state_dict(), image_size=32)
    return path


@pytest.fixture(scope="module")
def distance() -> FeatureDistance:
    return FeatureDistance()


def test_encoder_shapes_and_it_starts_at_w_avg():
    for name in ("tiny", "s"):
        cfg = gan_encoder.PRESETS[name]
        torch.manual_seed(0)
        E = gan_encoder.GANEncoder.from_config(dataclasses.asdict(cfg)).eval()
        E.w_avg.normal_()
        x = torch.rand(2, 3, cfg.size, cfg.size) * 2 - 1
        wplus, deltas = E(x, return_deltas=True)
        assert wplus.shape == deltas.shape == (2, cfg.num_ws, cfg.w_dim)
        # every head's last layer starts at zero: an untrained encoder answers w_avg
        torch.testing.assert_close(wplus, E.w_avg.expand(2, cfg.num_ws, -1))
    assert sum(p.numel() for p in E.parameters()) < 4_000_000       # "s" stays CPU-sized
    assert gan_encoder.PRESETS["s"].style_levels() == [2, 2, 2, 1, 1, 1, 1, 0, 0, 0]   # pSp's split
    with pytest.raises(FaceweaveError, match="takes"):
        E(torch.zeros(1, 3, 32, 32))
    with pytest.raises(FaceweaveError, match="num_ws"):
        gan_encoder.GANEncoderConfig(num_ws=7)


def test_encoder_is_per_image_and_learns():
    torch.manual_seed(0)
    E = gan_encoder.GANEncoder.from_config(gan_encoder.PRESETS["tiny"])
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    target = torch.randn(3, 8, 32)
    opt = torch.optim.Adam(E.parameters(), lr=1e-2)
    for _ in range(3):                                  # off the zero start, so heads differ per image
        opt.zero_grad()
        (E(x) - target).square().mean().backward()
        opt.step()
    E.eval()
    batch = E(x)
    single = torch.cat([E(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[1])


def test_feature_distance(distance):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert torch.equal(distance(a, a), torch.zeros(2))
    d = distance(a, b)
    assert d.shape == (2,) and (d > 0).all() and (d <= 4).all()
    # other sizes are resized to the parser's; differentiable in the inputs, frozen weights
    small = b[:, :, ::2, ::2].clone().requires_grad_(True)
    distance.train()
    assert not distance.training
    distance(small, a[:, :, ::2, ::2]).sum().backward()
    assert small.grad is not None and small.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in distance.parameters())
    torch.testing.assert_close(distance(a[:1], b[:1]), d[:1])          # per image


def test_psnr_and_learning_rate_schedule():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[1] += 0.2                                          # MSE 0.04 on a peak-to-peak of 2: 10 log10(100) dB
    torch.testing.assert_close(psnr(a, b)[1], torch.tensor(20.0))
    assert psnr(a, b)[0] > 90
    assert learning_rate(0.0, 0.1) == 0.0
    assert learning_rate(0.5, 0.1) == pytest.approx(0.1)
    assert learning_rate(0.9, 0.1) < 0.05


def test_projector_recovers_a_generated_face(tiny_gan, distance):
    G = tiny_gan.generator
    z = torch.randn(2, TINY.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target, _ = G([z], randomize_noise=False)
    result = project(G, target, steps=40, lr=0.1, feature_distance=distance, latent_noise=0.0)
    loss = result.history["loss"]
    assert loss.shape == (40, 2)
    assert (loss[-1] < loss[0] / 4).all(), loss[[0, -1]]
    assert result.wplus.shape == (2, TINY.num_ws, TINY.w_dim) and result.image.shape == target.shape
    before = reconstruction_metrics(G, target, G.w_avg[None, None].expand(2, TINY.num_ws, -1), feature_distance=distance)
    after = reconstruction_metrics(G, target, result.wplus, result.noise, feature_distance=distance)
    assert after["psnr"] > before["psnr"] + 5 and after["feature_distance"] < before["feature_distance"]
    with pytest.raises(FaceweaveError, match="targets"):
        project(G, target[:, :, :16, :16], steps=1)
    # a w per image (N, w_dim) starts every W+ entry there; other shapes are refused
    start = project(G, target, init_wplus=G.w_avg[None].expand(2, -1), steps=1, feature_weight=0, latent_noise=0)
    torch.testing.assert_close(start.wplus, G.w_avg.expand(2, TINY.num_ws, -1))      # lr is 0 at step 0
    with pytest.raises(FaceweaveError, match="init_wplus"):
        project(G, target, init_wplus=torch.zeros(2, 3, TINY.w_dim), steps=1)


def test_an_extra_loss_steers_the_projection_and_is_recorded(tiny_gan):
    G = tiny_gan.generator
    z = torch.randn(1, TINY.z_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        target, _ = G([z], randomize_noise=False)

    def redder(images):                       # per image: how far the red channel is from white
        return 10 * (1 - images[:, 0]).mean((1, 2))

    kw = {"steps": 30, "feature_weight": 0, "latent_noise": 0.0}
    plain = project(G, target, **kw)
    steered = project(G, target, extra_loss=redder, **kw)
    assert float(steered.image[:, 0].mean()) > float(plain.image[:, 0].mean()) + 0.05
    assert steered.history["extra"].shape == (30, 1) and (plain.history["extra"] == 0).all()
    torch.testing.assert_close(steered.history["loss"],
                               steered.history["pixel"] + steered.history["extra"])
    with pytest.raises(FaceweaveError, match="one value per image"):
        project(G, target, steps=1, feature_weight=0, extra_loss=lambda images: images.mean())


def test_pivotal_tuning_fits_the_generator_to_a_face_it_cannot_draw(tiny_gan, distance):
    G = tiny_gan.generator
    target = torch.linspace(-0.8, 0.8, TINY.size)[None, None, None].expand(1, 3, TINY.size, -1).clone()
    target[:, 1] = target[:, 1].flip(-1)                           # a colour ramp, not a GAN face
    start = project(G, target, steps=20, feature_distance=distance, latent_noise=0.0)
    before = {k: p.clone() for k, p in G.state_dict().items()}
    tuned = pivotal_tune(G, target, start.wplus, start.noise, steps=40, feature_distance=distance)
    assert all(torch.equal(before[k], p) for k, p in G.state_dict().items())     # G itself unchanged
    assert not any(p.requires_grad for p in tuned.parameters()) and not tuned.training
    plain = reconstruction_metrics(G, target, start.wplus, start.noise, feature_distance=distance)
    fitted = reconstruction_metrics(tuned, target, start.wplus, start.noise, feature_distance=distance)
    assert fitted["psnr"] > plain["psnr"] + 3, (plain, fitted)
    # the mapping network is not tuned (a W+ code does not use it)
    assert all(torch.equal(p, q) for p, q in zip(tuned.style.parameters(), G.style.parameters()))
    with pytest.raises(FaceweaveError, match="one \\(1, 3"):
        pivotal_tune(G, target.expand(2, -1, -1, -1), start.wplus, steps=1)
    with pytest.raises(FaceweaveError, match="positive whole number"):
        pivotal_tune(G, target, start.wplus, steps=0)


def _generators(ids):
    return [torch.Generator().manual_seed(100 + i) for i in ids]


def test_projecting_a_batch_equals_projecting_each_image(tiny_gan, distance):
    # in float64: Adam divides by the gradients' size, so fp32 rounding would grow over steps
    G = copy.deepcopy(tiny_gan.generator).double()
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)).double() * 2 - 1
    init = G.w_avg[None, None].expand(2, TINY.num_ws, -1) + 0.1 * torch.randn(2, TINY.num_ws, TINY.w_dim).double()
    kw = {"steps": 8, "feature_distance": copy.deepcopy(distance).double(), "optimize_noise": True,
          "latent_noise": 0.5}
    batch = project(G, target, init_wplus=init, generator=_generators([0, 1]), **kw)
    for i in range(2):
        one = project(G, target[i:i + 1], init_wplus=init[i:i + 1], generator=_generators([i]), **kw)
        torch.testing.assert_close(one.wplus[0], batch.wplus[i], atol=1e-7, rtol=1e-7)
        torch.testing.assert_close(one.noise[-1][0], batch.noise[-1][i], atol=1e-7, rtol=1e-7)
        torch.testing.assert_close(one.history["loss"][:, 0], batch.history["loss"][:, i], atol=1e-7, rtol=1e-7)
    # the noise maps were optimised and renormalised per image
    assert not torch.allclose(batch.noise[-1][0], G.noise_buffers()[-1][0])
    torch.testing.assert_close(batch.noise[-1].mean((1, 2, 3)), torch.zeros(2).double(), atol=1e-6, rtol=0)


def test_encoder_training_runs_and_reloads(tiny_ckpt, tmp_path):
    from faceweave.train import loop
    with pytest.raises(FaceweaveError, match="generator="):
        loop.train("gan_encoder", "tiny", "facesynth:32", tmp_path / "none", progress=False)
    out = tmp_path / "enc"
    metrics = loop.train("gan_encoder", "tiny", "facesynth:32", out, progress=False,
                         overrides={"generator": str(tiny_ckpt), "max_steps": 6, "log_every": 3, "val_n": 4})
    assert metrics["step"] == 6 and metrics["psnr"] > 0 and metrics["feature_distance"] > 0
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"latent", "pixel", "feature", "delta"} <= set(lines[0])
    assert (out / "samples" / "step_0000006.png").exists()
    meta, state = checkpoint.load(out / "last", "gan_encoder")
    assert meta["config"]["generator"] == dataclasses.asdict(TINY)
    E = gan_encoder.GANEncoder.from_config(meta["config"])
    checkpoint.load_into(E, state)
    assert E(torch.zeros(1, 3, 32, 32)).shape == (1, TINY.num_ws, TINY.w_dim)
    G = sg2.Generator.from_config(meta["config"]["generator"])
    assert G.num_ws == E.config.num_ws
