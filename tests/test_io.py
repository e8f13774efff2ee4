"""faceweave.io: every encoding users really have reads right, every bad file is one clear error."""
from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceweave import io
from faceweave.conditions import CELEBAMASK_PALETTE, CLASS_ID, NUM_CLASSES
from faceweave.errors import FaceweaveError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def toy_mask(size: int = 128) -> np.ndarray:
    """A face-like label map: background, skin ellipse, hair cap, two eyes, lips, a neck."""
    mask = np.zeros((size, size), np.uint8)
    c, s = size // 2, size / 128
    cv2.rectangle(mask, (int(50 * s), int(95 * s)), (int(78 * s), size), CLASS_ID["neck"], -1)
    cv2.ellipse(mask, (c, int(58 * s)), (int(40 * s), int(44 * s)), 0, 180, 360, CLASS_ID["hair"], -1)
    cv2.ellipse(mask, (c, int(64 * s)), (int(32 * s), int(40 * s)), 0, 0, 360, CLASS_ID["skin"], -1)
    for cls, x in (("r_eye", 50), ("l_eye", 78)):
        cv2.ellipse(mask, (int(x * s), int(58 * s)), (int(7 * s), int(3 * s)), 0, 0, 360, CLASS_ID[cls], -1)
    cv2.rectangle(mask, (int(54 * s), int(84 * s)), (int(74 * s), int(87 * s)), CLASS_ID["u_lip"], -1)
    cv2.rectangle(mask, (int(54 * s), int(88 * s)), (int(74 * s), int(92 * s)), CLASS_ID["l_lip"], -1)
    return mask


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height: a decompression bomb without the bytes."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


# --- images -------------------------------------------------------------------------------

def test_read_image_converts_every_mode_to_rgb(tmp_path):
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))
    assert np.array_equal(io.read_image(save(tmp_path / "l.png", grey)), np.repeat(grey[..., None], 3, 2))

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3], rgba[2:, :, 3] = 200, 0, 255   # top half transparent
    out = io.read_image(save(tmp_path / "rgba.png", rgba))
    assert (out[:2] == 255).all() and (out[2:] == (200, 0, 0)).all()

    la = np.stack([np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8)], -1)
    assert np.allclose(io.read_image(save(tmp_path / "la.png", la)), 127, atol=1)  # black, half over white

    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30])
    palette.save(tmp_path / "p.png")
    assert (io.read_image(tmp_path / "p.png") == (10, 20, 30)).all()

    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert np.allclose(io.read_image(tmp_path / "cmyk.jpg"), (255, 0, 0), atol=8)

    wide = np.full((4, 4), 65535, np.uint16)
    wide[0] = 257 * 10
    Image.fromarray(wide).save(tmp_path / "i16.png")
    out = io.read_image(tmp_path / "i16.png")
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3) and out[0, 0, 0] == 10 and out[1, 0, 0] == 255


def test_exif_orientation_is_applied(tmp_path):
    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:10, :10] = (255, 0, 0)          # a red corner, top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6                          # "rotate 90 degrees clockwise to display"
    Image.fromarray(picture).save(tmp_path / "phone.png", exif=exif)
    assert np.array_equal(io.read_image(tmp_path / "phone.png"), np.rot90(picture, -1))


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_files_are_errors_not_partial_images(tmp_path, fmt):
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), np.uint8)
    whole = save(tmp_path / f"whole.{fmt}", noise).read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FaceweaveError, match="truncated or corrupt"):
        io.read_image(cut)
    with pytest.raises(FaceweaveError, match="truncated or corrupt"):
        io.read_mask(cut)


def test_missing_folder_and_non_image_files(tmp_path):
    with pytest.raises(FaceweaveError, match="no such file"):
        io.read_image(tmp_path / "absent.png")
    with pytest.raises(FaceweaveError, match="is a folder"):
        io.read_mask(tmp_path)
    (tmp_path / "notes.png").write_text("not an image at all")
    with pytest.raises(FaceweaveError, match="not an image"):
        io.read_sketch(tmp_path / "notes.png")


