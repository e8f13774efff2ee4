"""faceweave.data: the unified folder, the layout converters and the datasets.

Every fixture is built in tmp_path: tiny photos and per-part masks made with numpy, in the
real layouts (CelebAMask-HQ, MM-CelebA-HQ, a plain folder). One fixture splits a real
CelebAMask-HQ label map from ../shared/data/real into per-part files and checks the merge
gives it back; it is skipped when that folder is absent.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceweave import io
from faceweave.conditions import CELEBA_ATTRIBUTES, CELEBAMASK_PALETTE, CLASS_ID, NUM_CLASSES
from faceweave.data import (SPLIT_SEEDS, FaceSynthDataset, UnifiedDataset, UnifiedWriter,
                            attribute_vector, collate, open_dataset, prepare, synthesize)
from faceweave.data import celebamask_hq, mm_celeba_hq
from faceweave.errors import FaceweaveError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

# The merge order of CelebAMask-HQ's g_mask.py, written out here independently of CLASSES.
OFFICIAL_ORDER = ["skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
                  "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth"]


# ------------------------------------------------------------------------------ helpers

def photo(size: int, seed: int) -> np.ndarray:
    """A smooth random RGB picture with a dark disc, so edges exist for sketches."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC)).copy()
    yy, xx = np.mgrid[:size, :size]
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] //= 3
    return img


def face_mask(size: int, shift: int = 0) -> np.ndarray:
    """A label map with a few classes, one per pixel."""
    mask = np.zeros((size, size), np.uint8)
    s = size // 8
    mask[s:7 * s, 2 * s:6 * s] = CLASS_ID["skin"]
    mask[0:2 * s, s:7 * s] = CLASS_ID["hair"]
    mask[3 * s:4 * s, 3 * s + shift:4 * s + shift] = CLASS_ID["nose"]
    mask[5 * s:6 * s, 3 * s:5 * s] = CLASS_ID["u_lip"]
    mask[7 * s:, :] = CLASS_ID["cloth"]
    return mask


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def write_attribute_file(path: Path, rows: dict[str, dict[str, int]], names=CELEBA_ATTRIBUTES) -> None:
    lines = [str(len(rows)), " ".join(names)]
    for file, values in rows.items():
        lines.append(file + "  " + " ".join("1" if values.get(n) else "-1" for n in names))
    path.write_text("\n".join(lines) + "\n")


def split_into_parts(mask: np.ndarray, parts_root: Path, image_id: int) -> None:
    """A label map -> CelebAMask-HQ per-part binary files (0/255), in the official place."""
    for part in OFFICIAL_ORDER:
        region = mask == CLASS_ID[part]
        if region.any():
            save(celebamask_hq.part_mask_path(parts_root, image_id, part), region.astype(np.uint8) * 255)


def read_unified(out: Path) -> dict[str, dict]:
    lines = (out / "captions.jsonl").read_text().splitlines()
    return {r["file"]: r for r in map(json.loads, lines)}


# ------------------------------------------------------------------------------ CelebAMask-HQ

