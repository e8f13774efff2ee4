"""The pipeline contract, run over every registered backend on a tiny checkpoint of its own
(BackendSpec.tiny): a backend gets these tests by registering.

Reproducible (same seed, same image), batch-independent (batch = single; image i depends
only on seed i), strict (an unread modality and an unknown keyword are one-line errors),
self-describing (metadata keys), durable (save_pretrained / load round trip, storage too),
and, for backends that edit photos, local (pixels an edit promises to keep are the photo's).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import faceweave
from faceweave.backends.base import BACKENDS, Pipeline, backend_settings, get_backend
from faceweave.conditions import Conditions
from faceweave.errors import FaceweaveError
from faceweave.io import resize_image
from faceweave.synth import render

PIPELINES = sorted(n for n, s in BACKENDS.items() if s.pipeline and "generate" in s.capabilities)
EDITORS = sorted(n for n, s in BACKENDS.items() if s.pipeline and "edit" in s.capabilities)
METADATA = {"seed", "backend", "model", "given", "conditions", "sec_per_image", "notes"}
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "pairs"


def test_every_registered_pipeline_has_a_tiny_recipe():
    for name in PIPELINES:
        assert BACKENDS[name].tiny, f"backend {name!r} registers no tiny checkpoint recipe for these tests"


@pytest.fixture(scope="module", params=PIPELINES)
def pipe(request, tiny_checkpoint):
    pipe = faceweave.load(str(tiny_checkpoint(request.param)))
    assert isinstance(pipe, Pipeline) and pipe.spec.name == request.param
    return pipe


def _fast(pipe) -> dict:
    """The fewest sampling steps the backend takes, if it samples at all."""
    names = {o.name for o in pipe.options("generate")}
    return {"num_inference_steps": 2} if "num_inference_steps" in names else {}


def _conditions(pipe, index: int = 0) -> Conditions:
    face = render(seed=2_000_000, index=index, size=pipe.size)
    read = set(pipe.modalities)
    return Conditions(prompt=face.captions[0] if "prompt" in read else None,
                      mask=face.mask if "mask" in read else None)


def _images(pipe, conditions, seeds) -> list[np.ndarray]:
    return pipe(conditions=conditions, seeds=seeds, progress=False, **_fast(pipe)).images


def test_same_seed_same_image_other_seed_other_image(pipe):
    c = _conditions(pipe)
    a, b, other = _images(pipe, c, [3]) + _images(pipe, c, [3]) + _images(pipe, c, [4])
    assert a.shape == (pipe.size, pipe.size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, other)


def test_batch_equals_single(pipe):
    c = _conditions(pipe)
    batch = _images(pipe, c, [0, 1, 2])
    for seed, image in zip([0, 1, 2], batch):
        assert np.array_equal(image, _images(pipe, c, [seed])[0])


def test_image_depends_only_on_its_own_seed_and_conditions(pipe):
    c0, c1, c2 = (_conditions(pipe, i) for i in range(3))
    first = _images(pipe, [c0, c1], [5, 7])
    second = _images(pipe, [c2, c1], [9, 7])
    assert np.array_equal(first[1], second[1])


def test_unread_modality_and_unknown_keyword_are_one_line_errors(pipe):
    unread = [m for m in ("prompt", "attributes", "mask", "sketch") if m not in pipe.modalities]
    if unread:
        face = render(seed=2_000_000, index=0, size=pipe.size)
        values = {"prompt": "a man", "attributes": {"Male": 1}, "mask": face.mask, "sketch": face.sketch}
        with pytest.raises(FaceweaveError, match=unread[0]):
            pipe(conditions=Conditions(**{unread[0]: values[unread[0]]}), seeds=[0], progress=False)
    with pytest.raises(FaceweaveError, match="no keyword 'negative_prompt'") as info:
        pipe(prompt="a man", seeds=[0], negative_prompt="a woman")
    assert "\n" not in str(info.value)
    with pytest.raises(FaceweaveError, match="faceweave.Conditions|Conditions"):
        get_backend(pipe.spec.name, model=pipe.meta["path"]).generate(["a man"], [0], 32)


def test_metadata_describes_every_image(pipe):
    c = _conditions(pipe)
    out = pipe(conditions=c, seeds=[2, 8], progress=False, **_fast(pipe))
    assert len(out.metadata) == 2
    for seed, meta in zip([2, 8], out.metadata):
        assert METADATA <= set(meta), METADATA - set(meta)
        assert meta["seed"] == seed and meta["backend"] == pipe.spec.name
        assert meta["conditions"] == c.digest() and isinstance(meta["notes"], list)


def test_save_pretrained_loads_back_to_the_same_images(pipe, tmp_path):
    c = _conditions(pipe)
    before = _images(pipe, c, [0, 1])
    saved = pipe.save_pretrained(tmp_path / "copy")
    again = faceweave.load(str(saved))
    assert type(again) is type(pipe) and again.sampling == pipe.sampling
    for a, b in zip(before, _images(again, c, [0, 1])):
        assert np.array_equal(a, b)
    small = faceweave.load(str(pipe.save_pretrained(tmp_path / "int8", storage="int8")))
    assert small.meta["storage"] == "int8" and _images(small, c, [0])[0].shape == before[0].shape


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_call_is_reproducible_and_batch_independent(name, tiny_checkpoint):
    """The same contract one level up, through Backend.generate (what the CLI, the app and
    `faceweave evaluate` call), for every registered backend, model or not."""
    spec = BACKENDS[name]
    if spec.pipeline:
        backend = get_backend(name, model=str(tiny_checkpoint(name)))
        size = faceweave.load(str(tiny_checkpoint(name))).size
    else:
        backend, size = get_backend(name, **({"bank_size": 64} if "bank_size" in backend_settings(name) else {})), 32
    faces = [render(seed=2_000_000, index=i, size=size) for i in range(3)]
    values = [{"prompt": f.captions[0], "mask": f.mask, "sketch": f.sketch} for f in faces]
    conds = [Conditions(**{k: v for k, v in vals.items() if k in backend.accepts}) for vals in values]
    batch = backend.generate(conds, [4, 5, 4], size)
    assert all(im.shape == (size, size, 3) and im.dtype == np.uint8 for im in batch)
    for cond, seed, image in zip(conds, [4, 5, 4], batch):
        assert np.array_equal(backend.generate([cond], [seed], size)[0], image)
    unread = [m for m in ("prompt", "attributes", "mask", "sketch") if m not in backend.accepts]
    if unread:
        given = {"prompt": "a man", "attributes": {"Male": 1}, "mask": faces[0].mask, "sketch": faces[0].sketch}
        with pytest.raises(FaceweaveError, match=unread[0]):
            backend.generate([Conditions(**{unread[0]: given[unread[0]]})], [0], size)


def _photo_and_masks(size: int):
    """A FaceSynth face, its mask and an edit of that mask confined to the mouth."""
    from faceweave.conditions import CLASS_ID
    face = render(seed=2_000_000, index=4, size=size)
    edited = face.mask.copy()
    mouth = np.isin(edited, [CLASS_ID["mouth"], CLASS_ID["u_lip"], CLASS_ID["l_lip"]])
    edited[mouth] = CLASS_ID["skin"]
    return face.image, face.mask, edited


@pytest.mark.parametrize("name", EDITORS)
def test_an_edit_keeps_the_pixels_it_promises_to_keep(name, tiny_checkpoint):
    pipe = faceweave.load(str(tiny_checkpoint(name)))
    takes = {o.flag for o in pipe.options("edit")}
    if "--source-mask" in takes:                  # a mask edit of the photo's own layout
        photo, own, edited = _photo_and_masks(pipe.size)
        fast = {o.name: 2 for o in pipe.options("edit") if o.flag in ("--steps", "--embed-steps", "--finetune-steps")}
        result = pipe.edit_photo(photo, Conditions(mask=edited), source_mask=own, progress=False, **fast)
    else:                                          # a prompt edit of a real face, pasted back
        if importlib.util.find_spec("facenet_pytorch") is None:   # found, never imported (it needs torchvision)
            pytest.skip("aligning a real photo needs the MTCNN weights of facenet-pytorch (scripts/setup.sh)")
        if not REAL.is_dir():
            pytest.skip(f"{REAL} is absent (the shared real photos)")
        from faceweave.io import read_photo
        # a portrait with room around the face (a CelebA-HQ crop is nearly all face crop)
        photo = np.pad(read_photo(REAL / "maskgan_1.jpg"), ((160, 160), (160, 160), (0, 0)), mode="edge")
        result = pipe.edit_photo(photo, Conditions(prompt="a smiling face"), steps=2, progress=False)
    assert result.kept is not None and result.kept.shape == result.image.shape[:2]
    assert 0.2 < result.kept.mean() < 1.0               # a local edit: most, not all, pixels kept
    reference = resize_image(photo, result.image.shape[:2]) if photo.shape != result.image.shape else photo
    assert np.array_equal(result.image[result.kept], reference[result.kept])
    assert not np.array_equal(result.image, reference)  # and it did change something