def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    start = time.perf_counter()
    with pytest.raises(FaceweaveError, match=r"10000 x 5000 = 50,000,000 pixels, over the limit of 40,000,000"):
        io.read_image(png_header_only(tmp_path / "big.png", 10_000, 5_000))
    with pytest.raises(FaceweaveError, match=r"10,000,000,000 pixels, over the limit"):
        io.read_mask(png_header_only(tmp_path / "huge.png", 100_000, 100_000))
    with pytest.raises(FaceweaveError, match="over the limit of 100"):
        io.read_image(save(tmp_path / "small.png", np.zeros((20, 20), np.uint8)), max_pixels=100)
    assert time.perf_counter() - start < 1.0   # nothing was decoded


def test_write_png_is_atomic_and_checks_its_input(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3), np.uint8)
    io.write_png(tmp_path / "sub" / "rgb.png", rgb)
    io.write_png(tmp_path / "grey.png", rgb[..., 0])
    assert np.array_equal(io.read_image(tmp_path / "sub" / "rgb.png"), rgb)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grey.png")), rgb[..., 0])
    io.write_png(tmp_path / "grey.png", rgb[..., 1])                   # replaces in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png", "sub"]   # no temp files left
    with pytest.raises(FaceweaveError, match=".png suffix"):
        io.write_png(tmp_path / "x.jpg", rgb)
    with pytest.raises(FaceweaveError, match="uint8"):
        io.write_png(tmp_path / "x.png", rgb.astype(np.float32))
    with pytest.raises(FaceweaveError, match="cannot write"):
        io.write_png(tmp_path / "grey.png" / "inside.png", rgb)          # parent is a file


# --- masks: the three encodings ------------------------------------------------------------

def test_index_mask_round_trip_8_and_16_bit(tmp_path):
    mask = toy_mask()
    io.write_mask(tmp_path / "m.png", mask)
    assert Image.open(tmp_path / "m.png").mode == "L"
    assert np.array_equal(io.read_mask(tmp_path / "m.png"), mask)
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "m16.png")
    assert np.array_equal(io.read_mask(tmp_path / "m16.png"), mask)
    assert np.array_equal(io.read_mask(save(tmp_path / "rgb_ids.png", np.repeat(mask[..., None], 3, 2))), mask)


@pytest.mark.parametrize("name", list(io.KNOWN_PALETTES))
def test_colour_mask_round_trip_for_every_known_palette(tmp_path, name):
    mask = toy_mask()
    mask[5:9, 5:40] = CLASS_ID["r_brow"]      # the class on which the two CelebAMask palettes differ
    io.write_color_mask(tmp_path / "c.png", mask, io.KNOWN_PALETTES[name])
    assert np.array_equal(io.read_mask(tmp_path / "c.png"), mask)


def test_palette_png_round_trip_and_reindexed_palette(tmp_path):
    mask = toy_mask()
    indexed = Image.fromarray(mask, mode="P")
    indexed.putpalette(CELEBAMASK_PALETTE.ravel().tolist())
    indexed.save(tmp_path / "p.png")
    assert np.array_equal(io.read_mask(tmp_path / "p.png"), mask)

    # An editor's "indexed colour" export numbers the same colours in its own order.
    order = np.random.default_rng(2).permutation(NUM_CLASSES)
    shuffled = Image.fromarray(np.argsort(order)[mask].astype(np.uint8), mode="P")
    shuffled.putpalette(CELEBAMASK_PALETTE[order].ravel().tolist())
    shuffled.save(tmp_path / "reindexed.png")
    assert np.array_equal(io.read_mask(tmp_path / "reindexed.png"), mask)

    # Ids stored in a P image with a meaningless grey palette are still ids.
    grey = Image.fromarray(mask, mode="P")
    grey.putpalette([v for i in range(256) for v in (i, i, i)])
    grey.save(tmp_path / "grey_palette.png")
    assert np.array_equal(io.read_mask(tmp_path / "grey_palette.png"), mask)


def test_jpeg_colour_mask_snaps_to_the_right_classes(tmp_path):
    mask = toy_mask(256)
    for quality in (95, 75):
        save(tmp_path / "c.jpg", CELEBAMASK_PALETTE[mask], quality=quality)
        assert (io.read_mask(tmp_path / "c.jpg") == mask).mean() >= 0.99


def test_antialiased_edges_snap(tmp_path):
    mask = toy_mask(128)
    smooth = cv2.resize(CELEBAMASK_PALETTE[mask], (512, 512), interpolation=cv2.INTER_LINEAR)
    save(tmp_path / "aa.png", smooth)
    expected = cv2.resize(mask, (512, 512), interpolation=cv2.INTER_NEAREST_EXACT)
    assert (io.read_mask(tmp_path / "aa.png") == expected).mean() >= 0.99


