"""MM2Latent's parts: the mask and sketch autoencoders whose codes the mapper reads, and the
mapper from (text, mask code, sketch code) to W+ with any subset of them missing."""
from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from faceweave import checkpoint
from faceweave.errors import FaceweaveError
from faceweave.backends.gan.mapper import (
    PRESETS,
    Mapper,
    MapperConfig,
    mapper_loss,
    modality_dropout,
)
from faceweave.backends.gan.modality_ae import (
    MASK_PRESETS,
    SKETCH_PRESETS,
    MaskAutoencoder,
    ModalityAEConfig,
    SketchAutoencoder,
    build_autoencoder,
    mask_ae_loss,
    mask_ae_scores,
    sketch_ae_loss,
    sketch_ae_scores,
)
from faceweave.synth import render


@pytest.fixture(scope="module")
def faces32():
    """Four FaceSynth masks (N, 32, 32) and sketches (N, 1, 32, 32) in [0, 1], lines = 1."""
    samples = [render(0, i, 32, captions=0) for i in range(4)]
    masks = torch.from_numpy(np.stack([s.mask for s in samples])).long()
    sketches = torch.from_numpy(np.stack([s.sketch for s in samples])).float()[:, None] / 255.0
    return masks, sketches


# --- autoencoders -------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 128])
def test_autoencoder_shapes(size):
    torch.manual_seed(0)
    mask_ae = build_autoencoder(MASK_PRESETS["s"])
    sketch_ae = build_autoencoder(SKETCH_PRESETS["s"])
    assert isinstance(mask_ae, MaskAutoencoder) and isinstance(sketch_ae, SketchAutoencoder)
    mask = torch.randint(0, 19, (2, size, size))
    sketch = (torch.rand(2, 1, size, size) > 0.9).float()
    side = size // 8
    code = mask_ae.encode(mask)
    assert code.shape == (2, 8, side, side) == (2, *mask_ae.code_shape(size))
    assert code.abs().max() < 1                                    # tanh bottleneck
    assert mask_ae.decode(code).shape == mask_ae(mask).shape == (2, 19, size, size)
    assert sketch_ae.encode(sketch).shape == (2, 8, side, side)
    assert sketch_ae(sketch).shape == (2, 1, size, size)


def test_autoencoder_errors_and_config_round_trip():
    ae = MaskAutoencoder.from_config(MASK_PRESETS["tiny"])
    with pytest.raises(FaceweaveError, match=r"\(N, H, W\) int64"):
        ae(torch.zeros(1, 1, 32, 32, dtype=torch.long))
    with pytest.raises(FaceweaveError, match="divisible by 8"):
        ae(torch.zeros(1, 36, 36, dtype=torch.long))
    with pytest.raises(FaceweaveError, match="0..18"):
        ae(torch.full((1, 32, 32), 19, dtype=torch.long))
    with pytest.raises(FaceweaveError, match=r"\(N, 1, H, W\) float"):
        SketchAutoencoder.from_config(SKETCH_PRESETS["tiny"])(torch.zeros(1, 32, 32))
    with pytest.raises(FaceweaveError, match="needs a 'sketch' config"):
        SketchAutoencoder.from_config(MASK_PRESETS["tiny"])
    with pytest.raises(FaceweaveError, match="unknown autoencoder kind"):
        ModalityAEConfig(kind="photo")
    # config.json turns tuples into lists; the rebuilt network has the same tensors
    cfg = json.loads(json.dumps(dataclasses.asdict(SKETCH_PRESETS["tiny"])))
    again = build_autoencoder(cfg)
    assert isinstance(again, SketchAutoencoder) and again.config == SKETCH_PRESETS["tiny"]


