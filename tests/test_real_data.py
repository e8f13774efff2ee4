"""The celebamask-1k source: fixed split, flips, labels derived from label maps and hair pixels.

The real collection is read from ../shared/data/celebamask-1k (never copied into the
repository); tests that need it build a small folder in the same layout under tmp_path from
a few of its files, and skip with a reason when it is absent.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from faceweave.conditions import CLASS_ID
from faceweave.data import celebamask1k as cm
from faceweave.data import open_dataset
from faceweave.data.unified import hflip, jitter
from faceweave.errors import FaceweaveError

COLLECTION = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celebamask-1k"
needs_collection = pytest.mark.skipif(not (COLLECTION / "masks").is_dir(),
                                      reason=f"the real collection is not at {COLLECTION}")


def test_split_is_fixed_and_about_a_tenth():
    stems = [f"{i:05d}" for i in range(5000)]
    splits = [cm.split_of(s) for s in stems]
    assert splits == [cm.split_of(s) for s in stems]
    share = splits.count("val") / len(splits)
    assert 0.08 < share < 0.12
    assert set(splits) == {"train", "val"}


def test_hflip_mirrors_and_swaps_left_right_classes():
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, 0] = 255
    mask = np.full((4, 6), CLASS_ID["skin"], np.uint8)
    mask[1, 1], mask[1, 4] = CLASS_ID["l_eye"], CLASS_ID["r_brow"]
    sketch = np.zeros((4, 6), np.uint8)
    sketch[0, 0] = 255
    flipped, fmask, fsketch = hflip(image, mask, sketch)
    assert (flipped[:, -1] == 255).all() and (flipped[:, 0] == 0).all()
    assert fmask[1, 4] == CLASS_ID["r_eye"] and fmask[1, 1] == CLASS_ID["l_brow"]
    assert fsketch[0, -1] == 255
    again = hflip(flipped, fmask, fsketch)
    assert (again[0] == image).all() and (again[1] == mask).all() and (again[2] == sketch).all()


def test_jitter_moves_image_and_mask_together_without_new_classes():
    mask = _face_mask(64)
    image = np.zeros((64, 64, 3), np.uint8)
    image[mask == CLASS_ID["hair"]] = 200
    moved_image, moved_mask, moved_sketch = jitter(image, mask, mask * 10, np.random.default_rng(3))
    assert moved_image.shape == image.shape and moved_mask.shape == mask.shape and moved_sketch.shape == mask.shape
    assert set(np.unique(moved_mask)) <= set(np.unique(mask))          # nearest-neighbour: no blended ids
    assert not (moved_mask == mask).all()
    hair = moved_mask == CLASS_ID["hair"]
    assert moved_image[hair].mean() > moved_image[~hair].mean() + 100  # the pixels moved with their labels


def _face_mask(size: int = 256) -> np.ndarray:
    """A crude front face: skin oval, brows, lips, hair on top."""
    mask = np.zeros((size, size), np.uint8)
    mask[60:220, 60:196] = CLASS_ID["skin"]
    mask[20:60, 50:206] = CLASS_ID["hair"]
    mask[100:106, 80:115] = CLASS_ID["r_brow"]
    mask[100:106, 141:176] = CLASS_ID["l_brow"]
    mask[170:176, 100:156] = CLASS_ID["u_lip"]
    mask[178:184, 100:156] = CLASS_ID["l_lip"]
    return mask


def test_mask_attributes_read_parts_off_the_map():
    mask = _face_mask()
    plain = cm.mask_attributes(mask)
    assert plain == {"Eyeglasses": 0, "Wearing_Hat": 0, "Wearing_Earrings": 0, "Wearing_Necklace": 0,
                     "Mouth_Slightly_Open": 0, "Bald": 0, "Bangs": 0}
    mask[110:125, 75:181] = CLASS_ID["eye_g"]
    mask[176:178, 100:156] = CLASS_ID["mouth"]
    mask[150:160, 50:56] = CLASS_ID["ear_r"]
    mask[78:100, 90:166] = CLASS_ID["hair"]              # a fringe down to the brows
    attrs = cm.mask_attributes(mask)
    assert attrs["Eyeglasses"] == attrs["Wearing_Earrings"] == attrs["Bangs"] == 1
    assert attrs["Mouth_Slightly_Open"] == 1
    bald = _face_mask()
    bald[bald == CLASS_ID["hair"]] = CLASS_ID["skin"]
    assert cm.mask_attributes(bald)["Bald"] == 1
    hat = _face_mask()
    hat[0:60, 40:216] = CLASS_ID["hat"]
    attrs = cm.mask_attributes(hat)
    assert attrs["Wearing_Hat"] == 1 and "Bald" not in attrs     # a hat hides baldness


def test_hidden_mouth_and_brows_leave_labels_unknown():
    mask = np.full((64, 64), CLASS_ID["skin"], np.uint8)
    assert "Mouth_Slightly_Open" not in cm.mask_attributes(mask)
    assert "Bangs" not in cm.mask_attributes(mask) and "Bald" not in cm.mask_attributes(mask)


@pytest.mark.parametrize("rgb, colour", [((20, 15, 12), "Black_Hair"), ((200, 200, 196), "Gray_Hair"),
                                         ((220, 180, 110), "Blond_Hair"), ((110, 70, 40), "Brown_Hair")])
def test_hair_colour_from_hair_pixels(rgb, colour):
    mask = _face_mask()
    image = np.full((256, 256, 3), 128, np.uint8)
    image[mask == CLASS_ID["hair"]] = rgb
    labels = cm.hair_colour(image, mask)
    assert labels[colour] == 1 and sum(labels.values()) == 1


def test_too_little_hair_says_nothing_about_its_colour():
    mask = _face_mask()
    mask[mask == CLASS_ID["hair"]] = CLASS_ID["hat"]
    assert cm.hair_colour(np.zeros((256, 256, 3), np.uint8), mask) == {}


def test_bad_specs_and_missing_collection_are_one_line_errors(tmp_path):
    with pytest.raises(FaceweaveError, match="cannot read 'n=3'"):
        open_dataset("celebamask1k:64:n=3")
    with pytest.raises(FaceweaveError, match="celebamask-1k not found") as err:
        cm.find_root(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(FaceweaveError, match="asks for 64 px but 32 px"):
        open_dataset("celebamask1k:64", size=32)


@pytest.fixture
def small_collection(tmp_path, monkeypatch) -> Path:
    """Twelve labelled photos (two of them in "val") and two unlabelled ones, in the collection's layout."""
    if not (COLLECTION / "masks").is_dir():
        pytest.skip(f"the real collection is not at {COLLECTION}")
    root = tmp_path / "cm"
    for sub in ("images", "masks", "photos"):
        (root / sub).mkdir(parents=True)
    for path in sorted((COLLECTION / "images").iterdir())[:12]:
        shutil.copy(path, root / "images" / path.name)
        shutil.copy(COLLECTION / "masks" / f"{path.stem}.png", root / "masks" / f"{path.stem}.png")
    for path in sorted((COLLECTION / "photos").iterdir())[:2]:
        shutil.copy(path, root / "photos" / path.name)
    monkeypatch.setenv("FACEWEAVE_CACHE", str(tmp_path / "cache"))
    return root