def test_a_few_stray_colours_snap_but_unknown_regions_are_named(tmp_path):
    mask = toy_mask()
    colour = CELEBAMASK_PALETTE[mask]
    stray = colour.copy()
    stray[::40, ::40] = (128, 128, 128)       # 16 px, 0.1 %: edge noise, snapped
    assert (io.read_mask(save(tmp_path / "stray.png", stray)) == mask).mean() > 0.998

    painted = colour.copy()
    painted[:20, :30] = (128, 128, 128)       # a region in a colour no palette has
    with pytest.raises(FaceweaveError, match=r"#808080 \d\.\d%.*--palette FILE") as info:
        io.read_mask(save(tmp_path / "unknown.png", painted))
    assert "\n" not in str(info.value)
    with pytest.raises(FaceweaveError, match="not in the given palette"):
        io.read_mask(tmp_path / "unknown.png", palette=io.KNOWN_PALETTES["face-parsing.pytorch"])


def test_class_ids_above_18_are_errors(tmp_path):
    mask = toy_mask()
    scaled = (mask.astype(np.uint16) * 10).astype(np.uint8)   # ids scaled up "for viewing"
    with pytest.raises(FaceweaveError, match=r"values 40, 50, .* not class ids 0..18.*greyscale"):
        io.read_mask(save(tmp_path / "scaled.png", scaled))
    binary = Image.fromarray(mask > 0).convert("1")
    binary.save(tmp_path / "binary.png")
    with pytest.raises(FaceweaveError, match="values 255"):
        io.read_mask(tmp_path / "binary.png")
    beyond = Image.fromarray(np.where(mask == 1, 25, mask).astype(np.uint8), mode="P")
    beyond.putpalette([v for i in range(256) for v in (i, i, i)])
    beyond.save(tmp_path / "beyond.png")
    with pytest.raises(FaceweaveError, match="indices 25"):
        io.read_mask(tmp_path / "beyond.png")
    with pytest.raises(FaceweaveError, match="outside the class ids"):
        io.write_mask(tmp_path / "bad.png", mask + 19)


@pytest.mark.parametrize("channels", [1, 3])
def test_index_masks_saved_as_jpeg_are_refused(tmp_path, channels):
    ids = toy_mask() if channels == 1 else np.repeat(toy_mask()[..., None], 3, 2)
    with pytest.raises(FaceweaveError, match="cannot be a JPEG.*save it as PNG"):
        io.read_mask(save(tmp_path / "ids.jpg", ids, quality=95))


def test_user_palettes_in_every_file_format(tmp_path):
    custom = np.random.default_rng(3).permutation(256)[: NUM_CLASSES * 3].reshape(NUM_CLASSES, 3)
    custom = custom.astype(np.uint8)
    (tmp_path / "pal.json").write_text(json.dumps(custom.tolist()))
    (tmp_path / "pal.txt").write_text("# my palette\n" + "".join(
        f"{r} {g} {b}  // class {i}\n" if i % 2 else f"#{r:02x}{g:02x}{b:02x}\n"
        for i, (r, g, b) in enumerate(custom.tolist())))
    as_png = Image.new("P", (2, 2))
    as_png.putpalette(custom.ravel().tolist())
    as_png.save(tmp_path / "pal.png")
    for source in (custom, tmp_path / "pal.json", tmp_path / "pal.txt", str(tmp_path / "pal.png")):
        assert np.array_equal(io.load_palette(source), custom)

    mask = toy_mask()
    io.write_color_mask(tmp_path / "c.png", mask, tmp_path / "pal.json")
    assert np.array_equal(io.read_mask(tmp_path / "c.png", palette=tmp_path / "pal.txt"), mask)
    with pytest.raises(FaceweaveError, match="19 colours"):
        io.load_palette(custom[:5])
    with pytest.raises(FaceweaveError, match="integers 0..255"):
        io.load_palette(custom.astype(int) + 300)
    with pytest.raises(FaceweaveError, match="not found"):
        io.load_palette(tmp_path / "absent.json")
    with pytest.raises(FaceweaveError, match="more than one class"):
        io.read_mask(tmp_path / "c.png", palette=np.zeros((NUM_CLASSES, 3), np.uint8))


