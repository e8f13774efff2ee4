"""Collaborative Diffusion: the dynamic diffuser, its training with frozen uni-modal models,
the pipeline (influence maps, naive average, subsets), the CLI and the bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceweave import Conditions, checkpoint
from faceweave.backends import get_backend
from faceweave.backends.collab import CollabPipeline, fingerprint, influence_picture, relink
from faceweave.backends.diffusion import DiffusionPipeline
from faceweave.cli import main
from faceweave.errors import FaceweaveError
from faceweave.backends.collab.diffuser import DiffuserConfig, DynamicDiffuser, active_collaborators, mix
from faceweave.train import export, train

QUIET = {"progress": False}
FAST = {"num_inference_steps": 3, "progress": False}


@pytest.fixture(scope="module")
def runs(tiny_checkpoint):
    """Two tiny uni-modal models (text, mask) and a diffuser trained on them for a few steps
    (the collab backend's registered tiny recipe, shared with the contract tests)."""
    return tiny_checkpoint("collab").parents[1]


def _mask(seed=0):
    from faceweave.synth import render
    return render(seed, 0, size=32).mask


def test_an_untrained_diffuser_is_the_naive_average_and_weights_are_a_softmax():
    cfg = DiffuserConfig(collaborators=[{"name": "t", "modalities": ["text"]}, {"name": "m", "modalities": ["mask"]},
                                        {"name": "s", "modalities": ["sketch"]}], size=16, width=8, emb_dim=16)
    net = DynamicDiffuser(cfg)
    x, sigma = torch.randn(3, 3, 16, 16), torch.tensor([0.1, 1.0, 10.0])
    cond = {"text": torch.randn(3, 5, 384), "text_mask": torch.ones(3, 5, dtype=torch.bool),
            "mask": torch.randint(0, 19, (3, 16, 16)), "sketch": torch.rand(3, 1, 16, 16)}
    preds = [torch.randn(3, 3, 16, 16) for _ in range(3)]
    assert torch.allclose(net(x, sigma, cond, preds), sum(preds) / 3, atol=1e-6)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    present = {"text": torch.tensor([True, True, False]), "mask": torch.tensor([True, False, False]),
               "sketch": torch.tensor([False, False, False]), "attributes": torch.zeros(3, dtype=torch.bool)}
    active = active_collaborators(cfg, present)
    assert active.tolist() == [[True, True, False], [True, False, False], [False, False, False]]
    w = net.weights(x, sigma, cond, active)
    assert torch.allclose(w.sum(1), torch.ones(3, 16, 16), atol=1e-5)
    assert (w[0, 2] == 0).all() and not torch.allclose(w[0, 0], w[0, 1])      # learned, spatially varying
    assert torch.allclose(w[1, 0], torch.ones(16, 16))                        # the only one present decides
    assert torch.allclose(w[2].sum(0), torch.ones(16, 16), atol=1e-5)        # none present: all of them
    assert torch.allclose(mix(preds, w)[1], preds[0][1], atol=1e-6)


def test_train_writes_samples_influence_and_resumes(runs, tmp_path):
    out = runs / "collab"
    meta = checkpoint.read_config(out / "last", "collab")
    specs = meta["config"]["collaborators"]
    assert [c["name"] for c in specs] == ["text", "mask"] and [c["modalities"] for c in specs] == [["text"], ["mask"]]
    _, state = checkpoint.load(runs / "text" / "last")
    assert specs[0]["fingerprint"] == fingerprint(state)
    assert {p.name for p in (out / "samples").iterdir()} == {"step_0000004.png", "step_0000004_influence.png"}
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [x for x in lines if x["kind"] == "val"][-1]
    assert {"val_loss", "val_loss_average", "val_loss_text", "val_loss_mask"} <= set(val)
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    assert train("collab", "tiny", None, copy, resume=True, overrides={"max_steps": 5}, **QUIET)["step"] == 5


def test_pipeline_influence_batch_identity_and_subsets(runs):
    pipe = CollabPipeline.from_pretrained(runs / "collab" / "last", device="cpu")
    assert pipe.names == ["text", "mask"] and pipe.modalities == ("prompt", "mask")
    mask = _mask()
    out = pipe(prompt="a smiling woman", mask=mask, seeds=[3, 4], return_influence=True, **FAST)
    assert len(out.images) == 2 and out.images[0].shape == (32, 32, 3)
    maps = out.influence[0]
    assert maps.shape == (2, 3, 32, 32) and np.allclose(maps.astype(np.float32).sum(0), 1, atol=2e-3)
    assert out.metadata[0]["mixing"] == "learned" and out.metadata[0]["collaborators"] == ["text", "mask"]
    single = pipe(prompt="a smiling woman", mask=mask, seeds=[4], **FAST).images[0]
    assert np.abs(single.astype(int) - out.images[1].astype(int)).max() <= 1

    average = pipe(prompt="a smiling woman", mask=mask, seeds=[3], mixing="average", return_influence=True, **FAST)
    assert np.allclose(average.influence[0].astype(np.float32), 0.5)
    assert np.abs(average.images[0].astype(int) - out.images[0].astype(int)).max() > 0   # the maps matter

    # prompt only: the mask model sits out and the result is the text model's own
    alone = pipe(prompt="a smiling woman", seeds=[3], return_influence=True, **FAST)
    text_only = DiffusionPipeline.from_pretrained(runs / "text" / "last", device="cpu")
    ref = text_only(prompt="a smiling woman", seeds=[3], sampler="dpmpp_2m", **FAST).images[0]   # collab's default
    assert np.abs(alone.images[0].astype(int) - ref.astype(int)).max() <= 1
    assert (alone.influence[0][1] == 0).all() and (alone.influence[0][0] == 1).all()

    # DDIM's eta: fresh noise per step from each image's seed, batch-independent like the rest
    ddim = [pipe(prompt="a smiling woman", mask=mask, seeds=seeds, sampler="ddim", eta=eta, **FAST)
            for seeds, eta in (([3, 4], 0.0), ([3, 4], 1.0), ([4], 1.0))]
    assert np.abs(ddim[1].images[0].astype(int) - ddim[0].images[0]).mean() > 0.5
    assert np.abs(ddim[2].images[0].astype(int) - ddim[1].images[1]).max() <= 1
    assert ddim[1].metadata[0]["eta"] == 1.0
    with pytest.raises(FaceweaveError, match="eta applies to the ddim sampler"):
        pipe(prompt="a smiling woman", seeds=[3], eta=1.0, **FAST)

    picture = influence_picture(out.influence[0], pipe.names, out.images[0])
    assert picture.ndim == 3 and picture.shape[0] >= 2 * 64 and picture.dtype == np.uint8


def test_backend_and_cli(runs, tmp_path):
    backend = get_backend("collab", model=str(runs / "collab" / "last"), steps=2)
    images = backend.generate([Conditions(prompt="a bald man", mask=_mask(1))], seeds=[0], size=64)
    assert images[0].shape == (64, 64, 3)
    assert backend.describe()["collaborators"] == ["text", "mask"]
    with pytest.raises(FaceweaveError, match="cannot condition on sketch"):
        backend.generate([Conditions(sketch=np.zeros((32, 32), np.uint8))], seeds=[0], size=32)

    from faceweave.io import write_png
    write_png(tmp_path / "mask.png", _mask(2))
    res = CliRunner().invoke(main, ["generate", "--backend", "collab", "--model", str(runs / "collab" / "last"),
                                    "--prompt", "a smiling woman", "--mask", str(tmp_path / "mask.png"),
                                    "--seeds", "0-1", "--steps", "2", "--save-influence", "--quiet",
                                    "--out", str(tmp_path / "gen")])
    assert res.exit_code == 0, res.output
    assert {"000000.png", "000001.png", "grid.png", "meta.json", "influence.png"} <= \
        {p.name for p in (tmp_path / "gen").iterdir()}
    meta = json.loads((tmp_path / "gen" / "meta.json").read_text())
    assert meta["results"][0]["backend"] == "collab"
    # the model's family picks the backend when --backend is left out
    res = CliRunner().invoke(main, ["generate", "--model", str(runs / "collab" / "last"), "--prompt", "a man",
                                    "--seeds", "0", "--steps", "2", "--mixing", "average", "--quiet",
                                    "--out", str(tmp_path / "avg")])
    assert res.exit_code == 0, res.output
    for args, words in [
        (["--backend", "diffusion", "--model", str(runs / "collab" / "last")], "is a 'collab' checkpoint"),
        (["--model", str(runs / "text" / "last"), "--save-influence"],
         "--save-influence applies to --backend collab, not diffusion"),
    ]:
        res = CliRunner().invoke(main, ["generate", "--prompt", "a man", "--steps", "2", "--quiet",
                                        "--out", str(tmp_path / "bad"), *args])
        assert res.exit_code != 0 and words in res.output and "Traceback" not in res.output, res.output


def test_bad_collaborators(runs, tmp_path):
    refs = {"text": str(runs / "text" / "last"), "mask": str(runs / "mask" / "last")}

    def run(out, **over):
        data = f"facesynth:{over.get('size', 32)}"
        return train("collab", "tiny", data, tmp_path / out,
                     overrides={"max_steps": 1, "collaborators": refs, **over}, **QUIET)

    train("parser", "tiny", "facesynth:32", tmp_path / "parser", overrides={"max_steps": 1}, **QUIET)
    train("diffusion", "tiny", "facesynth:48", tmp_path / "mask48",
          overrides={"max_steps": 1, "size": 48, "modalities": ["mask"]}, **QUIET)
    cases = [
        ({"collaborators": {"text": refs["text"], "parser": str(tmp_path / "parser" / "last")}}, "parser"),
        ({"collaborators": {"text": refs["text"], "mask": str(tmp_path / "mask48" / "last")}}, "different images"),
        ({"collaborators": {"text": refs["text"]}}, "two or more collaborators"),
        ({"collaborators": "text=" + refs["text"] + ",mask"}, "NAME=CHECKPOINT"),
        ({"size": 48}, "make 32 px images"),
    ]
    for over, words in cases:
        with pytest.raises(FaceweaveError, match=words):
            run("bad", **over)
    res = CliRunner().invoke(main, ["train", "parser", "--preset", "tiny", "--data", "facesynth:32",
                                    "--out", str(tmp_path / "p2"), "--collaborators", "a=b,c=d"])
    assert res.exit_code != 0 and "for faceweave train collab" in res.output

    # a collaborator retrained after the diffuser was: refused at load, with the fix
    moved = tmp_path / "moved"
    shutil.copytree(runs / "mask", moved / "mask")
    shutil.copytree(runs / "text", moved / "text")
    train("collab", "tiny", "facesynth:32", moved / "collab", overrides={
        "max_steps": 1, "collaborators": {"text": str(moved / "text" / "last"), "mask": str(moved / "mask" / "last")}},
        **QUIET)
    train("diffusion", "tiny", None, moved / "mask", resume=True, overrides={"max_steps": 3}, **QUIET)
    with pytest.raises(FaceweaveError, match="not the model this influence network was trained with"):
        CollabPipeline.from_pretrained(moved / "collab" / "last")

    pipe = CollabPipeline.from_pretrained(runs / "collab" / "last")
    with pytest.raises(FaceweaveError, match="no collaborator reads sketch"):
        pipe(sketch=np.zeros((32, 32), np.uint8), **FAST)
    with pytest.raises(FaceweaveError, match="unknown mixing"):
        pipe(prompt="a man", mixing="max", **FAST)
    with pytest.raises(FaceweaveError, match="no collaborator of that name"):
        pipe(prompt="a man", guidance_scale={"sketch": 2.0}, **FAST)
    average_only = CollabPipeline.from_collaborators(refs)
    with pytest.raises(FaceweaveError, match="no influence network"):
        average_only(prompt="a man", **FAST)
    assert average_only(prompt="a man", mixing="average", **FAST).images[0].shape == (32, 32, 3)


def test_views_of_one_joint_model_are_the_collaborators(tiny_checkpoint, tmp_path, monkeypatch):
    """One model trained with modality dropout serves as several uni-modal collaborators, each
    reading some of its modalities; the weights are loaded, fingerprinted and saved once."""
    from faceweave.backends.collab.train import parse_collaborators
    joint = tiny_checkpoint("diffusion")
    assert set(checkpoint.read_config(joint)["config"]["modalities"]) >= {"text", "attributes", "mask"}
    refs = parse_collaborators(f"text={joint}@text+attributes,mask={joint}@mask")
    train("collab", "tiny", "facesynth:32", tmp_path / "run", overrides={"max_steps": 2, "collaborators": refs},
          **QUIET)
    specs = checkpoint.read_config(tmp_path / "run" / "last", "collab")["config"]["collaborators"]
    assert [c["modalities"] for c in specs] == [["text", "attributes"], ["mask"]]
    assert specs[0]["model"] == specs[1]["model"] == str(joint) and specs[0]["fingerprint"] == specs[1]["fingerprint"]

    pipe = CollabPipeline.from_pretrained(tmp_path / "run" / "last", device="cpu")
    text, mask = pipe.collaborators["text"], pipe.collaborators["mask"]
    assert text.model is mask.model and pipe.modalities == ("prompt", "attributes", "mask")
    # given one modality, the result is the joint model's given that modality alone
    whole = DiffusionPipeline.from_pretrained(joint, device="cpu")
    for given in ({"prompt": "a smiling woman"}, {"mask": _mask(3)}):
        mine = pipe(**given, seeds=[3], **FAST).images[0]
        ref = whole(**given, seeds=[3], sampler="dpmpp_2m", layout_prior=False, **FAST).images[0]
        assert np.abs(mine.astype(int) - ref.astype(int)).max() <= 1, given
    # given both, each view's denoiser is handed only what it reads
    seen = {}
    for name, collaborator in pipe.collaborators.items():
        def spy(conds, *args, _name=name, _orig=collaborator.denoiser, **kwargs):
            seen[_name] = [set(c.given) for c in conds]
            return _orig(conds, *args, **kwargs)
        monkeypatch.setattr(collaborator, "denoiser", spy)
    pipe(prompt="a smiling woman", mask=_mask(3), seeds=[0], **FAST)
    assert seen == {"text": [{"prompt"}], "mask": [{"mask"}]}

    saved = CollabPipeline.from_pretrained(tmp_path / "run" / "last").save_pretrained(tmp_path / "saved")
    assert [p.name for p in (saved / "collaborators").iterdir()] == ["text"]
    again = CollabPipeline.from_pretrained(saved)
    assert again.collaborators["text"].model is again.collaborators["mask"].model
    assert np.array_equal(again(prompt="a man", mask=_mask(1), seeds=[0], **FAST).images[0],
                          pipe(prompt="a man", mask=_mask(1), seeds=[0], **FAST).images[0])

    for spec, words in [(f"text={joint}@text+colour,mask={joint}@mask", "bad collaborator view"),
                        (f"text={joint}@,mask={joint}@mask", "bad collaborator view")]:
        with pytest.raises(FaceweaveError, match=words):
            train("collab", "tiny", "facesynth:32", tmp_path / "bad", overrides={
                "max_steps": 1, "collaborators": parse_collaborators(spec)}, **QUIET)
    runs_text = tiny_checkpoint("collab").parents[1] / "text" / "last"
    with pytest.raises(FaceweaveError, match="cannot read mask; name a subset"):
        train("collab", "tiny", "facesynth:32", tmp_path / "bad2", overrides={
            "max_steps": 1, "collaborators": {"text": f"{runs_text}@mask", "mask": f"{joint}@mask"}}, **QUIET)


def test_export_and_relink(runs, tmp_path):
    """fp16 exports of the collaborators keep their fingerprints (hashed as fp16), so a collab
    checkpoint can be pointed at them (how the bundled collab-64 names its collaborators)."""
    shipped = {m: export(runs / m, tmp_path / f"{m}16", which="best") for m in ("text", "mask")}
    assert fingerprint(checkpoint.load(shipped["text"])[1]) == fingerprint(checkpoint.load(runs / "text" / "best")[1])
    train("collab", "tiny", "facesynth:32", tmp_path / "c", overrides={
        "max_steps": 1, "collaborators": {m: str(runs / m / "best") for m in ("text", "mask")}}, **QUIET)
    collab = export(tmp_path / "c", tmp_path / "c16", which="best")
    relink(collab, {m: str(p) for m, p in shipped.items()})
    assert [c["model"] for c in checkpoint.read_config(collab)["config"]["collaborators"]] == \
        [str(shipped["text"]), str(shipped["mask"])]
    assert CollabPipeline.from_pretrained(collab)(prompt="a man", **FAST).images[0].shape == (32, 32, 3)
    with pytest.raises(FaceweaveError, match="is not the 'mask' collaborator"):
        relink(collab, {"mask": str(shipped["text"])})
    with pytest.raises(FaceweaveError, match="no collaborator named sketch"):
        relink(collab, {"sketch": str(shipped["text"])})


def test_collaborative_editing(runs, tmp_path):
    from faceweave.synth import render
    pipe = CollabPipeline.from_pretrained(runs / "collab" / "last")
    face, other = render(1, 0, size=32), render(2, 0, size=32)
    before = {k: v.clone() for k, v in pipe.collaborators["mask"].model.state_dict().items()}
    kw = {"embed_steps": 3, "finetune_steps": 2, "num_inference_steps": 3, "progress": False}
    out = pipe.edit(face.image, Conditions(prompt="a smiling man", mask=other.mask), source_mask=face.mask, **kw)
    meta = out.metadata[0]
    assert out.images[0].shape == (32, 32, 3) and meta["edited_by"] == ["text", "mask"]
    assert meta["optimise_seconds"] > 0 and 0 < meta["kept_fraction"] < 1
    # outside the changed region (far from its seam) the photo is kept
    from faceweave.backends.diffusion import changed_region
    far = ~changed_region(face.mask, other.mask, 32, dilate=6)
    assert far.any() and np.abs(out.images[0][far].astype(int) - face.image[far].astype(int)).max() <= 1
    # the frozen collaborators are untouched; the same seed gives the same edit
    assert all(torch.equal(before[k], v) for k, v in pipe.collaborators["mask"].model.state_dict().items())
    again = pipe.edit(face.image, Conditions(prompt="a smiling man", mask=other.mask), source_mask=face.mask, **kw)
    assert np.array_equal(again.images[0], out.images[0])
    # a prompt-only edit touches only the text collaborator and returns the photo's size
    big = np.kron(face.image, np.ones((2, 2, 1), np.uint8))
    text = pipe.edit(big, Conditions(prompt="a man with eyeglasses"), **kw)
    assert text.images[0].shape == (64, 64, 3) and text.metadata[0]["edited_by"] == ["text"]
    for bad, words in [({"eta": 2.0}, "eta"), ({"embed_steps": -1}, "embed_steps")]:
        with pytest.raises(FaceweaveError, match=words):
            pipe.edit(face.image, Conditions(prompt="a man"), **{**kw, **bad})
    with pytest.raises(FaceweaveError, match="nothing to edit"):
        pipe.edit(face.image, Conditions(), **kw)
    with pytest.raises(FaceweaveError, match="no collaborator reads sketch"):
        pipe.edit(face.image, Conditions(sketch=face.sketch), **kw)

    from faceweave.io import write_png
    write_png(tmp_path / "photo.png", face.image)
    write_png(tmp_path / "mask.png", other.mask)
    res = CliRunner().invoke(main, ["edit", "--model", str(runs / "collab" / "last"), "--image",
                                    str(tmp_path / "photo.png"), "--prompt", "a smiling man", "--mask",
                                    str(tmp_path / "mask.png"), "--source-mask", str(tmp_path / "mask.png"),
                                    "--embed-steps", "2", "--finetune-steps", "1", "--steps", "2", "--quiet",
                                    "--out", str(tmp_path / "edit")])
    assert res.exit_code == 0, res.output
    assert {"edited.png", "comparison.png", "meta.json"} <= {p.name for p in (tmp_path / "edit").iterdir()}
    assert "optimisation" in res.output


def test_collaborator_dropout_keeps_one_and_changes_the_loss(runs):
    """drop > 0 leaves collaborators out of some samples' mixing, never all of them."""
    from faceweave.data import collate, open_dataset
    from faceweave.train import TASKS, resolve_config
    task = TASKS["collab"]
    cfg = resolve_config("collab", "tiny", {"collaborators": {"text": str(runs / "text" / "last"),
                                                              "mask": str(runs / "mask" / "last")}})
    model = task.init_model(cfg)
    task.setup(cfg, "cpu")
    data = open_dataset("facesynth:32", split="train")
    batch = collate([data[i] for i in range(8)])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    seen = []
    original = type(model).forward

    def spy(self, x, sigma, cond, preds, active=None):
        seen.append(active.clone())
        return original(self, x, sigma, cond, preds, active)

    type(model).forward = spy
    try:
        torch.manual_seed(0)
        task.loss(model, batch, {**cfg, "drop": 0.9})
        task.loss(model, batch, {**cfg, "drop": 0.0})
    finally:
        type(model).forward = original
    assert seen[0].any(1).all() and not seen[0].all()
    assert seen[1].all()
