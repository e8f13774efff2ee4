"""Reader for Multi-Modal-CelebA-HQ (Xia et al., TediGAN, CVPR 2021; IIGROUP/MM-CelebA-HQ-Dataset).

The release (Google Drive folder "multi-modal-celeba") unpacks to::

    image/images/{id}.jpg           30,000 CelebA-HQ photos, 512 x 512
    text/celeba-caption/{id}.txt    10 captions per image, one per line (made by a PCFG
                                    from the CelebA attributes)
    sketch/sketch/...               sketches, black lines on white (optional here)
    train/filenames.pickle          the image names of each split: a pickled list of
    test/filenames.pickle           strings (the authors say ids 0..23999 are train)

plus the masks of CelebAMask-HQ, which it reuses. Sources: the dataset README's table,
create_caption.py there (captions from CelebAMask-HQ-attribute-anno.txt), and the paths
public loaders use (image/images, text/celeba-caption, {train,test}/filenames.pickle).
Copies in the wild move things around, so each part is looked for under a few names
(`IMAGE_DIRS`, ...) and wrapper folders with a single sub-folder are stepped through.

Masks may be CelebAMask-HQ's per-part folder (merged in the official order) or a folder of
ready label maps `{id}.png` in any encoding `io.read_mask` accepts. Without masks the
converter derives nothing from nowhere: samples simply have no mask.

The split pickles are read with an unpickler that refuses every class and function
reference, so a tampered file cannot run code: only plain lists of names load.
"""
from __future__ import annotations

import functools
import pickle
from pathlib import Path

from .. import io
from ..errors import FaceweaveError
from . import celebamask_hq
from .source import (SourceSample, by_stem, find_dir, find_file, layout_error, list_images,
                     read_text_lines)

LAYOUT = "mm-celeba-hq"
IMAGE_DIRS = ("images/faces", "image/images", "image", "images", celebamask_hq.IMAGE_DIR)
TEXT_DIRS = ("text/celeba-caption", "celeba-caption", "celeba-captions", "text")
SKETCH_DIRS = ("sketch/sketch", "sketch", "sketches")
LABEL_DIRS = ("label", "labels", "CelebAMask-HQ-mask", "mask", "masks")
ATTRIBUTE_FILES = (celebamask_hq.ATTRIBUTE_FILE, "celeba-hq-attribute.txt", "list_attr_celeba-hq.txt")
SPLIT_FILES = {"train": "train/filenames.pickle", "test": "test/filenames.pickle"}
SKETCH_SUFFIXES = ("", "_edges", "_sketch")  # create_sketch.py writes {id}_edges.jpg


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads lists, tuples, strings and numbers only; any class or callable is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused reference to {module}.{name}")


def read_split_file(path: Path) -> set[str]:
    """A filenames.pickle -> the set of image stems it names."""
    try:
        with open(path, "rb") as f:
            names = _PlainDataUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise FaceweaveError(f"{path}: not a pickled list of file names ({exc})") from None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes, int)) for n in names):
        raise FaceweaveError(f"{path}: expected a list of file names, got {type(names).__name__}")
    stems = set()
    for name in names:
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        stems.add(Path(name).stem)
    return stems


def read_splits(src: Path) -> dict[str, str]:
    """stem -> "train" / "test" from the release's split pickles ({} when absent)."""
    splits: dict[str, str] = {}
    for split, relative in SPLIT_FILES.items():
        if (src / relative).is_file():
            for stem in read_split_file(src / relative):
                if stem in splits:
                    raise FaceweaveError(
                        f"{stem} is listed in both {SPLIT_FILES['train']} and {SPLIT_FILES['test']}; "
                        "fix or remove the split files"
                    )
                splits[stem] = split
    return splits


def _mask_loaders(src: Path, stems: list[str]) -> dict[str, functools.partial]:
    """stem -> mask loader, from per-part masks or a folder of label maps ({} when neither)."""
    parts_dir = src / celebamask_hq.PARTS_DIR
    if parts_dir.is_dir():
        parts = celebamask_hq.index_part_masks(parts_dir)
        loaders = {}
        for stem in stems:
            if not stem.isdigit() or int(stem) not in parts:
                raise FaceweaveError(f"no part masks for image {stem} in {parts_dir}")
            loaders[stem] = functools.partial(celebamask_hq.merge_part_masks, parts[int(stem)])
        return loaders
    label_dir = find_dir(src, LABEL_DIRS)
    if label_dir is None:
        return {}
    labels = by_stem(list_images(label_dir), "label maps")
    missing = [s for s in stems if s not in labels]
    if missing:
        raise FaceweaveError(
            f"{label_dir} has no label map for {len(missing)} image(s), e.g. {missing[0]}.png; "
            "every image needs one (or remove the folder to convert without masks)"
        )
    return {stem: functools.partial(io.read_mask, labels[stem]) for stem in stems}


def _sketch_files(src: Path) -> dict[str, Path]:
    """stem -> the release's sketch file, accepting {id}.jpg and {id}_edges.jpg names."""
    sketch_dir = find_dir(src, SKETCH_DIRS)
    if sketch_dir is None:
        return {}
    files = {}
    for path in list_images(sketch_dir):
        stem = path.stem
        for suffix in SKETCH_SUFFIXES[1:]:
            stem = stem.removesuffix(suffix)
        files[stem] = path
    return files


def scan(src: Path, limit: int | None = None) -> list[SourceSample]:
    """List the samples of an MM-CelebA-HQ folder (the first `limit` names when given)."""
    image_dir, text_dir = find_dir(src, IMAGE_DIRS), find_dir(src, TEXT_DIRS)
    if image_dir is None or text_dir is None:
        raise layout_error(LAYOUT, src, "image/images/ (or images/, CelebA-HQ-img/) and text/celeba-caption/")
    photos = by_stem(list_images(image_dir), "photos")
    stems = sorted(photos, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))[:limit]
    if not stems:
        raise FaceweaveError(f"no photos in {image_dir} (looked for .jpg/.png/.webp/.bmp files)")

    masks = _mask_loaders(src, stems)
    sketches = _sketch_files(src)
    attribute_file = find_file(src, ATTRIBUTE_FILES)
    attributes = celebamask_hq.read_attribute_file(attribute_file) if attribute_file else {}
    splits = read_splits(src)
    if not splits and (src / celebamask_hq.MAPPING_FILE).is_file():
        mapping = celebamask_hq.read_mapping(src / celebamask_hq.MAPPING_FILE)
        splits = {str(i): celebamask_hq.official_split(o) for i, o in mapping.items()}

    samples = []
    for stem in stems:
        caption_file = text_dir / f"{stem}.txt"
        if not caption_file.is_file():
            raise FaceweaveError(f"missing captions for {photos[stem].name}: expected {caption_file}")
        samples.append(SourceSample(
            name=stem,
            image=photos[stem],
            load_mask=masks.get(stem),
            sketch=sketches.get(stem),
            captions=functools.partial(read_text_lines, caption_file),
            attributes=attributes.get(stem),
            extra={"split": splits[stem]} if stem in splits else {},
        ))
    return samples
