"""The conditional denoiser: a tiny model learns on a fixed batch, save/load round trip, subsets."""
from __future__ import annotations

import dataclasses

import torch

from faceweave import checkpoint
from faceweave.diffusion.losses import denoising_loss, sample_training_sigmas
from faceweave.models.conditioner import MODALITIES
from faceweave.models.denoiser import ConditionalDenoiser, DenoiserConfig


def tiny():
    torch.manual_seed(0)
    return ConditionalDenoiser(DenoiserConfig(size=16, unet="tiny", patch=4))


def conds(b=4):
    g = torch.Generator().manual_seed(1)
    return dict(text=torch.randn(b, 5, 384, generator=g), text_mask=torch.ones(b, 5, dtype=torch.bool),
                attributes=torch.randint(0, 2, (b, 40), generator=g).float(),
                mask=torch.randint(0, 19, (b, 16, 16), generator=g), sketch=torch.rand(b, 1, 16, 16, generator=g))


def test_training_step_lowers_the_loss_on_a_fixed_batch():
    model = tiny()
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    sigma = sample_training_sigmas(4, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    c = conds()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = denoising_loss(model, x0, sigma, "edm", noise=noise, **c)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_any_subset_and_none():
    model = tiny().eval()
    x = torch.randn(2, 3, 16, 16)
    full = conds(2)
    with torch.no_grad():
        assert model(x, 1.0).shape == x.shape
        for m in MODALITIES:
            keep = {k: torch.tensor([k != m, True]) for k in MODALITIES}
            assert torch.isfinite(model(x, 1.0, **full, present=keep)).all()


def test_save_load_round_trip(tmp_path):
    model = tiny().eval()
    cfg = dataclasses.asdict(model.config)
    checkpoint.save(tmp_path / "ckpt", "diffusion", cfg, model.state_dict())
    meta, state = checkpoint.load(tmp_path / "ckpt", "diffusion")
    again = ConditionalDenoiser(DenoiserConfig(**meta["config"])).eval()
    checkpoint.load_into(again, state)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x, 2.0, **conds(2)), again(x, 2.0, **conds(2)))
