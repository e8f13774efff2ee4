"""Condition tokens and spatial channels: every subset of modalities, dropout, masking."""
from __future__ import annotations

import pytest
import torch

from faceweave.models.conditioner import MODALITIES, Conditioner, ConditionerConfig, dropout_masks


def make(**kw):
    torch.manual_seed(0)
    return Conditioner(ConditionerConfig(context_dim=32, size=16, patch=4, **kw))


def batch(b=2):
    g = torch.Generator().manual_seed(0)
    attrs = -torch.ones(b, 40)
    attrs[:, 20] = torch.tensor([1.0, 0.0])[:b]            # Male known, other attributes unknown
    return dict(text=torch.randn(b, 6, 384, generator=g), text_mask=torch.ones(b, 6, dtype=torch.bool),
                attributes=attrs, mask=torch.randint(0, 19, (b, 16, 16), generator=g),
                sketch=torch.rand(b, 1, 16, 16, generator=g))


def test_token_counts_and_spatial_channels():
    c = make(mask_mode="both", sketch_mode="both")
    ctx, cmask, spatial = c(**batch())
    grid = (16 // 4) ** 2
    assert ctx.shape == (2, 6 + 40 + 2 * grid, 32) and cmask.shape == ctx.shape[:2]
    assert int(cmask[0].sum()) == 6 + 1 + 2 * grid          # one known attribute
    assert spatial.shape == (2, 20, 16, 16) and c.config.spatial_channels == 20


def test_any_subset_of_modalities():
    c = make()
    full = batch()
    for drop in MODALITIES:
        kw = dict(full)
        if drop == "text":
            kw.pop("text"), kw.pop("text_mask")
        else:
            kw.pop(drop)
        ctx, cmask, spatial = c(**kw)
        assert ctx.shape[0] == 2 and spatial.shape[1] == c.config.spatial_channels


def test_dropped_modality_equals_absent_one():
    c = make(mask_mode="both")
    full = batch()
    keep = {m: torch.tensor([True, False]) if m == "mask" else torch.ones(2, dtype=torch.bool) for m in MODALITIES}
    ctx, cmask, spatial = c(**full, present=keep)
    grid = 16
    mask_tokens = slice(6 + 40, 6 + 40 + grid)
    assert cmask[0, mask_tokens].all() and not cmask[1, mask_tokens].any()
    assert torch.all(spatial[1, :19] == 0) and spatial[0, :19].sum() == 16 * 16


def test_dropout_masks_rates():
    g = torch.Generator().manual_seed(0)
    keep = dropout_masks(4000, {"text": 0.5, "mask": 0.1}, generator=g)
    assert abs(keep["text"].float().mean() - 0.5) < 0.05 and abs(keep["mask"].float().mean() - 0.9) < 0.03
    assert keep["sketch"].all()


def test_bad_config():
    with pytest.raises(ValueError, match="mode"):
        ConditionerConfig(mask_mode="pixels")
    with pytest.raises(ValueError, match="unknown modalities"):
        ConditionerConfig(modalities=("text", "audio"))


def test_pooled_token_leads_and_is_valid_only_with_text_or_attributes():
    c = make(pooled=True)
    full = batch()
    ctx, cmask, _ = c(**full)
    plain_ctx, _, _ = make()(**full)
    assert ctx.shape[1] == plain_ctx.shape[1] + 1 and cmask[:, 0].all()
    none = {m: torch.zeros(2, dtype=torch.bool) for m in MODALITIES}
    ctx0, cmask0, _ = c(**full, present=none)
    assert not cmask0[:, 0].any() and torch.all(ctx0[:, 0] == 0)
    text_only = {**none, "text": torch.ones(2, dtype=torch.bool)}
    attrs_only = {**none, "attributes": torch.ones(2, dtype=torch.bool)}
    t, a, both = (c(**full, present=p)[0][:, 0] for p in (text_only, attrs_only, None))
    assert torch.allclose(t + a, both, atol=1e-5)                # the two parts add
    assert not torch.allclose(t[0], t[1])                         # different prompts, different vectors
    swapped = dict(full, text=full["text"].flip(0))
    assert torch.allclose(c(**swapped, present=text_only)[0][:, 0], t.flip(0), atol=1e-6)
