"""The vocabulary every part of faceweave shares, and `Conditions`, the one typed input.

* the 19 CelebAMask-HQ classes (ids 0..18, names, the official colour palette);
* the 40 CelebA attribute names;
* `Conditions`: prompt, attributes, mask (H x W class ids), sketch, reference image.
  It validates itself on construction, so a backend never sees a malformed input.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Mapping

import numpy as np

from .errors import FaceweaveError

# CelebAMask-HQ label ids, in the official order (its g_mask.py merges the per-part masks
# in this order, so a later part overwrites an earlier one where they overlap).
# l_* is the subject's left, which appears on the image's right.
CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow",
    "l_ear", "r_ear", "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l",
    "neck", "cloth",
)
NUM_CLASSES = len(CLASSES)
CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}
# Class ids of the mirror image: a face flipped left-right has its left eye where its right
# eye was, so the left/right pairs trade ids (MIRRORED_CLASSES[c] is c's counterpart).
MIRRORED_CLASSES: tuple[int, ...] = tuple(
    CLASS_ID[{"l_eye": "r_eye", "r_eye": "l_eye", "l_brow": "r_brow", "r_brow": "l_brow",
              "l_ear": "r_ear", "r_ear": "l_ear"}.get(name, name)] for name in CLASSES)
# Plain-language names for reports and the app.
CLASS_LABELS: dict[str, str] = {
    "background": "background", "skin": "skin", "nose": "nose", "eye_g": "eyeglasses",
    "l_eye": "left eye", "r_eye": "right eye", "l_brow": "left eyebrow",
    "r_brow": "right eyebrow", "l_ear": "left ear", "r_ear": "right ear",
    "mouth": "mouth (inner)", "u_lip": "upper lip", "l_lip": "lower lip", "hair": "hair",
    "hat": "hat", "ear_r": "earring", "neck_l": "necklace", "neck": "neck", "cloth": "cloth",
}

# The colour palette of CelebAMask-HQ's own colour-coded masks (and of its palette PNGs).
CELEBAMASK_PALETTE = np.array([
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204),
    (0, 255, 255), (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0),
    (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51),
    (0, 204, 0),
], dtype=np.uint8)

# The 40 CelebA attributes, in the order of list_attr_celeba.txt.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
ATTRIBUTE_INDEX: dict[str, int] = {name: i for i, name in enumerate(CELEBA_ATTRIBUTES)}
_ATTRIBUTE_BY_LOWER = {name.lower(): name for name in CELEBA_ATTRIBUTES}

# The longest prompt accepted, in characters (whitespace runs count as one). The text encoder
# reads only its first 48 tokens (models/text_encoder.py MAX_TOKENS), about 200 characters
# at the 4.3 characters per token of FaceSynth captions; the prompt -> attributes parser
# (text.parse_prompt) reads all of it, at a cost that grows with the square of the length (a
# run of modifiers: 0.05 s at 1,000 characters, 0.75 s at 4,000, 2.9 s at 8,000 on a 2-core
# CPU; benchmarks/long_prompt.py). 1,000 keeps any real description, five times what the
# encoder reads, and bounds the parser to a fraction of a second; a pasted document is
# refused instead of parsed for minutes.
MAX_PROMPT_CHARS = 1000


def check_prompt(prompt) -> str | None:
    """A prompt as the models read it: its whitespace runs collapsed to one space, None when
    nothing is left, at most MAX_PROMPT_CHARS characters (else an error)."""
    if prompt is None:
        return None
    if not isinstance(prompt, str):
        raise FaceweaveError(f"prompt must be text, got {type(prompt).__name__}")
    prompt = " ".join(prompt.split())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise FaceweaveError(f"the prompt is {len(prompt):,} characters long, over the limit of "
                             f"{MAX_PROMPT_CHARS:,}; describe the face in fewer words (the text encoder "
                             "reads about the first 200 characters)")
    return prompt or None


def canonical_attribute(name: str) -> str:
    """'smiling', 'Smiling' and 'wearing-hat' all name a CelebA attribute; anything else is an error."""
    key = name.strip().replace("-", "_").replace(" ", "_").lower()
    if key in _ATTRIBUTE_BY_LOWER:
        return _ATTRIBUTE_BY_LOWER[key]
    close = [a for a in CELEBA_ATTRIBUTES if key[:4] and key[:4] in a.lower()]
    hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
    raise FaceweaveError(
        f"unknown attribute {name!r}{hint}; use one of the 40 CelebA names, "
        f"e.g. Smiling, Male, Eyeglasses (`faceweave describe --help` lists them)"
    )


def validate_attributes(attributes: Mapping[str, int | bool | float] | None) -> dict[str, int]:
    """Canonical names -> 0/1. Values must be 0/1 (or bools); None means 'no attribute condition'."""
    out: dict[str, int] = {}
    if attributes is not None and not isinstance(attributes, Mapping):
        raise FaceweaveError(f"attributes must be a dict of name -> 0 or 1, e.g. {{'Smiling': 1}}, "
                             f"got {type(attributes).__name__}")
    for name, value in (attributes or {}).items():
        canon = canonical_attribute(name)
        if isinstance(value, bool):
            value = int(value)
        if value not in (0, 1):
            raise FaceweaveError(f"attribute {canon} must be 0 or 1, got {value!r}")
        out[canon] = int(value)
    return out


def _as_uint8_image(name: str, array: np.ndarray, channels: int | None) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
            raise FaceweaveError(f"{name} must be a numeric array, got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise FaceweaveError(f"{name} contains NaN or infinite values; pass a finite image")
        lo, hi = float(array.min(initial=0)), float(array.max(initial=0))
        if np.issubdtype(array.dtype, np.floating) and hi <= 1.0 and lo >= 0.0:
            array = np.round(array * 255.0)
        elif lo < 0 or hi > 255:
            raise FaceweaveError(f"{name} values must lie in 0..255 (or 0..1 floats), got {lo}..{hi}")
        array = array.astype(np.uint8)
    if channels == 1 and array.ndim != 2:
        raise FaceweaveError(f"{name} must be a 2-D (H x W) array, got shape {array.shape}")
    if channels == 3 and (array.ndim != 3 or array.shape[2] != 3):
        raise FaceweaveError(f"{name} must be an H x W x 3 RGB array, got shape {array.shape}")
    return array


@dataclasses.dataclass
class Conditions:
    """What the user asks for. Every field is optional; absent means 'not conditioned on'.

    prompt      free text, at most MAX_PROMPT_CHARS characters ("" or whitespace counts as absent)
    attributes  CelebA attribute name -> 0/1 (unnamed attributes: don't care)
    mask        H x W uint8 class ids 0..18 (CelebAMask-HQ order)
    sketch      H x W uint8, lines = 255 on 0 (white lines on black, as models consume it)
    image       H x W x 3 uint8 RGB: the photo to edit or the style reference
    """

    prompt: str | None = None
    attributes: dict[str, int] = dataclasses.field(default_factory=dict)
    mask: np.ndarray | None = None
    sketch: np.ndarray | None = None
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.prompt = check_prompt(self.prompt)
        self.attributes = validate_attributes(self.attributes)
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.ndim != 2:
                raise FaceweaveError(f"mask must be H x W class ids, got shape {mask.shape}")
            if not np.issubdtype(mask.dtype, np.integer):
                raise FaceweaveError(f"mask must hold integer class ids, got dtype {mask.dtype}")
            bad = np.unique(mask[(mask < 0) | (mask >= NUM_CLASSES)])
            if bad.size:
                raise FaceweaveError(
                    f"mask has class ids {bad[:8].tolist()} outside 0..{NUM_CLASSES - 1}; "
                    "masks use the 19 CelebAMask-HQ classes"
                )
            self.mask = mask.astype(np.uint8)
        if self.sketch is not None:
            self.sketch = _as_uint8_image("sketch", self.sketch, channels=1)
        if self.image is not None:
            self.image = _as_uint8_image("image", self.image, channels=3)

    @property
    def given(self) -> tuple[str, ...]:
        """The modalities present, in a fixed order."""
        names = []
        if self.prompt:
            names.append("prompt")
        if self.attributes:
            names.append("attributes")
        for name in ("mask", "sketch", "image"):
            if getattr(self, name) is not None:
                names.append(name)
        return tuple(names)

    def only(self, fields) -> "Conditions":
        """A copy keeping only the named fields (e.g. ("prompt", "mask")); the rest absent."""
        keep = set(fields)
        return Conditions(prompt=self.prompt if "prompt" in keep else None,
                          attributes=dict(self.attributes) if "attributes" in keep else {},
                          **{k: getattr(self, k) if k in keep else None for k in ("mask", "sketch", "image")})

    def digest(self) -> str:
        """A short hash of the conditions, written into every result's metadata."""
        h = hashlib.sha256()
        h.update(json.dumps({"prompt": self.prompt, "attributes": self.attributes},
                            sort_keys=True).encode())
        for name in ("mask", "sketch", "image"):
            arr = getattr(self, name)
            h.update(name.encode())
            if arr is not None:
                h.update(str(arr.shape).encode())
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]


def colorize_mask(mask: np.ndarray, palette: np.ndarray = CELEBAMASK_PALETTE) -> np.ndarray:
    """H x W class ids -> H x W x 3 RGB, for pictures."""
    return palette[np.asarray(mask, dtype=np.intp)]


def check_size(size: int, lo: int = 32, hi: int = 512) -> int:
    """Validate an image side length (the renderer and the models work from 32 to 512 px)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise FaceweaveError(f"size must be an integer number of pixels, got {size!r}")
    if not lo <= size <= hi:
        raise FaceweaveError(f"size {size} is out of range; choose a size from {lo} to {hi} pixels")
    return int(size)