@pytest.fixture
def celebamask(tmp_path) -> tuple[Path, dict[int, np.ndarray]]:
    """Three images (ids 0, 1, 2001: folders 0 and 1) with overlapping part masks, 128 px
    photos and 64 px masks (the real data set pairs 1024 px photos with 512 px masks)."""
    src = tmp_path / "CelebAMask-HQ"
    parts_root = src / "CelebAMask-HQ-mask-anno"
    expected = {}
    for image_id in (0, 1, 2001):
        save(src / "CelebA-HQ-img" / f"{image_id}.jpg", photo(128, image_id))
        rng = np.random.default_rng(image_id)
        label = np.zeros((64, 64), np.uint8)
        for part in OFFICIAL_ORDER:  # random overlapping rectangles, painted in official order
            if part in ("hat", "eye_g") and image_id == 1:
                continue  # absent parts have no file
            y, x = rng.integers(0, 48, 2)
            h, w = rng.integers(8, 32, 2)
            region = np.zeros((64, 64), bool)
            region[y:y + h, x:x + w] = True
            save(celebamask_hq.part_mask_path(parts_root, image_id, part), region.astype(np.uint8) * 255)
            label[region] = OFFICIAL_ORDER.index(part) + 1
        expected[image_id] = label
    names = list(CELEBA_ATTRIBUTES)[::-1]  # any column order works: names are read from line 2
    write_attribute_file(src / "CelebAMask-HQ-attribute-anno.txt", {
        "0.jpg": {"Smiling": 1, "Male": 1}, "1.jpg": {"Eyeglasses": 1}, "2001.jpg": {}}, names)
    (src / "CelebA-HQ-to-CelebA-mapping.txt").write_text(
        "idx         orig_idx    orig_file\n0 100 101.jpg\n1 170000 170001.jpg\n2001 190000 190001.jpg\n")
    return src, expected


def test_celebamask_merge_follows_official_overwrite_order(celebamask):
    src, expected = celebamask
    index = celebamask_hq.index_part_masks(src / "CelebAMask-HQ-mask-anno")
    assert sorted(index) == [0, 1, 2001]
    for image_id, label in expected.items():
        np.testing.assert_array_equal(celebamask_hq.merge_part_masks(index[image_id]), label)


def test_prepare_celebamask_hq(celebamask, tmp_path):
    src, expected = celebamask
    out = tmp_path / "unified"
    assert prepare("celebamask-hq", src, out, progress=False) == 3
    records = read_unified(out)
    assert list(records) == ["0.png", "1.png", "2001.png"]
    for image_id, label in expected.items():  # no --size: the smaller of photo and mask (64 px)
        np.testing.assert_array_equal(io.read_mask(out / "masks" / f"{image_id}.png"), label)
        assert io.read_image(out / "images" / f"{image_id}.png").shape == (64, 64, 3)
    assert records["0.png"]["attributes"]["Smiling"] == 1 and records["0.png"]["attributes"]["Male"] == 1
    assert records["1.png"]["attributes"]["Smiling"] == 0
    assert records["1.png"]["attributes"]["Eyeglasses"] == 1
    assert len(records["0.png"]["attributes"]) == 40
    assert all(records[f]["captions"] and all(isinstance(c, str) for c in records[f]["captions"])
               for f in records)  # generated from the attributes: the layout has no text
    assert [records[f]["split"] for f in records] == ["train", "val", "test"]
    info = json.loads((out / "info.json").read_text())
    assert info["count"] == 3 and info["size"] == 64 and info["source"] == "celebamask-hq"
    assert "created_by" in info


def test_prepare_celebamask_hq_size_and_limit(celebamask, tmp_path):
    src, expected = celebamask
    out = tmp_path / "small"
    assert prepare("celebamask_hq", src, out, size=32, limit=2, progress=False) == 2
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["0.png", "1.png"]
    np.testing.assert_array_equal(io.read_mask(out / "masks" / "1.png"), io.resize_mask(expected[1], 32))


def test_real_label_map_survives_split_and_merge(tmp_path):
    if not (REAL / "pairs" / "maskgan_0_mask.png").is_file():
        pytest.skip(f"real CelebAMask-HQ samples not found at {REAL}")
    original = io.read_mask(REAL / "pairs" / "maskgan_0_mask.png")
    src = tmp_path / "CelebAMask-HQ"
    (src / "CelebA-HQ-img").mkdir(parents=True)
    (src / "CelebA-HQ-img" / "0.jpg").write_bytes((REAL / "pairs" / "maskgan_0.jpg").read_bytes())
    split_into_parts(original, src / "CelebAMask-HQ-mask-anno", 0)

    parts = celebamask_hq.index_part_masks(src / "CelebAMask-HQ-mask-anno")[0]
    np.testing.assert_array_equal(celebamask_hq.merge_part_masks(parts), original)

    out = tmp_path / "unified"
    assert prepare("celebamask-hq", src, out, progress=False) == 1  # 256 px photo, 512 px mask
    np.testing.assert_array_equal(io.read_mask(out / "masks" / "0.png"), io.resize_mask(original, 256))
    assert read_unified(out)["0.png"]["attributes"] == {}  # no attribute file: unknown
    sample = UnifiedDataset(out)[0]
    assert sample["image"].shape == (3, 256, 256) and (sample["attributes"] == -1).all()


