"""StyleGAN2 (models/stylegan2.py) and its training task: tiny configs on the CPU."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from faceweave import checkpoint
from faceweave.errors import FaceweaveError
from faceweave.models import stylegan2 as sg2

TINY = sg2.PRESETS["tiny"]


@pytest.fixture()
def gan():
    torch.manual_seed(0)
    return sg2.StyleGAN2.from_config(dataclasses.asdict(TINY))


def test_shapes_of_generator_and_discriminator(gan):
    G, D = gan.generator, gan.discriminator
    z = torch.randn(3, TINY.z_dim)
    img, latents = G([z], return_latents=True)
    assert img.shape == (3, 3, 32, 32)
    assert latents.shape == (3, TINY.num_ws, TINY.w_dim) == (3, 8, TINY.w_dim)
    assert D(img).shape == (3, 1)
    # W+ in, same image out as the w it came from
    again, _ = G([latents], input_is_latent=True, randomize_noise=False)
    first, _ = G([z], randomize_noise=False)
    torch.testing.assert_close(again, first)


def test_every_size_builds_and_the_w_plus_length_follows():
    for size, num_ws in [(8, 4), (16, 6), (64, 10), (128, 12)]:
        cfg = dataclasses.replace(TINY, size=size)
        assert cfg.num_ws == num_ws
        G = sg2.Generator(cfg)
        assert G(torch.randn(1, cfg.z_dim))[0].shape == (1, 3, size, size)
    with pytest.raises(FaceweaveError, match="power of two"):
        sg2.StyleGAN2Config(size=48)


def test_constant_noise_is_deterministic_and_random_noise_is_not(gan):
    G = gan.generator
    z = torch.randn(2, TINY.z_dim)
    a, b = G([z], randomize_noise=False)[0], G([z], randomize_noise=False)[0]
    assert torch.equal(a, b)
    with torch.no_grad():                                    # noise strength starts at 0: make it matter
        for m in G.modules():
            if isinstance(m, sg2.NoiseInjection):
                m.strength.fill_(0.5)
    assert not torch.equal(G([z])[0], G([z])[0])
    noise = G.make_noise(2, torch.Generator().manual_seed(1))
    assert [n.shape[-1] for n in noise] == [4, 8, 8, 16, 16, 32, 32]
    torch.testing.assert_close(G([z], noise=noise)[0], G([z], noise=noise)[0])


def test_batch_and_single_agree(gan):
    G = gan.generator.eval()
    z = torch.randn(4, TINY.z_dim)
    batch = G([z], randomize_noise=False)[0]
    single = torch.cat([G([z[i:i + 1]], randomize_noise=False)[0] for i in range(4)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 5, 1, 1), (1, 2, 3, 7)])
def test_upsampling_is_bilinear_and_modulation_norms_are_the_weights_norms(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(sg2._up(x), reference, atol=1e-6, rtol=1e-6)
    conv = sg2.ModulatedConv2d(4, 6, 3, w_dim=8)
    w, feats = torch.randn(2, 8), torch.randn(2, 4, 5, 5)
    style = conv.affine(w)
    per_sample = conv.weight[None] * conv.scale * style[:, None, :, None, None]       # (N, out, in, k, k)
    expected = torch.stack([torch.nn.functional.conv2d(feats[i:i + 1], per_sample[i], padding=1)[0]
                            / per_sample[i].square().sum((1, 2, 3)).add(1e-8).sqrt()[:, None, None]
                            for i in range(2)])
    torch.testing.assert_close(conv(feats, w), expected, atol=1e-5, rtol=1e-5)


def test_sampling_reuses_scaled_weights_until_they_change(gan):
    """Without gradients the scaled weights and demodulation norms are computed once; an
    in-place change of the weights (an optimiser step, load_state_dict) is seen at once, and
    with gradients every call is a fresh, differentiable computation."""
    G = gan.generator.eval()
    w = torch.randn(2, TINY.w_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        first = G([w], randomize_noise=False)[0]
        torch.testing.assert_close(G([w], randomize_noise=False)[0], first, atol=0, rtol=0)
        conv = G.convs[0].conv
        cached = conv._derived_cache[1][0]
        conv.weight.mul_(1.5)
        changed = G([w], randomize_noise=False)[0]
        assert conv._derived_cache[1][0] is not cached
        torch.testing.assert_close(conv._derived_cache[1][0], conv.weight * conv.scale, atol=0, rtol=0)
        fresh = sg2.Generator.from_config(TINY)
        fresh.load_state_dict(G.state_dict())
        torch.testing.assert_close(changed, fresh.eval()([w], randomize_noise=False)[0], atol=0, rtol=0)
    assert not torch.equal(changed, first)
    G([w], randomize_noise=False)[0].square().mean().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert G.style[1].weight.grad is not None and G.to_rgb1.conv.affine.bias.grad is not None
    assert "_derived_cache" not in "".join(G.state_dict())


def test_truncation_pulls_towards_the_centre(gan):
    G = gan.generator
    z = torch.randn(8, TINY.z_dim)
    centre = G.mean_latent(256)
    w = G.get_latent(z)
    _, lat = G([z], truncation=0.5, truncation_latent=centre, return_latents=True)
    torch.testing.assert_close(lat[:, 0], centre + 0.5 * (w - centre))
    _, full = G([z], truncation=0.0, truncation_latent=centre, return_latents=True)
    torch.testing.assert_close(full[:, 3], centre.expand(8, -1))


def test_style_mixing_switches_latents_at_the_index(gan):
    G = gan.generator
    z1, z2 = torch.randn(2, TINY.z_dim), torch.randn(2, TINY.z_dim)
    _, lat = G([z1, z2], inject_index=3, return_latents=True)
    torch.testing.assert_close(lat[:, 2], G.get_latent(z1))
    torch.testing.assert_close(lat[:, 3], G.get_latent(z2))


def test_wrong_latent_shape_is_one_clear_error(gan):
    with pytest.raises(FaceweaveError, match=r"expected \(N, 32\)"):
        gan.generator(torch.randn(2, 7))


def test_r1_and_path_length_penalties(gan):
    real = torch.randn(4, 3, 32, 32, requires_grad=True)
    r1 = sg2.r1_penalty(gan.discriminator(real), real)
    assert r1.item() > 0 and r1.requires_grad
    G = gan.generator
    img, lat = G([torch.randn(4, TINY.z_dim)], return_latents=True)
    penalty, mean, length = sg2.path_length_penalty(img, lat, torch.zeros(()))
    assert length.item() > 0 and 0 < mean.item() < length.item()   # the running mean moves 1 % of the way
    penalty.backward()
    assert G.style[1].weight.grad is not None


def test_training_step_trains_d_and_g_in_one_backward(gan):
    """The discriminator's gradient comes only from its own loss: the generator's loss goes
    through a gradient-free copy (checked by removing the generator's part)."""
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    loss, parts, logits = gan(real, r1_gamma=1.0, pl_weight=2.0, generator=gen)
    assert {"d_loss", "g_loss", "r1", "path_length"} <= set(parts) and logits.shape == (4, 1)
    loss.backward()
    assert all(p.grad is not None for p in gan.generator.parameters() if p.requires_grad)
    d_grad = gan.discriminator.final_linear[1].weight.grad.clone()
    gan.zero_grad()
    G, D = gan.generator, gan.discriminator
    fake, _ = G([torch.randn(4, TINY.z_dim, generator=torch.Generator().manual_seed(0))])
    frozen = {k: v.detach() for k, v in D.named_parameters()}
    sg2.g_nonsaturating_loss(torch.func.functional_call(D, frozen, (fake,))).backward()
    assert D.final_linear[1].weight.grad is None                    # nothing reached D
    assert not torch.equal(d_grad, torch.zeros_like(d_grad))
    assert gan.pl_mean.item() > 0                                   # running state kept in a buffer


def test_augmentation_is_identity_at_p0_and_differentiable():
    x = torch.rand(4, 3, 32, 32, requires_grad=True)
    assert sg2.augment(x, 0.0) is x
    y = sg2.augment(x, 1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_tiny_training_run_saves_resumes_and_reloads(tmp_path):
    from faceweave.train.loop import train
    out = tmp_path / "run"
    train("stylegan2", "tiny", "facesynth:32", out, overrides={"max_steps": 6, "ckpt_every": 3},
          progress=False)
    meta, state = checkpoint.load(out / "last", "stylegan2")
    assert meta["step"] == 6 and meta["config"]["size"] == 32
    model = sg2.StyleGAN2.from_config(meta["config"])
    checkpoint.load_into(model, state)
    assert (out / "best" / "config.json").exists()                # validated at the end: -fd
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(l["kind"] == "val" and l["fd"] > 0 for l in lines)
    assert list((out / "samples").glob("*.png"))
    train("stylegan2", "tiny", None, out, resume=True, overrides={"max_steps": 8}, progress=False)
    assert checkpoint.read_config(out / "last", "stylegan2")["step"] == 8


def test_adaptive_augmentation_moves_p_towards_the_target():
    from faceweave.backends.gan.train import StyleGAN2Task
    model = sg2.StyleGAN2(TINY)
    cfg = {"augment": "ada", "ada_target": 0.6, "ada_kimg": 1}
    StyleGAN2Task._adapt_augmentation(model, torch.ones(100, 1), cfg)       # over-confident on reals
    assert model.aug_p.item() == pytest.approx(0.1)
    StyleGAN2Task._adapt_augmentation(model, -torch.ones(100, 1), cfg)
    assert model.aug_p.item() == pytest.approx(0.0, abs=1e-7)
    StyleGAN2Task._adapt_augmentation(model, torch.ones(4, 1), {**cfg, "augment": "0.25"})
    assert model.aug_p.item() == 0.25