def _overfit(model, data, loss_fn, steps=100, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss, _ = loss_fn(model, data)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return first, float(loss_fn(model, data)[0])


def test_mask_autoencoder_overfits_a_tiny_batch(faces32):
    masks, _ = faces32
    torch.manual_seed(0)
    ae = build_autoencoder(MASK_PRESETS["tiny"])
    before = mask_ae_scores(ae, masks)
    first, last = _overfit(ae, masks, mask_ae_loss)
    after = mask_ae_scores(ae, masks)
    assert last < first / 8, (first, last)
    assert after["miou"] > before["miou"] + 0.3 and after["pixel_acc"] > 0.85, (before, after)


def test_sketch_autoencoder_overfits_a_tiny_batch(faces32):
    _, sketches = faces32
    torch.manual_seed(0)
    ae = build_autoencoder(SKETCH_PRESETS["tiny"])
    before = sketch_ae_scores(ae, sketches)
    first, last = _overfit(ae, sketches, sketch_ae_loss)
    after = sketch_ae_scores(ae, sketches)
    assert last < first / 3, (first, last)
    assert after["fscore"] > 0.9 and after["iou"] > before["iou"] + 0.3, (before, after)
    _, parts = sketch_ae_loss(ae, sketches)
    assert parts["pos_weight"] > 1                                 # lines are the minority
    assert sketch_ae_loss(ae, sketches, pos_weight=1.0)[1]["pos_weight"] == 1.0


# --- mapper -------------------------------------------------------------------------------

def _tiny_mapper(seed=0, wplus=True):
    torch.manual_seed(seed)
    mapper = Mapper.from_config(dataclasses.replace(PRESETS["tiny"], wplus=wplus))
    mapper.set_w_avg(torch.randn(mapper.config.w_dim))
    return mapper


def _inputs(cfg: MapperConfig, n: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n, cfg.text_dim, generator=g), dim=1)
    side = (cfg.code_size, cfg.code_size)
    return {"text": text,
            "mask_code": torch.tanh(torch.randn(n, cfg.mask_code_channels, *side, generator=g)),
            "sketch_code": torch.tanh(torch.randn(n, cfg.sketch_code_channels, *side, generator=g))}


def _randomise_head(mapper: Mapper) -> None:
    """The head starts at zero (every input -> w_avg); the tests that compare outputs need it not to."""
    torch.nn.init.normal_(mapper.head.weight, std=0.3)
    torch.nn.init.normal_(mapper.head.bias, std=0.3)


@pytest.mark.parametrize("wplus", [True, False])
def test_mapper_shapes_for_every_subset(wplus):
    mapper = _tiny_mapper(wplus=wplus)
    cfg = mapper.config
    full = _inputs(cfg, 3)
    keys = list(full)
    for subset in itertools.chain.from_iterable(itertools.combinations(keys, k) for k in range(4)):
        given = {k: full[k] for k in subset}
        present = None if subset else torch.zeros(3, 3, dtype=torch.bool)
        w = mapper(**given, present=present)
        assert w.shape == (3, cfg.num_ws, cfg.w_dim) and torch.isfinite(w).all(), subset
        # zero head: the untrained mapper answers the generator's average latent
        assert torch.equal(w, mapper.w_avg.expand_as(w)), subset
    _randomise_head(mapper)
    w = mapper(**full)
    assert wplus == (not torch.allclose(w[:, 0], w[:, 1]))         # W repeats one w on every layer


def test_missing_modalities_do_not_leak():
    mapper = _tiny_mapper().eval()
    _randomise_head(mapper)
    cfg = mapper.config
    x = _inputs(cfg, 4)
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    out = mapper(**x, present=present)
    # other values, even NaN, where a row says "absent" change nothing, bit for bit
    y = {k: v.clone() for k, v in x.items()}
    y["mask_code"][1] = torch.nan
    y["text"][2:] = 5.0
    y["sketch_code"][2:] = torch.randn_like(y["sketch_code"][2:])
    y["mask_code"][3] = 1.0
    assert torch.equal(mapper(**y, present=present), out)
    # leaving an input out is the same as passing it flagged absent in every row
    assert torch.equal(mapper(text=x["text"], sketch_code=x["sketch_code"]),
                       mapper(**x, present=torch.tensor([[1, 0, 1]] * 4, dtype=torch.bool)))
    # all missing: one learned constant, w_avg plus a fixed offset, whatever the inputs held
    # (another batch size may round differently, hence close rather than equal)
    torch.testing.assert_close(out[3], mapper(present=torch.zeros(1, 3, dtype=torch.bool))[0], rtol=1e-5, atol=1e-5)
    # and the present ones do matter
    z = {k: v.clone() for k, v in x.items()}
    z["mask_code"][2] = -z["mask_code"][2]
    assert not torch.allclose(mapper(**z, present=present)[2], out[2])


def test_mapper_batch_vs_single():
    mapper = _tiny_mapper().eval()
    _randomise_head(mapper)
    x = _inputs(mapper.config, 5)
    g = torch.Generator().manual_seed(3)
    present = torch.rand(5, 3, generator=g) > 0.4
    batch = mapper(**x, present=present)
    for i in range(5):
        single = mapper(**{k: v[i:i + 1] for k, v in x.items()}, present=present[i:i + 1])
        torch.testing.assert_close(single[0], batch[i], rtol=1e-5, atol=1e-5)