def test_spec_converts_once_and_splits_by_stem(small_collection):
    spec = f"celebamask1k:32:root={small_collection}"
    train, val = open_dataset(spec, split="train"), open_dataset(spec, split="val")
    stems = sorted(p.stem for p in (small_collection / "images").iterdir())
    expect_val = [s for s in stems if cm.split_of(s) == "val"]
    assert sorted(r["file"][:-4] for r in val.records) == expect_val
    assert len(train) + len(val) == len(stems)
    assert train.flip and not val.flip and not train.jitter
    assert open_dataset(spec + ":jitter", split="train").jitter and not open_dataset(spec + ":jitter", split="val").jitter
    sample = train[0]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (32, 32)
    assert sample["captions"], "captions are written from the derived attributes"
    record = train.records[0]
    assert {"Eyeglasses", "Wearing_Hat", "Wearing_Earrings"} <= set(record["attributes"])
    cached = sorted((small_collection.parent / "cache").glob("celebamask1k-labelled-*"))
    assert len(cached) == 1
    open_dataset(spec, split="train")                   # a second open reuses the conversion
    assert sorted((small_collection.parent / "cache").glob("celebamask1k-labelled-*")) == cached


def test_photos_spec_holds_every_photo_without_masks(small_collection):
    data = open_dataset(f"celebamask1k:32:root={small_collection}:photos")
    assert len(data) == 14 and not data.has_mask
    assert "mask" not in data[0]