def test_celebamask_layout_errors(celebamask, tmp_path):
    src, _ = celebamask
    with pytest.raises(FaceweaveError, match=r"CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/.*found"):
        prepare("celebamask-hq", src / "CelebA-HQ-img", tmp_path / "o1", progress=False)
    bad = celebamask_hq.part_mask_path(src / "CelebAMask-HQ-mask-anno", 1, "skin")
    bad.write_bytes(b"not a png")
    with pytest.raises(FaceweaveError, match="00001_skin.png"):
        prepare("celebamask-hq", src, tmp_path / "o2", progress=False)
    assert not (tmp_path / "o2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o2")]


def test_attribute_file_errors(tmp_path):
    path = tmp_path / "attr.txt"
    write_attribute_file(path, {"0.jpg": {}})
    path.write_text(path.read_text().replace(" -1 ", " 2 ", 1))
    with pytest.raises(FaceweaveError, match=r"line 3.*values are 1 or -1"):
        celebamask_hq.read_attribute_file(path)
    path.write_text("1\nSmiling Grumpy\n0.jpg 1 1\n")
    with pytest.raises(FaceweaveError, match=r"line 2.*Grumpy"):
        celebamask_hq.read_attribute_file(path)


# ------------------------------------------------------------------------------ MM-CelebA-HQ

@pytest.fixture
def mm_celeba(tmp_path) -> Path:
    """The release's layout: image/images, text/celeba-caption, sketch/sketch, split pickles,
    colour-coded label maps and the attribute file."""
    src = tmp_path / "multi-modal-celeba"
    for i in range(3):
        save(src / "image" / "images" / f"{i}.jpg", photo(64, 10 + i))
        save(src / "label" / f"{i}.png", CELEBAMASK_PALETTE[face_mask(64, shift=i)])
        caption_lines = [f"This person {i} has caption number {k}." for k in range(10)]
        (src / "text" / "celeba-caption").mkdir(parents=True, exist_ok=True)
        (src / "text" / "celeba-caption" / f"{i}.txt").write_text("\n".join(caption_lines) + "\n")
    drawing = np.full((64, 64), 255, np.uint8)
    drawing[20:22, 10:50] = 0  # black line on white, as the release's sketches are
    save(src / "sketch" / "sketch" / "1_edges.jpg", drawing)
    for split, names in (("train", ["0", "1"]), ("test", ["2"])):
        (src / split).mkdir()
        (src / split / "filenames.pickle").write_bytes(pickle.dumps(names, protocol=2))
    write_attribute_file(src / "CelebAMask-HQ-attribute-anno.txt",
                         {"0.jpg": {"Smiling": 1}, "1.jpg": {}, "2.jpg": {"Male": 1}})
    return src