def test_mapper_errors():
    mapper = _tiny_mapper()
    x = _inputs(mapper.config, 2)
    with pytest.raises(FaceweaveError, match=r"mask_code must have shape \(2, 4, 4, 4\)"):
        mapper(text=x["text"], mask_code=torch.zeros(2, 4, 8, 8))
    with pytest.raises(FaceweaveError, match="no sketch_code was passed"):
        mapper(text=x["text"], present=torch.ones(2, 3, dtype=torch.bool).index_fill(1, torch.tensor([1]), False))
    with pytest.raises(FaceweaveError, match="batch size"):
        mapper(text=x["text"], mask_code=x["mask_code"][:1])
    with pytest.raises(FaceweaveError, match="at least one input"):
        mapper()
    with pytest.raises(FaceweaveError, match=r"w_avg must have shape \(32,\)"):
        mapper.set_w_avg(torch.zeros(16))
    with pytest.raises(FaceweaveError, match="divisible by 2"):
        MapperConfig(code_size=5, conv_channels=(8, 16))
    with pytest.raises(FaceweaveError, match="unknown mapper inputs"):
        mapper_loss(mapper, {"mask": x["mask_code"]}, torch.zeros(2, 32))


def test_mapper_overfits_latent_pairs():
    mapper = _tiny_mapper()
    cfg = mapper.config
    n = 16
    x = _inputs(cfg, n)
    g = torch.Generator().manual_seed(5)
    present = torch.rand(n, 3, generator=g) > 0.3
    w_target = mapper.w_avg + torch.randn(n, cfg.w_dim, generator=g)          # W targets, broadcast to W+
    opt = torch.optim.Adam(mapper.parameters(), lr=3e-3)
    with torch.no_grad():
        first, parts0 = mapper_loss(mapper, x, w_target, present)
    assert parts0["latent_mse"] == pytest.approx(parts0["baseline_mse"])     # the zero head starts at w_avg
    for _ in range(200):
        loss, _ = mapper_loss(mapper, x, w_target, present)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last, _ = mapper_loss(mapper, x, w_target, present)
    assert float(last) < float(first) / 10, (float(first), float(last))
    # W+ targets are accepted as they are
    with torch.no_grad():
        loss, _ = mapper_loss(mapper, x, w_target[:, None].expand(n, cfg.num_ws, cfg.w_dim), present)
    assert float(loss) == pytest.approx(float(last), rel=1e-5)


def test_mapper_checkpoint_round_trip(tmp_path):
    mapper = _tiny_mapper()
    _randomise_head(mapper)
    path = checkpoint.save(tmp_path / "m", "mapper", dataclasses.asdict(mapper.config), mapper.state_dict())
    meta, state = checkpoint.load(path, "mapper")
    again = Mapper.from_config(meta["config"])
    checkpoint.load_into(again, state)
    assert torch.equal(again.w_avg, mapper.w_avg)                # the generator's w_avg travels with it
    x = _inputs(mapper.config, 2)
    assert torch.equal(again(**x), mapper(**x))


def test_modality_dropout_statistics():
    n = 20_000
    full = torch.ones(n, 3, dtype=torch.bool)
    out = modality_dropout(full, 0.3, torch.Generator().manual_seed(0))
    assert out.dtype == torch.bool and out.shape == full.shape
    assert torch.allclose(out.float().mean(0), torch.full((3,), 0.7), atol=0.015)
    # independent per modality: all three dropped with probability p ** 3
    assert (~out).all(1).float().mean() == pytest.approx(0.3 ** 3, abs=0.006)
    both = (~out[:, 0] & ~out[:, 1]).float().mean()
    assert both == pytest.approx(0.09, abs=0.01)
    # p_all wipes whole rows on top
    wiped = modality_dropout(full, 0.3, torch.Generator().manual_seed(1), p_all=0.1)
    assert (~wiped).all(1).float().mean() == pytest.approx(0.1 + 0.9 * 0.3 ** 3, abs=0.01)
    # absent stays absent; p = 0 changes nothing; the generator makes it repeatable
    some = torch.rand(n, 3, generator=torch.Generator().manual_seed(2)) > 0.5
    assert not (modality_dropout(some, 0.3) & ~some).any()
    assert torch.equal(modality_dropout(some, 0.0), some)
    assert not modality_dropout(some, 1.0).any()
    assert torch.equal(modality_dropout(some, 0.5, torch.Generator().manual_seed(7)),
                       modality_dropout(some, 0.5, torch.Generator().manual_seed(7)))
    with pytest.raises(FaceweaveError, match=r"\[0, 1\]"):
        modality_dropout(some, 1.5)
