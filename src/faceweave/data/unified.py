"""The unified folder format, the one thing every training and evaluation command reads.

    OUT/images/NAME.png       RGB photo
    OUT/masks/NAME.png        label map, single-channel index PNG (value = class id 0..18)
    OUT/sketches/NAME.png     sketch, black lines on white on disk (inverted when loaded)
    OUT/captions.jsonl        one line per sample, in order:
                              {"file": "NAME.png", "captions": [...], "attributes": {"Smiling": 1, ...},
                               ...optional extra keys: "split", "params", ...}
    OUT/info.json             {"format", "version", "count", "size", "source", "created_by", ...}

`masks/` and `sketches/` are all-or-none: every sample has one or none does, so batches
always have the same keys. `attributes` lists only the attributes that are known.

Readers of other layouts (celebamask_hq, mm_celeba_hq, folder) are converted into this once
(`prepare.prepare`), FaceSynth is written into it (`prepare.synthesize`) or rendered on the
fly (`FaceSynthDataset`); `open_dataset` turns a --data spec into either. Training code sees
one sample dict whatever the source:

    image       float32 3 x H x W in [-1, 1]
    mask        int64 H x W class ids (key absent when the data set has no masks)
    sketch      float32 1 x H x W in [0, 1], lines = 1 on 0 (key absent without sketches)
    attributes  float32 (40,) over conditions.CELEBA_ATTRIBUTES: 1 present, 0 absent,
                -1 unknown (a real photo's unlabelled attribute must not be read as "absent";
                losses mask out the -1 entries)
    captions    list[str] (may be empty)
    file        the sample's file name, NAME.png
    flipped     bool tensor: the sample was mirrored by the `flip` augmentation (what is stored
                per file, e.g. a photo's W+ code, describes the unmirrored one)

Use `collate` with a DataLoader: captions are lists of varying length, which torch's
default collate cannot batch.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .. import io
from ..conditions import (ATTRIBUTE_INDEX, CELEBA_ATTRIBUTES, MIRRORED_CLASSES, Conditions, check_size,
                          validate_attributes)
from ..errors import FaceweaveError

FORMAT = "faceweave-unified"
FORMAT_VERSION = 1
CAPTIONS_FILE = "captions.jsonl"
INFO_FILE = "info.json"
IMAGES, MASKS, SKETCHES = "images", "masks", "sketches"
RESERVED_KEYS = ("file", "captions", "attributes")
UNKNOWN_ATTRIBUTE = -1.0


def attribute_vector(attributes: Mapping[str, int] | None) -> np.ndarray:
    """{name: 0/1} -> float32 (40,): 1 present, 0 absent, -1 unknown (not listed)."""
    vector = np.full(len(CELEBA_ATTRIBUTES), UNKNOWN_ATTRIBUTE, np.float32)
    for name, value in validate_attributes(attributes).items():
        vector[ATTRIBUTE_INDEX[name]] = value
    return vector


def to_sample(image: np.ndarray, mask: np.ndarray | None, sketch: np.ndarray | None,
              attributes: Mapping[str, int] | None, captions, file: str, flipped: bool = False) -> dict:
    """uint8 arrays -> the sample dict described in the module docstring."""
    out = {
        "image": torch.from_numpy(np.require(image, requirements="CW")).permute(2, 0, 1) / 127.5 - 1.0,
        "attributes": torch.from_numpy(attribute_vector(attributes)),
        "captions": list(captions),
        "file": file,
        "flipped": torch.tensor(bool(flipped)),
    }
    if mask is not None:
        out["mask"] = torch.from_numpy(np.asarray(mask, dtype=np.int64))
    if sketch is not None:
        out["sketch"] = torch.from_numpy(np.require(sketch, requirements="CW")).float().unsqueeze(0) / 255.0
    return out


def collate(batch: list[dict]) -> dict:
    """Stack tensors, keep captions and file names as lists (DataLoader(collate_fn=collate))."""
    return {
        key: torch.stack([item[key] for item in batch]) if torch.is_tensor(batch[0][key])
        else [item[key] for item in batch]
        for key in batch[0]
    }


def _file_name(name: str) -> str:
    stem = name.removesuffix(".png")
    if not stem or stem.startswith(".") or any(c in stem for c in "/\\\0") or not stem.isprintable():
        raise FaceweaveError(f"sample name {name!r} cannot be a file name; use letters, digits, '-', '_'")
    return stem + ".png"


class UnifiedWriter:
    """Writes a unified folder all at once or not at all.

        with UnifiedWriter("data/celebamask256", source="celebamask-hq") as writer:
            writer.add("0", image, mask=mask, sketch=sketch, captions=[...], attributes={...})

    Everything goes to a hidden staging folder first (io.output_folder); only a `with` block
    that ends without an exception renames it into place (replacing an old folder when
    `overwrite`). A crash, Ctrl-C or a full disk therefore never leaves a half-written data
    set that a later training run would silently read; the partial folder is removed.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False, *,
                 source: str = "unknown", created_by: str | None = None,
                 info: Mapping | None = None):
        self.out = Path(out_dir).expanduser().absolute()
        self.overwrite = overwrite
        self.info = {"source": source,
                     "created_by": created_by or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                     **(info or {})}
        self._tmp: Path | None = None

    def __enter__(self) -> "UnifiedWriter":
        self._folder = io.output_folder(self.out, self.overwrite)   # checked before hours of conversion
        self._tmp = self._folder.__enter__()
        try:
            for sub in (IMAGES, MASKS, SKETCHES):
                (self._tmp / sub).mkdir()
            self._captions = open(self._tmp / CAPTIONS_FILE, "w", encoding="utf-8")
        except BaseException as e:
            self._folder.__exit__(type(e), e, e.__traceback__)       # an OSError becomes one error line
            raise
        self._files: set[str] = set()
        self._shapes: Counter = Counter()
        self._counts = Counter()
        return self

    def add(self, name: str, image: np.ndarray, mask: np.ndarray | None = None,
            sketch: np.ndarray | None = None, captions=(), attributes: Mapping[str, int] | None = None,
            **extra) -> None:
        """Store one sample. image H x W x 3 uint8, mask H x W ids, sketch H x W lines=255 on 0."""
        if self._tmp is None:
            raise RuntimeError("UnifiedWriter.add outside its `with` block")
        file = _file_name(name)
        if file in self._files:
            raise FaceweaveError(f"two samples are named {file}; sample names must be unique")
        checked = Conditions(image=image, mask=mask, sketch=sketch, attributes=attributes)
        shape = checked.image.shape[:2]
        for what, array in (("mask", checked.mask), ("sketch", checked.sketch)):
            if array is not None and array.shape != shape:
                raise FaceweaveError(f"{file}: {what} is {array.shape[1]}x{array.shape[0]} "
                                     f"but the image is {shape[1]}x{shape[0]}")
        clash = sorted(set(extra) & set(RESERVED_KEYS))
        if clash:
            raise FaceweaveError(f"{file}: extra keys {clash} clash with the format's own keys")
        captions = [captions] if isinstance(captions, str) else list(captions)
        if not all(isinstance(c, str) for c in captions):
            raise FaceweaveError(f"{file}: captions must be strings")

        io.write_png(self._tmp / IMAGES / file, checked.image)
        if checked.mask is not None:
            io.write_mask(self._tmp / MASKS / file, checked.mask)
            self._counts["mask"] += 1
        if checked.sketch is not None:
            io.write_sketch(self._tmp / SKETCHES / file, checked.sketch)
            self._counts["sketch"] += 1
        record = {"file": file, "captions": captions, "attributes": checked.attributes, **extra}
        self._captions.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._files.add(file)
        self._shapes[shape] += 1

    def __len__(self) -> int:
        return len(self._files)

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._captions.close()
        if exc_type is None:
            try:
                self._finish()
            except BaseException as e:
                self._folder.__exit__(type(e), e, e.__traceback__)   # removes the staging folder
                raise
        self._tmp = None
        self._folder.__exit__(exc_type, exc, tb)    # in place, or removed; an OSError becomes one error line
        return False

    def _finish(self) -> None:
        count = len(self._files)
        if count == 0:
            raise FaceweaveError("no samples were written, so no data folder was made")
        for what in ("mask", "sketch"):
            if 0 < self._counts[what] < count:
                raise FaceweaveError(f"only {self._counts[what]} of {count} samples have a {what}; "
                                     f"give every sample a {what} or none")
        for sub, what in ((MASKS, "mask"), (SKETCHES, "sketch")):
            if not self._counts[what]:
                (self._tmp / sub).rmdir()
        size = None  # mixed sizes: readers must be given a size
        if len(self._shapes) == 1:
            (height, width), = self._shapes
            size = height if height == width else [height, width]
        info = {"format": FORMAT, "version": FORMAT_VERSION, "count": count, "size": size, **self.info}
        (self._tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def parse_record(line: str, where: str) -> dict:
    """One captions.jsonl line -> its object, which must name a "file"; errors say where."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FaceweaveError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        raise FaceweaveError(f"{where}: expected an object with a \"file\" name")
    return record


def read_records(path: Path) -> list[dict]:
    """captions.jsonl -> records, each checked; errors name the line."""
    path = Path(path)
    if not path.is_file():
        where = path.parent
        what = "does not exist" if not where.exists() else f"has no {path.name}"
        raise FaceweaveError(f"{where} {what}: not a unified data folder (make one with "
                             "`faceweave data synth` or `faceweave data prepare`)")
    records, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            record = parse_record(line, where)
            captions = record.setdefault("captions", [])
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise FaceweaveError(f"{where}: \"captions\" must be a list of strings")
            try:
                record["attributes"] = validate_attributes(record.get("attributes"))
            except FaceweaveError as exc:
                raise FaceweaveError(f"{where}: {exc}") from None
            if record["file"] in seen:
                raise FaceweaveError(f"{where}: {record['file']} is listed twice")
            seen.add(record["file"])
            records.append(record)
    return records


def _modality(root: Path, sub: str, files: list[str]) -> bool:
    """Whether the all-or-none folder `sub` is in use; a partial one is an error."""
    folder = root / sub
    present = set(os.listdir(folder)) if folder.is_dir() else set()
    if not present:
        return False
    missing = [f for f in files if f not in present]
    if missing:
        raise FaceweaveError(f"{folder} lacks {len(missing)} of {len(files)} files (e.g. {missing[0]}); "
                             "re-create the folder with `faceweave data prepare`")
    return True


def read_stored_sketch(path: Path, size: int | None) -> np.ndarray:
    """The exact inverse of io.write_sketch (black on white -> lines 255 on 0).

    io.read_sketch guesses polarity and stretches contrast, right for a user's drawing but
    not for our own files: a faint or blank stored sketch must load as it was written.
    """
    try:
        with Image.open(path) as im:
            sketch = 255 - np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise FaceweaveError(f"cannot read sketch {path}: {exc}") from None
    return sketch if size is None else io.resize_image(sketch, size)


def hflip(image: np.ndarray, mask: np.ndarray | None, sketch: np.ndarray | None):
    """Mirror a sample left-right; the mask's left/right classes trade places."""
    image = np.ascontiguousarray(image[:, ::-1])
    if mask is not None:
        mask = np.asarray(MIRRORED_CLASSES, np.uint8)[np.ascontiguousarray(mask[:, ::-1])].astype(mask.dtype)
    if sketch is not None:
        sketch = np.ascontiguousarray(sketch[:, ::-1])
    return image, mask, sketch


def jitter(image: np.ndarray, mask: np.ndarray | None, sketch: np.ndarray | None, rng: np.random.Generator):
    """A random small similarity transform (scale 0.9-1.1, rotation +-10 degrees, shift +-6 %)
    and brightness/contrast change (+-15 %), for training an instrument (the parser) on few
    photos; masks move with nearest-neighbour sampling so class ids never blend."""
    import cv2

    size = image.shape[0]
    angle, scale = rng.uniform(-10, 10), rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[:, 2] += rng.uniform(-0.06, 0.06, 2) * size
    warp = dict(dsize=(image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    image = cv2.warpAffine(image, matrix, flags=cv2.INTER_LINEAR, **warp)
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-0.15, 0.15) * 255 * 0.5
    image = np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    if mask is not None:
        mask = cv2.warpAffine(mask, matrix, flags=cv2.INTER_NEAREST, **warp)
    if sketch is not None:
        sketch = cv2.warpAffine(sketch, matrix, flags=cv2.INTER_LINEAR, **warp)
    return image, mask, sketch


class UnifiedDataset(Dataset):
    """A unified folder as a torch Dataset of sample dicts (see the module docstring).

    size   resize everything to size x size on load (None: keep the stored size)
    split  keep only samples whose "split" is this (None: all samples)
    flip   mirror each sample left-right with probability 1/2 (torch's random stream, so
           seeded per DataLoader worker), left and right classes of the mask swapped
    jitter also move, scale, rotate and re-light each sample a little (`jitter`)
    The folder is checked when opened, so a missing file fails now, not hours into training.
    """

    def __init__(self, root: str | os.PathLike, size: int | None = None, split: str | None = None,
                 flip: bool = False, jitter: bool = False):
        self.root = Path(root).expanduser()
        self.flip, self.jitter = flip, jitter
        if not self.root.is_dir():
            raise FaceweaveError(f"data folder {self.root} does not exist")
        if not (self.root / CAPTIONS_FILE).is_file():
            raise FaceweaveError(
                f"{self.root} is not a unified data folder (no {CAPTIONS_FILE}); convert a data set "
                "with `faceweave data prepare --layout ...` or render one with `faceweave data synth`"
            )
        self.size = None if size is None else check_size(size)
        records = read_records(self.root / CAPTIONS_FILE)
        if split is not None:
            splits = Counter(r.get("split") for r in records)
            if split not in splits:
                known = ", ".join(f"{s} ({n})" for s, n in sorted((s, n) for s, n in splits.items() if s))
                raise FaceweaveError(f"{self.root} has no {split!r} samples; "
                                     + (f"its splits: {known}" if known else "it has no split labels"))
            records = [r for r in records if r.get("split") == split]
        if not records:
            raise FaceweaveError(f"{self.root}/{CAPTIONS_FILE} lists no samples")
        files = [r["file"] for r in records]
        if not _modality(self.root, IMAGES, files):
            raise FaceweaveError(f"{self.root / IMAGES} is missing or empty; every sample needs an image")
        self.has_mask = _modality(self.root, MASKS, files)
        self.has_sketch = _modality(self.root, SKETCHES, files)
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        file = record["file"]
        image = io.read_image(self.root / IMAGES / file)
        if self.size is not None and image.shape[:2] != (self.size, self.size):
            image = io.resize_image(image, self.size)
        mask = io.read_mask(self.root / MASKS / file, size=self.size) if self.has_mask else None
        sketch = read_stored_sketch(self.root / SKETCHES / file, self.size) if self.has_sketch else None
        flipped = self.flip and bool(torch.rand(()) < 0.5)
        if flipped:
            image, mask, sketch = hflip(image, mask, sketch)
        if self.jitter:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
            image, mask, sketch = jitter(image, mask, sketch, rng)
        return to_sample(image, mask, sketch, record["attributes"], record["captions"], file, flipped)


# FaceSynth seeds are split by range: a face is a function of (renderer seed, index), and
# each split owns its own range of renderer seeds, so no face of "val" or "test" can ever
# appear in "train", whatever n or seed a training run asks for. Evaluation (the metrics'
# "ceiling") reads "test"; model selection reads "val".
SPLIT_SEEDS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "val": range(1_000_000, 2_000_000),
    "test": range(2_000_000, 3_000_000),
}
DEFAULT_FACESYNTH_N = 10_000


def facesynth_seed(split: str, seed: int = 0) -> int:
    """The renderer seed of `split`'s seed number `seed` (0 <= seed < 1,000,000)."""
    if split not in SPLIT_SEEDS:
        raise FaceweaveError(f"unknown split {split!r}; FaceSynth splits are {', '.join(SPLIT_SEEDS)}")
    seeds = SPLIT_SEEDS[split]
    if not 0 <= seed < len(seeds):
        raise FaceweaveError(f"seed {seed} is out of range; use 0..{len(seeds) - 1}")
    return seeds[seed]


class FaceSynthDataset(Dataset):
    """FaceSynth faces rendered on the fly: sample i is synth.render(split seed, i, size).

    Deterministic (the same arguments give the same faces on every machine) and needs no
    disk; the sample dicts match UnifiedDataset's, with mask and sketch always present.
    """

    def __init__(self, size: int, n: int = DEFAULT_FACESYNTH_N, seed: int = 0, split: str = "train"):
        from .. import synth  # the renderer is only needed when FaceSynth is used

        self.size = check_size(size)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise FaceweaveError(f"n must be a positive number of faces, got {n!r}")
        self.n, self.split = n, split
        self.render_seed = facesynth_seed(split, seed)
        self._render = synth.render

    def __len__(self) -> int:
        return self.n

    def render(self, index: int):
        """The synth.FaceSample of face `index` (arrays, attributes, captions, params)."""
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self._render(self.render_seed, index, self.size)

    def __getitem__(self, index: int) -> dict:
        face = self.render(index)
        return to_sample(face.image, face.mask, face.sketch, face.attributes, face.captions,
                         f"{index:06d}.png")


SPEC_FORMS = (
    "facesynth:SIZE[:n=N][:seed=K] (FaceSynth rendered on the fly, e.g. facesynth:64:n=10000)",
    "celebamask1k:SIZE[:root=DIR][:photos][:jitter] (the real celebamask-1k photos, converted once and cached)",
    "the path of a unified data folder (made by `faceweave data prepare` or `faceweave data synth`)",
)


def _open_celebamask1k(spec: str, fields: list[str], size: int | None, split: str | None) -> Dataset:
    """celebamask1k:SIZE[:root=DIR][:photos][:jitter]; "train" flips at random (see
    data.celebamask1k), and with :jitter also moves and re-lights (for instruments)."""
    from . import celebamask1k

    spec_size, root, photos, jittered = None, None, False, False
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep and key.isdigit() and spec_size is None:
            spec_size = int(key)
        elif sep and key == "root" and value:
            root = value
        elif not sep and key == "photos":
            photos = True
        elif not sep and key == "jitter":
            jittered = True
        else:
            raise _spec_error(spec, f"cannot read {field!r}")
    if spec_size is not None and size is not None and spec_size != size:
        raise FaceweaveError(f"data spec {spec!r} asks for {spec_size} px but {size} px are needed; "
                             f"use celebamask1k:{size}")
    size = check_size(spec_size or size or 256)
    folder = celebamask1k.prepared(size, root=root, photos=photos)
    return UnifiedDataset(folder, size=size, split=split, flip=split == "train",
                          jitter=jittered and split == "train")


def _spec_error(spec: str, why: str) -> FaceweaveError:
    return FaceweaveError(f"bad data spec {spec!r}: {why}; use " + " or ".join(SPEC_FORMS))


def photo_instruments(spec: str) -> dict:
    """The instruments a model trained on `spec` should read photos with (config.json
    "instruments"): the real-face parser for celebamask1k, the bundled defaults otherwise
    (FaceSynth; a folder, whose faces may be either: --set a model's own where it matters)."""
    from ..eval.real import BUNDLED_REAL_PARSERS

    name = str(spec).split(":")[0].strip().lower()
    real = name == "celebamask1k" and not Path(spec).expanduser().is_dir()
    return {"parser": BUNDLED_REAL_PARSERS[64]} if real else {}


def open_dataset(spec: str, size: int | None = None, split: str | None = None) -> Dataset:
    """A data spec -> a Dataset of sample dicts.

    spec   "facesynth:64", "facesynth:64:n=10000:seed=1", or a unified folder path
    size   the resolution the caller needs; a FaceSynth spec without a size takes it
    split  FaceSynth: train (default) / val / test; a folder: its "split" labels (None: all)
    """
    if Path(spec).expanduser().is_dir():
        return UnifiedDataset(spec, size=size, split=split)
    name, *fields = spec.split(":")
    if name.strip().lower() == "celebamask1k":
        return _open_celebamask1k(spec, fields, size, split)
    if name.strip().lower() != "facesynth":
        raise _spec_error(spec, "no such folder, and not a facesynth or celebamask1k spec")
    options = {"n": DEFAULT_FACESYNTH_N, "seed": 0}
    spec_size = None
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep and spec_size is None and key.isdigit():
            spec_size = int(key)
        elif sep and key in options and value.isdigit():
            options[key] = int(value)
        else:
            raise _spec_error(spec, f"cannot read {field!r}")
    if spec_size is not None and size is not None and spec_size != size:
        raise FaceweaveError(f"data spec {spec!r} renders {spec_size} px but {size} px are needed; "
                             f"use facesynth:{size}")
    if spec_size is None and size is None:
        raise _spec_error(spec, "no image size given")
    return FaceSynthDataset(spec_size or size, n=options["n"], seed=options["seed"], split=split or "train")