def test_prepare_mm_celeba_hq(mm_celeba, tmp_path):
    out = tmp_path / "unified"
    assert prepare("mm-celeba-hq", mm_celeba, out, progress=False) == 3
    records = read_unified(out)
    assert records["0.png"]["captions"][9] == "This person 0 has caption number 9."
    assert len(records["2.png"]["captions"]) == 10
    assert [records[f]["split"] for f in ("0.png", "1.png", "2.png")] == ["train", "train", "test"]
    assert records["0.png"]["attributes"]["Smiling"] == 1 and records["2.png"]["attributes"]["Male"] == 1
    for i in range(3):  # colour-coded label maps decoded to class ids
        np.testing.assert_array_equal(io.read_mask(out / "masks" / f"{i}.png"), face_mask(64, shift=i))
    stored = 255 - np.asarray(Image.open(out / "sketches" / "1.png"))
    assert stored[21, 30] > 200 and stored[40, 30] < 50  # the shipped drawing, lines = 255
    np.testing.assert_array_equal(stored, io.read_sketch(mm_celeba / "sketch" / "sketch" / "1_edges.jpg"))
    np.testing.assert_array_equal(255 - np.asarray(Image.open(out / "sketches" / "0.png")),
                                  io.sketch_from_mask(face_mask(64)))  # no drawing: mask outlines


def test_mm_celeba_hq_part_masks_and_errors(mm_celeba, tmp_path):
    import shutil
    shutil.rmtree(mm_celeba / "label")
    for i in range(3):
        split_into_parts(face_mask(64, shift=i), mm_celeba / "CelebAMask-HQ-mask-anno", i)
    samples = mm_celeba_hq.scan(mm_celeba)
    np.testing.assert_array_equal(samples[2].load_mask(), face_mask(64, shift=2))

    (mm_celeba / "text" / "celeba-caption" / "1.txt").unlink()
    with pytest.raises(FaceweaveError, match=r"missing captions for 1\.jpg"):
        mm_celeba_hq.scan(mm_celeba)
    shutil.rmtree(mm_celeba / "text")
    with pytest.raises(FaceweaveError, match=r"mm-celeba-hq layout: expected .*text/celeba-caption/; found"):
        prepare("mm-celeba-hq", mm_celeba, tmp_path / "out", progress=False)


class _Shell:
    def __reduce__(self):
        return (print, ("a pickle ran code",))


def test_split_pickle_cannot_run_code(tmp_path, capsys):
    path = tmp_path / "filenames.pickle"
    path.write_bytes(pickle.dumps([_Shell()]))
    with pytest.raises(FaceweaveError, match="not a pickled list of file names"):
        mm_celeba_hq.read_split_file(path)
    assert "ran code" not in capsys.readouterr().out
    path.write_bytes(pickle.dumps(["0", "1.jpg", b"2", 3], protocol=3))
    assert mm_celeba_hq.read_split_file(path) == {"0", "1", "2", "3"}


# ------------------------------------------------------------------------------ plain folder

