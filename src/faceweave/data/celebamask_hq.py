"""Reader for the official CelebAMask-HQ download (Lee et al., MaskGAN, CVPR 2020).

The archive unpacks to::

    CelebA-HQ-img/{id}.jpg                          30,000 photos, 1024 x 1024
    CelebAMask-HQ-mask-anno/{id // 2000}/{id:05d}_{part}.png
                                                    one binary 512 x 512 mask per face part
                                                    (15 folders 0..14; absent parts have no file)
    CelebAMask-HQ-attribute-anno.txt                line 1: 30000, line 2: the 40 CelebA names,
                                                    then "{id}.jpg v1 .. v40" with 1 / -1
    CelebA-HQ-to-CelebA-mapping.txt                 "idx orig_idx orig_file" per image (optional)

There is no label map per image: the official script (face_parsing/Data_preprocessing/
g_mask.py in switchablenorms/CelebAMask-HQ) paints the parts in a fixed order, a later part
overwriting an earlier one, with class id = position in that order + 1. That order is
`conditions.CLASSES[1:]`, so the merge below reproduces the official label maps exactly.

The official train/val/test split (g_partition.py there) goes through the CelebA index
in the mapping file: 162771 <= orig_idx < 182638 is val, orig_idx >= 182638 is test, the
rest train (24,183 / 2,993 / 2,824 images). When the mapping file is present each sample
carries that split, so held-out faces stay held out after conversion.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..conditions import CLASS_ID, canonical_attribute
from ..errors import FaceweaveError
from .source import SourceSample, by_stem, layout_error, list_images, read_text_lines

LAYOUT = "celebamask-hq"
IMAGE_DIR = "CelebA-HQ-img"
PARTS_DIR = "CelebAMask-HQ-mask-anno"
ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
IMAGES_PER_FOLDER = 2000  # part masks of image id live in folder id // 2000
VAL_START, TEST_START = 162771, 182638  # CelebA orig_idx boundaries used by g_partition.py

_PART_FILE = re.compile(r"^(\d+)_([a-z_]+)\.png$")


def part_mask_path(parts_root: Path, image_id: int, part: str) -> Path:
    """Where the official layout keeps one part of one image."""
    return parts_root / str(image_id // IMAGES_PER_FOLDER) / f"{image_id:05d}_{part}.png"


def index_part_masks(parts_root: Path) -> dict[int, list[tuple[int, Path]]]:
    """image id -> [(class id, part file)] in merge order, from one directory walk.

    Listing once is far cheaper than probing 18 names x 30,000 images, and it also
    accepts re-packaged copies whose part files sit in one flat folder.
    """
    index: dict[int, list[tuple[int, Path]]] = {}
    folders = [parts_root] + sorted(p for p in parts_root.iterdir() if p.is_dir())
    for folder in folders:
        for path in folder.iterdir():
            match = _PART_FILE.match(path.name)
            if not match:
                continue
            part = match.group(2)
            if part not in CLASS_ID or part == "background":
                raise FaceweaveError(
                    f"{path}: unknown CelebAMask-HQ part {part!r}; part files are named "
                    f"{{id:05d}}_{{part}}.png with part one of {', '.join(list(CLASS_ID)[1:])}"
                )
            index.setdefault(int(match.group(1)), []).append((CLASS_ID[part], path))
    for parts in index.values():
        parts.sort()
    return index


def read_part_mask(path: Path) -> np.ndarray:
    """A binary part mask -> bool H x W. Any non-zero pixel belongs to the part.

    The files are 8-bit grey (0 / 255); RGB copies also occur, so any colour channel
    counts (an alpha channel does not).
    """
    try:
        with Image.open(path) as im:
            array = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise FaceweaveError(f"cannot read part mask {path}: {exc}") from None
    if array.ndim == 3:
        array = array[..., :3].max(axis=2)
    if array.ndim != 2:
        raise FaceweaveError(f"part mask {path} has shape {array.shape}; expected a 2-D binary image")
    return array != 0


def merge_part_masks(parts: list[tuple[int, Path]]) -> np.ndarray:
    """[(class id, file)] -> H x W uint8 label map; higher class ids paint over lower ones."""
    label: np.ndarray | None = None
    for class_id, path in sorted(parts):
        part = read_part_mask(path)
        if label is None:
            label = np.zeros(part.shape, np.uint8)
        elif part.shape != label.shape:
            raise FaceweaveError(
                f"part mask {path} is {part.shape[1]}x{part.shape[0]} but the image's other "
                f"parts are {label.shape[1]}x{label.shape[0]}"
            )
        label[part] = class_id
    if label is None:
        raise FaceweaveError("no part masks to merge")
    return label


def read_attribute_file(path: Path) -> dict[str, dict[str, int]]:
    """CelebA-style attribute table -> {stem: {attribute: 0/1}}.

    Format: a count, the attribute names, then one row per image: file name and one
    value per attribute, 1 for present and -1 (or 0) for absent. Rows are keyed by stem
    ("0.jpg" -> "0") so that copies converted to another image format still match.
    """
    lines = read_text_lines(path)
    if len(lines) < 2:
        raise FaceweaveError(f"{path}: expected a count line and a line of attribute names")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise FaceweaveError(
            f"{path}: line 1 should be the number of images, got {lines[0][:40]!r}") from None
    try:
        names = [canonical_attribute(n) for n in lines[1].split()]
    except FaceweaveError as exc:
        raise FaceweaveError(f"{path}, line 2: {exc}") from None
    table: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise FaceweaveError(
                f"{path}, line {number}: expected a file name and {len(names)} values, "
                f"got {len(fields)} fields"
            )
        values = {}
        for name, field in zip(names, fields[1:]):
            if field not in ("1", "-1", "0"):
                raise FaceweaveError(f"{path}, line {number}: {name} is {field!r}; values are 1 or -1")
            values[name] = 1 if field == "1" else 0
        table[Path(fields[0]).stem] = values
    if len(table) != count:
        raise FaceweaveError(f"{path}: line 1 announces {count} images but {len(table)} rows follow")
    return table


def read_mapping(path: Path) -> dict[int, int]:
    """CelebA-HQ id -> CelebA orig_idx, from CelebA-HQ-to-CelebA-mapping.txt."""
    mapping: dict[int, int] = {}
    for number, line in enumerate(read_text_lines(path), start=1):
        fields = line.split()
        if number == 1 and not fields[0].isdigit():
            continue  # the header "idx orig_idx orig_file"
        try:
            mapping[int(fields[0])] = int(fields[1])
        except (ValueError, IndexError):
            raise FaceweaveError(f"{path}, line {number}: expected 'idx orig_idx orig_file'") from None
    return mapping


def official_split(orig_idx: int) -> str:
    """The split g_partition.py assigns from the CelebA index."""
    if orig_idx >= TEST_START:
        return "test"
    return "val" if orig_idx >= VAL_START else "train"


def numeric_images(image_dir: Path) -> list[tuple[int, Path]]:
    """(id, path) for every photo, sorted by id; CelebA-HQ photos are named by their id."""
    out = []
    for stem, path in by_stem(list_images(image_dir), "photos").items():
        if not stem.isdigit():
            raise FaceweaveError(
                f"{path}: CelebA-HQ photos are named by their numeric id (0.jpg .. 29999.jpg); "
                "use --layout folder for other names"
            )
        out.append((int(stem), path))
    return sorted(out)


def scan(src: Path, limit: int | None = None) -> list[SourceSample]:
    """List the samples of a CelebAMask-HQ folder (the first `limit` ids when given)."""
    image_dir, parts_dir = src / IMAGE_DIR, src / PARTS_DIR
    if not image_dir.is_dir() or not parts_dir.is_dir():
        raise layout_error(LAYOUT, src, f"{IMAGE_DIR}/ and {PARTS_DIR}/ ({ATTRIBUTE_FILE} optional)")
    images = numeric_images(image_dir)[:limit]
    if not images:
        raise FaceweaveError(f"no photos in {image_dir} (looked for .jpg/.png/.webp/.bmp files)")
    parts = index_part_masks(parts_dir)
    attributes = read_attribute_file(src / ATTRIBUTE_FILE) if (src / ATTRIBUTE_FILE).is_file() else {}
    mapping = read_mapping(src / MAPPING_FILE) if (src / MAPPING_FILE).is_file() else {}

    samples = []
    for image_id, path in images:
        if image_id not in parts:
            raise FaceweaveError(
                f"no part masks for {path.name}: expected files like "
                f"{part_mask_path(parts_dir, image_id, 'skin').relative_to(src)}"
            )
        extra = {"split": official_split(mapping[image_id])} if image_id in mapping else {}
        samples.append(SourceSample(
            name=str(image_id),
            image=path,
            load_mask=functools.partial(merge_part_masks, parts[image_id]),
            attributes=attributes.get(path.stem),
            extra=extra,
        ))
    return samples