@needs_collection
def test_derived_labels_on_hand_made_maps_are_plausible():
    """Shares over the first 200 hand-made maps sit in CelebA's ranges (earrings ~19 %,
    eyeglasses ~5 %, mouth slightly open ~48 %), not at 0 or 1."""
    from faceweave import io

    rows = [cm.mask_attributes(io.read_mask(p)) for p in sorted((COLLECTION / "masks").iterdir())[:200]]
    share = {k: np.mean([r[k] for r in rows if k in r]) for k in ("Eyeglasses", "Wearing_Earrings",
                                                                    "Mouth_Slightly_Open", "Wearing_Hat")}
    assert 0.01 < share["Eyeglasses"] < 0.15
    assert 0.08 < share["Wearing_Earrings"] < 0.4
    assert 0.3 < share["Mouth_Slightly_Open"] < 0.7
    assert 0.0 < share["Wearing_Hat"] < 0.15


def test_pseudo_labels_cover_training_photos_and_leave_validation_hand_made(small_collection, tmp_path):
    import json
    import subprocess
    import sys
    from faceweave import io
    photos = sorted((COLLECTION / "photos").iterdir())
    val_photo = next(p for p in photos if cm.split_of(p.stem) == "val")
    shutil.copy(val_photo, small_collection / "photos" / val_photo.name)
    script = Path(__file__).resolve().parents[1] / "scripts" / "pseudo_label.py"
    out = tmp_path / "pseudo"
    run = lambda: subprocess.run([sys.executable, str(script), "--root", str(small_collection), "--out", str(out),  # noqa: E731
                                  "--parser", "parser-real-64"], capture_output=True, text=True)
    done = run()
    assert done.returncode == 0, done.stderr
    train_photos = sorted(p.stem for p in (small_collection / "photos").iterdir() if cm.split_of(p.stem) == "train")
    record = json.loads((out / "pseudo.json").read_text())
    assert record["pseudo_labelled"] == train_photos and record["hand_labelled"] == 12 and record["flip_average"]
    assert (out / "masks" / f"{val_photo.stem}.png").exists() is False
    assert not (out / "images" / val_photo.name).exists()
    for stem in train_photos:
        mask = io.read_mask(out / "masks" / f"{stem}.png")
        assert mask.shape == (256, 256) and mask.max() < 19 and len(np.unique(mask)) >= 4
    hand = sorted((small_collection / "masks").iterdir())[0]
    assert np.array_equal(io.read_mask(out / "masks" / hand.name), io.read_mask(hand))
    spec = f"celebamask1k:32:root={out}"
    original = open_dataset(f"celebamask1k:32:root={small_collection}", split="val")
    assert [r["file"] for r in open_dataset(spec, split="val").records] == [r["file"] for r in original.records]
    assert len(open_dataset(spec, split="train")) == 12 - len(original) + len(train_photos)
    assert run().returncode == 0                                 # an earlier labelling is replaced
    (tmp_path / "other").mkdir()
    refused = subprocess.run([sys.executable, str(script), "--root", str(small_collection), "--out",
                              str(tmp_path / "other")], capture_output=True, text=True)
    assert refused.returncode != 0 and "is not an earlier pseudo-labelling" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_model_trained_on_real_photos_reads_photos_with_the_real_parser(small_collection, tmp_path):
    """The loop records the real-face parser as the model's instrument (config.json), so its
    photo edits parse the photo's own mask with it, not with the FaceSynth default."""
    from faceweave import checkpoint
    from faceweave.backends.base import photo_instrument
    from faceweave.data.unified import photo_instruments
    from faceweave.train.loop import train

    assert photo_instruments("celebamask1k:64") == {"parser": "parser-real-64"}
    assert photo_instruments("facesynth:64") == {}
    train("diffusion", "tiny", f"celebamask1k:32:root={small_collection}", tmp_path / "run", progress=False,
          overrides={"max_steps": 1, "val_n": 2})
    meta = checkpoint.read_config(tmp_path / "run" / "last")
    assert meta["instruments"] == {"parser": "parser-real-64"}
    assert Path(photo_instrument(meta, "parser").path).name == "parser-real-64"