@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Three photos in three formats, masks in three encodings, captions.txt."""
    src = tmp_path / "photos"
    save(src / "anna.png", photo(64, 1))
    save(src / "bob.jpg", photo(64, 2))
    save(src / "cleo.webp", photo(64, 3))
    save(src / "masks" / "anna.png", face_mask(64))                                  # index
    pal = Image.fromarray(face_mask(64, shift=1), mode="L").convert("P")
    pal.putpalette(CELEBAMASK_PALETTE.ravel().tolist())
    pal.save(src / "masks" / "bob.png")                                               # palette
    save(src / "masks" / "cleo.png", CELEBAMASK_PALETTE[face_mask(64, shift=2)])      # colour
    (src / "captions.txt").write_text("anna.png: a smiling woman\nanna.png\tshe has dark hair\n"
                                      "bob: a man with a beard\n")
    return src


def test_prepare_folder(photo_folder, tmp_path):
    out = tmp_path / "unified"
    assert prepare("folder", photo_folder, out, progress=False) == 3
    records = read_unified(out)
    assert list(records) == ["anna.png", "bob.png", "cleo.png"]
    assert records["anna.png"]["captions"] == ["a smiling woman", "she has dark hair"]
    assert records["bob.png"]["captions"] == ["a man with a beard"]
    assert records["cleo.png"]["captions"] == [] and records["cleo.png"]["attributes"] == {}
    for name, shift in (("anna", 0), ("bob", 1), ("cleo", 2)):
        np.testing.assert_array_equal(io.read_mask(out / "masks" / f"{name}.png"), face_mask(64, shift))
        np.testing.assert_array_equal(255 - np.asarray(Image.open(out / "sketches" / f"{name}.png")),
                                      io.sketch_from_mask(face_mask(64, shift)))


def test_prepare_folder_without_masks_and_jsonl(tmp_path):
    src = tmp_path / "photos"
    save(src / "a.jpg", photo(48, 1))
    save(src / "b.bmp", photo(48, 2))
    (src / "captions.jsonl").write_text(
        '{"file": "a.jpg", "caption": "a face", "attributes": {"smiling": 1}, "split": "val"}\n'
        '{"file": "b", "captions": ["one", "two"]}\n')
    out = tmp_path / "unified"
    prepare("folder", src, out, size=32, progress=False)
    records = read_unified(out)
    assert records["a.png"] == {"file": "a.png", "captions": ["a face"], "attributes": {"Smiling": 1},
                                "split": "val"}
    assert not (out / "masks").exists()
    # no mask: the sketch comes from the (resized) photo
    expected = io.sketch_from_image(io.resize_image(io.read_image(src / "a.jpg"), 32))
    np.testing.assert_array_equal(255 - np.asarray(Image.open(out / "sketches" / "a.png")), expected)


def test_folder_errors(photo_folder, tmp_path):
    (photo_folder / "masks" / "cleo.png").unlink()
    with pytest.raises(FaceweaveError, match=r"no mask for 1 photo\(s\): cleo"):
        prepare("folder", photo_folder, tmp_path / "o", progress=False)
    (photo_folder / "masks" / "anna.png").rename(photo_folder / "masks" / "cleo.png")
    save(photo_folder / "cleo.png", photo(64, 4))
    with pytest.raises(FaceweaveError, match="two photos share the name 'cleo'"):
        prepare("folder", photo_folder, tmp_path / "o", progress=False)
    (photo_folder / "cleo.png").unlink()
    (photo_folder / "captions.txt").write_text("zed.jpg: nobody\n")
    with pytest.raises(FaceweaveError, match=r"captions.txt, line 1: no photo named 'zed.jpg'"):
        prepare("folder", photo_folder, tmp_path / "o", progress=False)


def test_prepare_rejects_bad_inputs(photo_folder, tmp_path):
    with pytest.raises(FaceweaveError, match="does not exist"):
        prepare("folder", tmp_path / "nowhere", tmp_path / "o", progress=False)
    with pytest.raises(FaceweaveError, match="unknown layout 'ffhq'; choose one of celebamask-hq, "
                                             "mm-celeba-hq, folder"):
        prepare("ffhq", photo_folder, tmp_path / "o", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceweaveError, match=r"folder layout: expected photos.*found nothing"):
        prepare("folder", tmp_path / "empty", tmp_path / "o", progress=False)
    with pytest.raises(FaceweaveError, match="would replace the source folder"):
        prepare("folder", photo_folder, photo_folder, overwrite=True, progress=False)
    with pytest.raises(FaceweaveError, match="size 8 is out of range"):
        prepare("folder", photo_folder, tmp_path / "o", size=8, progress=False)
    (photo_folder / "bob.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(FaceweaveError, match=r"cannot convert .*bob\.jpg"):
        prepare("folder", photo_folder, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ writer

def test_writer_is_all_or_nothing(tmp_path):
    out = tmp_path / "data"
    with pytest.raises(RuntimeError, match="boom"):
        with UnifiedWriter(out) as writer:
            writer.add("a", photo(32, 0), mask=face_mask(32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no output, no partial folder

    with pytest.raises(FaceweaveError, match="only 1 of 2 samples have a mask"):
        with UnifiedWriter(out) as writer:
            writer.add("a", photo(32, 0), mask=face_mask(32))
            writer.add("b", photo(32, 1))
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(FaceweaveError, match="mask is 16x16 but the image is 32x32"):
        with UnifiedWriter(out) as writer:
            writer.add("a", photo(32, 0), mask=face_mask(16))
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_existing_folder_unless_overwrite(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    with UnifiedWriter(out) as writer:  # an empty folder is fine
        writer.add("a", photo(32, 0))
    with pytest.raises(FaceweaveError, match="already holds files; use --overwrite"):
        with UnifiedWriter(out) as writer:
            writer.add("b", photo(32, 1))
    with UnifiedWriter(out, overwrite=True, source="test") as writer:
        writer.add("b", photo(32, 1), captions=["hi"], attributes={"Smiling": 1}, split="train")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["b.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no leftovers beside it
    assert json.loads((out / "info.json").read_text())["source"] == "test"


def test_writer_rejects_bad_samples(tmp_path):
    with UnifiedWriter(tmp_path / "data") as writer:
        writer.add("a", photo(32, 0))
        with pytest.raises(FaceweaveError, match="two samples are named a.png"):
            writer.add("a.png", photo(32, 0))
        with pytest.raises(FaceweaveError, match="cannot be a file name"):
            writer.add("../evil", photo(32, 0))
        bad = face_mask(32)
        bad[0, 0] = 40
        with pytest.raises(FaceweaveError, match="outside 0..18"):
            writer.add("b", photo(32, 0), mask=bad)
        with pytest.raises(FaceweaveError, match="clash"):
            writer.add("c", photo(32, 0), file="x")


# ------------------------------------------------------------------------------ datasets

@pytest.fixture
def unified(tmp_path) -> Path:
    out = tmp_path / "unified"
    sketch = np.zeros((32, 32), np.uint8)
    sketch[10, 5:25] = 200  # a faint line must load exactly as stored
    with UnifiedWriter(out) as writer:
        writer.add("a", photo(32, 0), face_mask(32), sketch, ["first"], {"Smiling": 1, "Male": 0},
                   split="train")
        writer.add("b", photo(32, 1), face_mask(32, 1), sketch, ["x", "y"], None, split="test")
        writer.add("c", photo(32, 2), face_mask(32, 2), np.zeros((32, 32), np.uint8), [], None)  # no split
    return out


def test_unified_dataset_tensor_conventions(unified):
    data = UnifiedDataset(unified)
    assert len(data) == 3
    sample = data[0]
    assert set(sample) == {"image", "mask", "sketch", "attributes", "captions", "file", "flipped"}
    assert not bool(sample["flipped"])
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 32, 32)
    torch.testing.assert_close(sample["image"], torch.from_numpy(photo(32, 0)).permute(2, 0, 1) / 127.5 - 1)
    assert sample["image"].min() >= -1 and sample["image"].max() <= 1
    assert sample["mask"].dtype == torch.int64
    np.testing.assert_array_equal(sample["mask"].numpy(), face_mask(32))
    assert sample["sketch"].dtype == torch.float32 and sample["sketch"].shape == (1, 32, 32)
    assert sample["sketch"][0, 10, 5].item() == pytest.approx(200 / 255)
    assert data[2]["sketch"].max() == 0  # a blank sketch loads as blank
    vector = sample["attributes"]
    assert vector.shape == (40,) and vector.dtype == torch.float32
    assert vector[CELEBA_ATTRIBUTES.index("Smiling")] == 1 and vector[CELEBA_ATTRIBUTES.index("Male")] == 0
    assert (vector == -1).sum() == 38  # unknown attributes are -1, not "absent"
    assert sample["captions"] == ["first"] and sample["file"] == "a.png"

    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate)))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["mask"].shape == (3, 32, 32)
    assert batch["captions"] == [["first"], ["x", "y"], []] and batch["file"] == ["a.png", "b.png", "c.png"]


def test_unified_dataset_size_and_split(unified):
    data = UnifiedDataset(unified, size=64, split="train")
    assert [r["file"] for r in data.records] == ["a.png"]
    sample = data[0]
    assert sample["image"].shape == (3, 64, 64) and sample["mask"].shape == (64, 64)
    assert sample["sketch"].shape == (1, 64, 64)
    assert set(sample["mask"].unique().tolist()) <= set(range(NUM_CLASSES))
    with pytest.raises(FaceweaveError, match=r"no 'val' samples; its splits: test \(1\), train \(1\)"):
        UnifiedDataset(unified, split="val")


def test_unified_dataset_validates_folder(unified, tmp_path):
    with pytest.raises(FaceweaveError, match="does not exist"):
        UnifiedDataset(tmp_path / "nope")
    with pytest.raises(FaceweaveError, match="not a unified data folder.*faceweave data prepare"):
        UnifiedDataset(tmp_path)
    (unified / "masks" / "b.png").unlink()
    with pytest.raises(FaceweaveError, match=r"masks lacks 1 of 3 files \(e.g. b.png\)"):
        UnifiedDataset(unified)
    with open(unified / "captions.jsonl", "a") as f:
        f.write("{broken\n")
    with pytest.raises(FaceweaveError, match=r"captions.jsonl, line 4: not valid JSON"):
        UnifiedDataset(unified)


def test_open_dataset_specs(unified):
    assert isinstance(open_dataset(str(unified), split="test"), UnifiedDataset)
    with pytest.raises(FaceweaveError, match=r"bad data spec 'celeba'.*facesynth:SIZE.*unified data folder"):
        open_dataset("celeba")
    with pytest.raises(FaceweaveError, match="cannot read 'many=3'"):
        open_dataset("facesynth:64:many=3")
    with pytest.raises(FaceweaveError, match="renders 64 px but 128 px are needed"):
        open_dataset("facesynth:64", size=128)


def test_attribute_vector_and_split_seeds():
    vector = attribute_vector({"eyeglasses": 1, "Young": 0})
    assert vector[CELEBA_ATTRIBUTES.index("Eyeglasses")] == 1
    assert vector[CELEBA_ATTRIBUTES.index("Young")] == 0
    assert (attribute_vector(None) == -1).all()
    ranges = sorted(SPLIT_SEEDS.values(), key=lambda r: r.start)
    assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:]))  # disjoint seed ranges


# ------------------------------------------------------------------------------ FaceSynth

def _require_renderer():
    synth = pytest.importorskip("faceweave.synth")
    if not hasattr(synth, "render"):
        pytest.skip("faceweave.synth.render is not written yet")


def test_facesynth_dataset():
    _require_renderer()
    train = FaceSynthDataset(32, n=2, split="train")
    sample = train[1]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (32, 32)
    assert sample["sketch"].shape == (1, 32, 32) and sample["attributes"].shape == (40,)
    assert sample["image"].min() >= -1 and sample["image"].max() <= 1
    torch.testing.assert_close(FaceSynthDataset(32, n=2, split="train")[1]["image"], sample["image"])
    val = FaceSynthDataset(32, n=2, split="val")[1]
    assert not torch.equal(val["image"], sample["image"])  # held-out faces differ
    assert len(open_dataset("facesynth:32:n=5:seed=2")) == 5
    with pytest.raises(FaceweaveError, match="unknown split"):
        FaceSynthDataset(32, n=2, split="holdout")


def test_synthesize_writes_unified_folder(tmp_path):
    _require_renderer()
    out = tmp_path / "synth"
    assert synthesize(out, n=2, size=32, split="test", progress=False) == 2
    records = read_unified(out)
    assert set(records) == {"000000.png", "000001.png"}
    assert all(r["split"] == "test" and "params" in r for r in records.values())
    data = UnifiedDataset(out, split="test")
    rendered = FaceSynthDataset(32, n=2, split="test")[0]
    torch.testing.assert_close(data[0]["image"], rendered["image"])
    torch.testing.assert_close(data[0]["mask"], rendered["mask"])
