"""Convert a data set from its published layout into the unified folder format, once.

    faceweave data prepare --layout celebamask-hq --src ~/CelebAMask-HQ --out data/cmhq256 --size 256
    faceweave data synth --out data/facesynth64 --n 10000 --size 64

Training then reads every source the same way (`UnifiedDataset`), and the slow parts of
real data (1024 px JPEG decoding, merging 18 part masks, extracting sketches) are paid
once instead of every epoch.

Per sample: the photo is resized with `io.resize_image`, the mask with nearest-neighbour
`io.resize_mask` (class ids must not blend). Without --size, nothing is up-sampled: the
output takes the smaller of the photo and the mask (CelebAMask-HQ: 1024 px photos, 512 px
masks -> 512). Sketches come from the layout when it ships them, else from the mask (clean
part outlines), else from the photo (XDoG). Captions are the layout's own; when it has
none but attributes are known, `text.captions_from_attributes` writes some, seeded by the
sample's name so a re-run gives the same text.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import io
from ..conditions import check_size
from ..errors import FaceweaveError
from ..text import captions_from_attributes
from . import celebamask1k, celebamask_hq, folder, mm_celeba_hq
from .source import SourceSample
from .unified import FaceSynthDataset, UnifiedWriter

LAYOUTS = {
    celebamask_hq.LAYOUT: celebamask_hq.scan,
    mm_celeba_hq.LAYOUT: mm_celeba_hq.scan,
    folder.LAYOUT: folder.scan,
    celebamask1k.LAYOUT: celebamask1k.scan,
    celebamask1k.PHOTOS_LAYOUT: celebamask1k.scan_photos,
}


def _fit(image: np.ndarray, mask: np.ndarray | None, size: int | None):
    """Bring photo and mask to one resolution (see the module docstring)."""
    if size is None:
        shapes = [image.shape[:2]] + ([mask.shape] if mask is not None else [])
        height, width = min(shapes, key=lambda hw: hw[0] * hw[1])
        if height != width:  # a non-square photo keeps its shape unless --size squares it
            if mask is not None and mask.shape != image.shape[:2]:
                raise FaceweaveError(f"photo is {image.shape[1]}x{image.shape[0]} and its mask "
                                     f"{mask.shape[1]}x{mask.shape[0]}; pass --size to square both")
            return image, mask
        size = height
    if image.shape[:2] != (size, size):
        image = io.resize_image(image, size)
    if mask is not None and mask.shape != (size, size):
        mask = io.resize_mask(mask, size)
    return image, mask


def _load(sample: SourceSample, size: int | None):
    image = io.read_image(sample.image)
    mask = sample.load_mask() if sample.load_mask is not None else None
    if sample.derive is not None:   # read labels off the full-resolution pixels, before resizing
        sample.attributes = {**sample.derive(image, mask), **(sample.attributes or {})}
    image, mask = _fit(image, mask, size)
    height, width = image.shape[:2]
    if sample.sketch is not None:
        sketch = io.read_sketch(sample.sketch, size=height if height == width else None)
    elif mask is not None:
        sketch = io.sketch_from_mask(mask)
    else:
        sketch = io.sketch_from_image(image)
    return image, mask, sketch


def _captions(sample: SourceSample) -> list[str]:
    captions = sample.read_captions()
    if captions or not sample.attributes:
        return captions
    rng = np.random.default_rng(zlib.crc32(sample.name.encode("utf-8")))
    return captions_from_attributes(sample.attributes, rng)


def _check_paths(src: Path, out: Path) -> None:
    if not src.exists():
        raise FaceweaveError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise FaceweaveError(f"--src must be a folder, {src} is a file")
    src_abs, out_abs = src.resolve(), out.expanduser().resolve()
    if out_abs == src_abs or out_abs in src_abs.parents:
        raise FaceweaveError(f"--out {out} would replace the source folder {src}; choose another --out")


def _check_count(name: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise FaceweaveError(f"{name} must be a positive whole number, got {value!r}")
    return value


def prepare(layout: str, src: str | os.PathLike, out: str | os.PathLike, size: int | None = None,
            overwrite: bool = False, limit: int | None = None, progress: bool = True) -> int:
    """Convert `src` (in `layout`) into a unified folder at `out`; returns the sample count.

    layout     celebamask-hq | mm-celeba-hq | folder | celebamask-1k | celebamask-1k-photos
    size       output side in pixels (square); None keeps the source resolution
    overwrite  replace an existing `out` (it is only replaced once the new one is complete)
    limit      convert only the first `limit` images (quick trials)
    """
    key = layout.strip().lower().replace("_", "-")
    if key not in LAYOUTS:
        raise FaceweaveError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    src, out = Path(src).expanduser(), Path(out).expanduser()
    _check_paths(src, out)
    size = None if size is None else check_size(size)
    _check_count("limit", limit)

    samples = LAYOUTS[key](src, limit)
    with UnifiedWriter(out, overwrite, source=key, info={"source_path": str(src.resolve())}) as writer:
        for sample in tqdm(samples, desc=f"prepare {key}", unit="img", disable=not progress):
            try:
                image, mask, sketch = _load(sample, size)
                captions = _captions(sample)
            except (FaceweaveError, OSError) as exc:
                raise FaceweaveError(f"cannot convert {sample.image}: {exc}") from None
            writer.add(sample.name, image, mask, sketch, captions, sample.attributes, **sample.extra)
    return len(samples)


def synthesize(out: str | os.PathLike, n: int, size: int, seed: int = 0, split: str = "train",
               overwrite: bool = False, progress: bool = True) -> int:
    """Render n FaceSynth faces of `split` into a unified folder (`faceweave data synth`).

    Each record keeps its split and the renderer's parameters, so a folder made for
    evaluation can be checked never to overlap the training faces.
    """
    _check_count("n", n)
    faces = FaceSynthDataset(size, n=n, seed=seed, split=split)  # validates size, seed, split
    info = {"split": split, "seed": seed, "render_seed": faces.render_seed}
    with UnifiedWriter(Path(out).expanduser(), overwrite, source="facesynth", info=info) as writer:
        for index in tqdm(range(n), desc="render facesynth", unit="img", disable=not progress):
            face = faces.render(index)
            writer.add(f"{index:06d}", face.image, face.mask, face.sketch, face.captions,
                       face.attributes, split=split, params=face.params)
    return n