def test_resizing(tmp_path):
    mask = toy_mask(128)
    io.write_mask(tmp_path / "m.png", mask)
    small = io.read_mask(tmp_path / "m.png", size=64)
    assert small.shape == (64, 64) and set(np.unique(small)) <= set(np.unique(mask))
    assert np.array_equal(io.resize_mask(mask, 256)[::2, ::2], mask)
    image = np.random.default_rng(4).integers(0, 256, (40, 60, 3), np.uint8)
    assert io.resize_image(image, 20).shape == (20, 20, 3)
    assert io.resize_image(image, (80, 90)).shape == (80, 90, 3)
    with pytest.raises(FaceweaveError, match="size must be"):
        io.resize_image(image, 0)


def test_colour_mask_decoding_is_fast(tmp_path):
    mask = toy_mask(512)
    save(tmp_path / "c.jpg", CELEBAMASK_PALETTE[mask], quality=90)
    io.read_mask(tmp_path / "c.jpg")
    start = time.perf_counter()
    io.read_mask(tmp_path / "c.jpg")
    assert time.perf_counter() - start < 0.5   # ~30 ms on a laptop core; generous for CI


# --- sketches ------------------------------------------------------------------------------

def drawing(size: int = 96) -> np.ndarray:
    """Black strokes (antialiased, 1-3 px) on white paper: how people draw."""
    paper = np.full((size, size), 255, np.uint8)
    cv2.circle(paper, (size // 2, size // 2), size // 3, 0, 2, cv2.LINE_AA)
    cv2.line(paper, (10, 10), (size - 20, 30), 60, 1, cv2.LINE_AA)
    return paper


def test_sketch_polarity_and_formats_all_agree(tmp_path):
    paper = drawing()
    reference = io.read_sketch(save(tmp_path / "black_on_white.png", paper))
    assert reference.max() == 255 and reference[0, 0] == 0 and 0 < (reference > 127).mean() < 0.2
    variants = {
        "white_on_black.png": 255 - paper,
        "rgb.png": np.repeat(paper[..., None], 3, 2),
        "alpha.png": np.dstack([np.zeros((96, 96, 3), np.uint8), 255 - paper]),     # ink on transparent
        "white_alpha.png": np.dstack([np.full((96, 96, 3), 255, np.uint8), 255 - paper]),
    }
    for name, array in variants.items():
        assert np.abs(io.read_sketch(save(tmp_path / name, array)).astype(int) - reference).max() <= 1, name


def test_sketch_write_read_round_trip_and_resize(tmp_path):
    lines = np.zeros((128, 128), np.uint8)
    lines[40, 10:100] = 255                   # a 1-px line
    lines[20:90, 64] = 255
    io.write_sketch(tmp_path / "s.png", lines)
    on_disk = np.asarray(Image.open(tmp_path / "s.png"))
    assert on_disk[0, 0] == 255 and on_disk[40, 50] == 0   # dark lines on white
    assert np.array_equal(io.read_sketch(tmp_path / "s.png"), lines)
    small = io.read_sketch(tmp_path / "s.png", size=32)
    assert small.shape == (32, 32) and small.max() == 255   # thin lines keep their strength


def test_blank_pages_and_photos_are_not_sketches(tmp_path):
    with pytest.raises(FaceweaveError, match="no lines found"):
        io.read_sketch(save(tmp_path / "blank.png", np.full((64, 64), 250, np.uint8)))
    shaded = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))   # tones everywhere
    with pytest.raises(FaceweaveError, match="not a line drawing"):
        io.read_sketch(save(tmp_path / "shaded.png", shaded))


def test_sketch_from_mask_draws_one_pixel_part_boundaries():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 1
    lines = io.sketch_from_mask(mask)
    assert (lines[:, 3] == 255).all() and lines.sum() == 8 * 255
    assert not io.sketch_from_mask(np.ones((8, 8), np.uint8)).any()
    outline = io.sketch_from_mask(toy_mask())
    assert set(np.unique(outline)) == {0, 255} and 0 < (outline > 0).mean() < 0.1


@pytest.mark.parametrize("method", ["xdog", "canny"])
def test_sketch_from_image(method):
    picture = np.tile(np.linspace(60, 200, 128, dtype=np.uint8)[None, :, None], (128, 1, 3))
    cv2.circle(picture, (64, 64), 30, (20, 20, 20), -1)
    cv2.rectangle(picture, (20, 90), (100, 110), (240, 240, 240), -1)
    lines = io.sketch_from_image(picture, method)
    assert lines.shape == (128, 128) and lines.dtype == np.uint8
    assert 0.005 < (lines > 127).mean() < 0.2   # edges found, flat regions left blank
    assert lines[64, 64] == 0 and lines[5, 5] == 0


