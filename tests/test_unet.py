"""The UNet backbone and EDM preconditioning: shapes, conditioning, masking, batch independence."""
from __future__ import annotations

import pytest
import torch

from faceweave.diffusion.precond import EDMPrecond
from faceweave.models.unet import UNET_PRESETS, UNet, UNetConfig


def tiny(**kw):
    torch.manual_seed(0)
    net = UNet(UNetConfig(**{**UNET_PRESETS["tiny"], "spatial_channels": 2, **kw}))
    # Zero-initialised output layers would make every test trivially pass: randomise them.
    for p in net.parameters():
        if p.dim() > 1 and torch.all(p == 0):
            torch.nn.init.normal_(p, std=0.05)
    return net.eval()


def inputs(b=2, t=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, 16, 16, generator=g)
    ctx = torch.randn(b, t, 32, generator=g)
    mask = torch.ones(b, t, dtype=torch.bool)
    spatial = torch.randn(b, 2, 16, 16, generator=g)
    return x, ctx, mask, spatial


def test_shapes_and_presets():
    net = tiny()
    x, ctx, mask, spatial = inputs()
    out = net(x, torch.zeros(2), ctx, mask, spatial)
    assert out.shape == x.shape
    for name in ("s", "b", "l"):
        assert UNET_PRESETS[name]["mults"]
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(1, 3, 15, 15), torch.zeros(1))


def test_context_and_spatial_change_the_output():
    net = tiny()
    x, ctx, mask, spatial = inputs()
    ref = net(x, torch.zeros(2), ctx, mask, spatial)
    assert not torch.allclose(ref, net(x, torch.zeros(2), ctx + 1, mask, spatial))
    assert not torch.allclose(ref, net(x, torch.zeros(2), ctx, mask, spatial * 0))


def test_masked_tokens_are_ignored():
    net = tiny()
    x, ctx, mask, spatial = inputs()
    mask[:, 3:] = False
    changed = ctx.clone()
    changed[:, 3:] = 100.0
    a = net(x, torch.zeros(2), ctx, mask, spatial)
    b = net(x, torch.zeros(2), changed, mask, spatial)
    assert torch.allclose(a, b, atol=1e-5)
    # A sample with no tokens at all equals running without context.
    none = torch.zeros_like(mask)
    assert torch.allclose(net(x, torch.zeros(2), ctx, none, spatial), net(x, torch.zeros(2), None, None, spatial), atol=1e-5)


def test_batch_vs_single():
    net = tiny()
    x, ctx, mask, spatial = inputs(b=3)
    c = torch.tensor([0.1, -0.3, 0.5])
    batch = net(x, c, ctx, mask, spatial)
    single = net(x[1:2], c[1:2], ctx[1:2], mask[1:2], spatial[1:2])
    assert torch.allclose(batch[1:2], single, atol=1e-5)


def test_edm_precond_limits():
    net = tiny()
    D = EDMPrecond(net)
    x, ctx, mask, spatial = inputs()
    # At tiny noise the denoiser returns (almost) its input: c_skip -> 1, c_out -> 0.
    assert torch.allclose(D(x, 1e-4, context=ctx, context_mask=mask, spatial=spatial), x, atol=1e-3)
    out = D(x * 80, 80.0, context=ctx, context_mask=mask, spatial=spatial)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert float(D.loss_weight(torch.tensor(0.5))) == pytest.approx(8.0)


def test_gradients_reach_every_parameter():
    net = tiny().train()
    x, ctx, mask, spatial = inputs()
    net(x, torch.zeros(2), ctx, mask, spatial).square().mean().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, dead


def test_pooled_token_feeds_the_noise_embedding_not_cross_attention():
    plain = tiny()
    pooled = UNet(UNetConfig(**{**UNET_PRESETS["tiny"], "spatial_channels": 2, "pooled": True})).eval()
    missing = pooled.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("pool.") for k in missing)
    x, ctx, mask, spatial = inputs()
    lead = torch.randn(2, 1, ctx.shape[2])
    with_lead = torch.cat([lead, ctx], 1), torch.cat([torch.ones(2, 1, dtype=torch.bool), mask], 1)
    c = torch.zeros(2)
    # zero-initialised: the pooled model is the plain one, token 0 leaves cross-attention
    assert torch.allclose(pooled(x, c, *with_lead, spatial), plain(x, c, ctx, mask, spatial), atol=1e-6)
    with torch.no_grad():
        pooled.pool[-1].weight.normal_(0, 0.5)
    out = pooled(x, c, *with_lead, spatial)
    other = pooled(x, c, torch.cat([-lead, ctx], 1), with_lead[1], spatial)
    assert not torch.allclose(out, other, atol=1e-4)
    off = torch.cat([torch.zeros(2, 1, dtype=torch.bool), mask], 1)   # an invalid pooled token adds nothing
    assert torch.allclose(pooled(x, c, torch.cat([lead, ctx], 1), off, spatial),
                          pooled(x, c, torch.cat([-lead, ctx], 1), off, spatial), atol=1e-6)