def test_sketch_from_image_rejects_unknown_methods():
    with pytest.raises(FaceweaveError, match="unknown sketch method 'pencil'"):
        io.sketch_from_image(np.zeros((8, 8, 3), np.uint8), "pencil")


# --- real data -----------------------------------------------------------------------------

@pytest.fixture
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real sample data not found at {REAL} (it lives beside the repository)")
    return REAL


def test_real_masks_in_all_three_encodings_agree(real, tmp_path):
    for index_png in sorted((real / "pairs").glob("maskgan_*_mask.png")):
        ids = io.read_mask(index_png)
        assert ids.shape == (512, 512) and ids.max() < NUM_CLASSES and len(np.unique(ids)) > 8
        io.write_color_mask(tmp_path / "colour.png", ids)
        assert np.array_equal(io.read_mask(tmp_path / "colour.png"), ids)
        save(tmp_path / "colour.jpg", CELEBAMASK_PALETTE[ids], quality=90)
        assert (io.read_mask(tmp_path / "colour.jpg") == ids).mean() >= 0.99

    for palette_png in sorted((real / "masks").glob("palette_*.png")):
        ids = io.read_mask(palette_png)
        assert np.array_equal(ids, np.asarray(Image.open(palette_png)))
        io.write_mask(tmp_path / "index.png", ids)
        save(tmp_path / "colour.jpg", CELEBAMASK_PALETTE[ids], quality=90)
        assert np.array_equal(io.read_mask(tmp_path / "index.png"), ids)
        assert (io.read_mask(tmp_path / "colour.jpg") == ids).mean() >= 0.99

    big = io.read_mask(real / "masks" / "palette_29980.png", size=256)
    small = io.read_mask(real / "masks" / "palette_256_29980.png")
    assert (big == small).mean() > 0.95       # the same face, saved at two sizes


def test_real_edited_mask_and_photos_load(real, tmp_path):
    edited = io.read_mask(real / "pairs" / "edit_27044_mask_no_smile_no_earrings.png")
    assert edited.shape == (256, 256)
    assert CLASS_ID["ear_r"] not in edited and CLASS_ID["skin"] in edited   # earrings removed
    photo = io.read_image(real / "pairs" / "edit_27044.jpg")
    assert photo.shape == (256, 256, 3) and photo.dtype == np.uint8
    lines = io.sketch_from_image(photo)
    assert (lines > 127).mean() > 0.01
    io.write_sketch(tmp_path / "sketch.png", lines)
    assert np.abs(io.read_sketch(tmp_path / "sketch.png").astype(int) - lines).max() <= 1
    with pytest.raises(FaceweaveError, match="not a line drawing"):
        io.read_sketch(real / "photos" / "celebahq_28180.jpg")
    with pytest.raises(FaceweaveError, match="not in any known palette"):
        io.read_mask(real / "photos" / "celebahq_28083.jpg")    # a photo is not a mask


def test_array_level_colour_decoder_and_its_errors():
    from faceweave.synth import render
    labels = render(5, 0, size=64).mask
    for name, palette in io.KNOWN_PALETTES.items():
        assert np.array_equal(io.decode_colour_mask(palette[labels]), labels), name
    rgb = CELEBAMASK_PALETTE[labels].copy()
    rgb[:16, :16] = (12, 34, 56)
    with pytest.raises(FaceweaveError, match=r"^the canvas: .*#0c2238.*; paint with the brushes$"):
        io.decode_colour_mask(rgb, {"celebamask-hq": CELEBAMASK_PALETTE}, source="the canvas",
                              fix="paint with the brushes")
    with pytest.raises(FaceweaveError, match="--palette FILE"):
        io.decode_colour_mask(rgb)
    with pytest.raises(FaceweaveError, match="H x W x 3 uint8"):
        io.decode_colour_mask(labels)


def test_resize_sketch_keeps_thin_lines():
    sketch = np.zeros((256, 256), np.uint8)
    sketch[100, :] = 255                                   # a 1 px line
    small = io.resize_sketch(sketch, 64)
    assert small.shape == (64, 64) and small.max() == 255 and (small[25] > 0).all()
    assert io.resize_sketch(small, 64) is small
