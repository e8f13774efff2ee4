"""Reading and writing the files users hand in: photos, label masks and sketches.

Every reader turns a bad file into one `FaceweaveError` line that names the problem and the
fix. Nothing here returns half-decoded pixels (truncated files are errors), decodes a
decompression bomb (the size is checked from the header first) or guesses silently (a mask
colour that no palette explains is an error, not class 0).

In memory                                  On disk
  image   H x W x 3 uint8 RGB                any format PIL reads; EXIF orientation applied
  mask    H x W uint8 class ids 0..18        index PNG (value = id), palette PNG (index = id)
                                             or colour-coded RGB PNG/JPEG (colour = class)
  sketch  H x W uint8, lines 255 on 0        dark lines on white, the way people draw

Writers are atomic (a temporary file in the same folder, then `os.replace`), so a crash
never leaves a half-written PNG where a finished one is expected; `output_folder` does the
same for a whole output folder, and `check_output_folder` refuses one that cannot be written
before any work starts.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .conditions import CELEBAMASK_PALETTE, CLASS_ID, CLASSES, NUM_CLASSES
from .errors import FaceweaveError

PathLike = str | os.PathLike

# A 40-megapixel photo is ~120 MB decoded; anything bigger is more likely a mistake (or a
# decompression bomb: a few KB of PNG that inflates to gigabytes) than a face.
DEFAULT_MAX_PIXELS = 40_000_000
# The smallest side of a face photo: below it no face has enough pixels for the face detector's
# 12 px window plus context (align.py), and every model works at 32 px or more (check_size).
MIN_PHOTO_SIDE = 32

# ---------------------------------------------------------------------------------------
# Colour palettes of colour-coded masks. Row i is the colour of OUR class id i
# (conditions.CLASSES). read_mask tries them all and keeps the one that explains most pixels.
# ---------------------------------------------------------------------------------------

# SEAN (ZPdesu/SEAN ui/util.py) and CelebAMask-HQ's own face_parsing/utils.py `labelcolormap(19)`,
# which SPADE-style face demos inherited, differ from the dataset's g_color.py palette in one
# entry: r_brow is cyan-white (51, 255, 255) instead of pink (255, 204, 204).
_SEAN_PALETTE = CELEBAMASK_PALETTE.copy()
_SEAN_PALETTE[CLASS_ID["r_brow"]] = (51, 255, 255)

# face-parsing.PyTorch (zllrunning; BiSeNet, also used by facexlib and many face-editing
# repos) numbers its classes in another order (background, skin, l_brow, r_brow, l_eye, r_eye,
# eye_g, l_ear, r_ear, ear_r, nose, mouth, u_lip, l_lip, neck, neck_l, cloth, hair, hat),
# paints them with its `part_colors` on a white background and saves through OpenCV, so the
# triples in its source are BGR. Listed here by class name, as RGB, i.e. as the colours appear
# in its saved pictures (checked against the repository's 6.jpg: skin blue, nose red, hat magenta).
_FACE_PARSING_COLOURS = {
    "background": (255, 255, 255), "skin": (0, 85, 255), "nose": (255, 0, 0),
    "eye_g": (0, 255, 85), "l_eye": (170, 0, 255), "r_eye": (0, 255, 0),
    "l_brow": (0, 170, 255), "r_brow": (85, 0, 255), "l_ear": (0, 255, 170),
    "r_ear": (85, 255, 0), "mouth": (255, 0, 85), "u_lip": (255, 0, 170),
    "l_lip": (255, 85, 0), "hair": (170, 255, 255), "hat": (255, 0, 255),
    "ear_r": (170, 255, 0), "neck_l": (0, 255, 255), "neck": (255, 170, 0),
    "cloth": (85, 255, 255),
}

KNOWN_PALETTES: dict[str, np.ndarray] = {
    # CelebAMask-HQ g_color.py; also GPEN's and facexlib's ParseNet visualisations and the
    # palette PNGs of Collaborative Diffusion. First, so it wins ties.
    "celebamask-hq": CELEBAMASK_PALETTE,
    "sean": _SEAN_PALETTE,
    "face-parsing.pytorch": np.array([_FACE_PARSING_COLOURS[name] for name in CLASSES],
                                     dtype=np.uint8),
}

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_PALETTE_HINT = ("pass its palette with --palette FILE (Python: palette=FILE; 19 lines 'r g b' "
                 "or '#rrggbb', one per class id in CelebAMask-HQ order)")
_UNKNOWN_SHARE = 0.005     # colour pixels no palette explains: fewer are edge blur, more an error
_SEED_KERNEL = 3           # a pixel is sure of its class when its 3x3 neighbourhood agrees
_EDGE_WINDOW = 7           # an unsure pixel takes a class found within 3 px of it (JPEG blur)
_EXACT = 4                 # RGB distance at which a colour is the palette's own, not a blend
_MIN_SKETCH_CONTRAST = 32  # grey levels between paper and the darkest line; below: blank page
_PAPER_NOISE = 16          # grey levels a pixel may stray from the paper tone and still be paper


# ---------------------------------------------------------------------------------------
# Opening files
# ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """PIL pads truncated files with grey when LOAD_TRUNCATED_IMAGES is on; make sure it is off."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _open(path: PathLike, max_pixels: int) -> Image.Image:
    """Open, size-check, fully decode and EXIF-orient an image; any failure is a FaceweaveError."""
    path = Path(path)
    if not path.exists():
        raise FaceweaveError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise FaceweaveError(f"{path} is a folder; pass an image file")
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:   # from the header, before any pixel is decoded
                raise FaceweaveError(
                    f"{path} is {width} x {height} = {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,}; downscale it first (or raise max_pixels if you trust the file)"
                )
            with _strict_decoding():
                im.load()
            oriented = ImageOps.exif_transpose(im)
            oriented.format = im.format      # the copy forgets it; read_mask needs it (JPEG)
            return oriented
    except FaceweaveError:
        raise
    except Image.DecompressionBombError as e:   # PIL's own, larger limit fired inside open()
        claimed = re.search(r"\((\d+) pixels\)", str(e))
        count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise FaceweaveError(f"{path} claims {count}, over the limit of {max_pixels:,} "
                             "(a decompression bomb?); pass a normal-sized image") from None
    except UnidentifiedImageError:
        raise FaceweaveError(f"{path} is not an image PIL can read; pass a PNG or JPEG file") from None
    except PermissionError:
        raise FaceweaveError(f"{path}: permission denied; check the file's permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise FaceweaveError(f"{path} is truncated or corrupt ({_first_line(e)}); "
                             "re-export or re-download it") from None


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)


def _as_rgb(im: Image.Image, source: PathLike) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES:         # 16-bit grey: 0..65535 scaled to 0..255
        grey = np.clip(np.rint(np.asarray(im, dtype=np.float32) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if _has_alpha(im):
        im = _composite_on_white(im)
    try:
        return np.asarray(im.convert("RGB"))
    except ValueError:
        raise FaceweaveError(f"{source}: colour mode {im.mode} is not supported; "
                             "save the image as RGB or greyscale") from None


def read_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A photo as H x W x 3 uint8 RGB, whatever it was stored as.

    Greyscale, palette, CMYK and 16-bit files become RGB; transparency is composited over
    white (what a viewer shows); the EXIF orientation is applied, so a phone photo is upright.
    """
    return _as_rgb(_open(path, max_pixels), path)


def read_photo(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A face photo (read_image) of at least MIN_PHOTO_SIDE pixels on each side: a 1 x 1 or
    3000 x 2 picture holds no face, and the parser, the classifier and the models would
    read an upscaled smear as one."""
    image = read_image(path, max_pixels)
    height, width = image.shape[:2]
    if min(height, width) < MIN_PHOTO_SIDE:
        raise FaceweaveError(f"{path} is {width}x{height} px, too small to hold a face; use a photo at least "
                             f"{MIN_PHOTO_SIDE} px on each side")
    return image


# ---------------------------------------------------------------------------------------
# Writing files
# ---------------------------------------------------------------------------------------

def _save_png_atomic(image: Image.Image, path: PathLike) -> None:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise FaceweaveError(f"{path}: this writes PNG files; give the name a .png suffix")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "xb") as f:          # open() honours the umask, unlike mkstemp's 0600
            image.save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            above = next(p for p in path.parents if p.exists())
            if not above.is_dir():
                raise FaceweaveError(f"cannot write {path}: {above} is a file, not a folder") from None
            raise FaceweaveError(f"cannot write {path} ({e.strerror or _first_line(e)}); "
                                 "check that the folder exists and is writable") from None
        raise


def write_png(path: PathLike, array: np.ndarray) -> None:
    """Save an H x W (grey) or H x W x 3 (RGB) uint8 array as a PNG, atomically."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise FaceweaveError(f"write_png needs uint8 pixels, got dtype {array.dtype}")
    if array.ndim == 2:
        image = Image.fromarray(array, mode="L")
    elif array.ndim == 3 and array.shape[2] == 3:
        image = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    else:
        raise FaceweaveError(f"write_png needs an H x W or H x W x 3 array, got shape {array.shape}")
    _save_png_atomic(image, path)


# ---------------------------------------------------------------------------------------
# Output folders
# ---------------------------------------------------------------------------------------

def _refuse_taken(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FaceweaveError(f"output folder {out} is a file; choose a folder that does not exist yet")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise FaceweaveError(f"output folder {out} already holds files; use --overwrite to replace them, "
                             "or choose another folder")


def check_output_folder(out: PathLike, overwrite: bool = False, *, replace: bool = True) -> Path:
    """The absolute path of an output folder that can be written, or a one-line error now,
    before any work rather than after it: a path that is a file or lies under one, a folder
    holding files (unless `overwrite`), a place where nothing can be created (no permission,
    a read-only mount; tried for real with an empty folder, removed at once). `replace` as in
    output_folder. Nothing is left behind."""
    out = Path(out).expanduser().absolute()
    try:
        _refuse_taken(out, overwrite)
        home = out if not replace and out.is_dir() else out.parent
        while not home.exists() and home != home.parent:   # the folders output_folder would make
            home = home.parent
        if not home.is_dir():
            raise FaceweaveError(f"cannot make output folder {out}: {home} is a file, not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=home))
    except OSError as e:
        raise FaceweaveError(f"cannot write output folder {out} ({e.strerror or _first_line(e)}); "
                             "choose a folder you can write to") from None
    return out


@contextlib.contextmanager
def output_folder(out: PathLike, overwrite: bool = False, *, replace: bool = True) -> Iterator[Path]:
    """Write an output folder all at once or not at all: the one way commands write folders.

        with output_folder("runs/eval", overwrite) as staging:
            write_png(staging / "grid.png", grid)

    The block writes into a hidden staging folder; only a block that ends without an
    exception puts its files in place, so a crash, Ctrl-C or a full disk never leaves half
    an output where a whole one is expected. replace=True: the staging folder becomes `out`,
    replacing an old one whole (with `overwrite`). replace=False: its files replace the files
    of the same names in `out` and the others stay (`faceweave generate --overwrite`). Any
    OSError (no permission, a read-only mount, a full disk) is one FaceweaveError naming
    `out`; the staging folder and the parent folders made for it are removed.
    """
    out = check_output_folder(out, overwrite, replace=replace)
    home = out if not replace and out.is_dir() else out.parent
    made = [p for p in (home, *home.parents) if not p.exists()]       # deepest first
    staging = None
    try:
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=home))
        os.chmod(staging, 0o755)                # mkdtemp's 0700 would become the output's mode
        yield staging
        if replace:
            _refuse_taken(out, overwrite)       # made meanwhile by someone else?
        _put_in_place(staging, out, replace)
    except BaseException as e:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()                  # only while empty
        if isinstance(e, OSError):
            raise FaceweaveError(f"cannot write output folder {out} ({e.strerror or _first_line(e)}); "
                                 "nothing was written there; check its free space and permissions") from None
        if isinstance(e, FaceweaveError) and staging is not None and str(staging) in str(e):
            raise FaceweaveError(str(e).replace(str(staging), str(out))) from None   # the name the user gave
        raise


def _put_in_place(staging: Path, out: Path, replace: bool) -> None:
    if not out.exists():
        os.rename(staging, out)
    elif replace:
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except OSError:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        for item in sorted(staging.iterdir()):
            os.replace(item, out / item.name)
        staging.rmdir()


# ---------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------

def _hex(colour: np.ndarray) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))


def _listed(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return f"{shown}, ... ({len(values)} values)" if len(values) > limit else shown


def _parse_colour(text: str, where: str) -> tuple[int, int, int]:
    text = text.strip()
    if re.fullmatch(r"#?[0-9a-fA-F]{6}", text):
        value = int(text.lstrip("#"), 16)
        return value >> 16, (value >> 8) & 255, value & 255
    parts = [p for p in re.split(r"[\s,;]+", text) if p]
    if len(parts) == 3 and all(re.fullmatch(r"\d{1,3}", p) for p in parts):
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    raise FaceweaveError(f"{where}: {text!r} is not a colour; write 'r g b' (0..255) or '#rrggbb'")


def _palette_rows_from_file(path: Path) -> list:
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FaceweaveError(f"{path} is not valid JSON ({_first_line(e)}); "
                                 "write a list of 19 [r, g, b] triples") from None
        if not isinstance(rows, list):
            raise FaceweaveError(f"{path}: expected a JSON list of 19 [r, g, b] triples")
        return [_parse_colour(r, str(path)) if isinstance(r, str) else r for r in rows]
    if path.suffix.lower() in (".png", ".gif", ".bmp", ".tif", ".tiff"):
        im = _open(path, DEFAULT_MAX_PIXELS)
        if im.mode not in ("P", "PA"):
            raise FaceweaveError(f"{path} is a {im.mode} image, not a palette (mode P) image; "
                                 "pass a palette PNG, a JSON list or a text file of 19 colours")
        entries = np.asarray(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        return entries[:NUM_CLASSES].tolist()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FaceweaveError(f"{path} is not a text file; a palette file is JSON, text "
                             "('r g b' or '#rrggbb' per line) or a palette PNG") from None
    rows = []
    for number, line in enumerate(lines, 1):
        colour = line.split("//")[0].strip()
        if not colour or (colour.startswith("#") and not re.match(r"#[0-9a-fA-F]{6}\b", colour)):
            continue                           # blank line or comment
        hex_or_triple = re.match(r"#[0-9a-fA-F]{6}|\d{1,3}[\s,;]+\d{1,3}[\s,;]+\d{1,3}", colour)
        rows.append(_parse_colour(hex_or_triple.group(0) if hex_or_triple else colour,
                                  f"{path} line {number}"))
    return rows


def load_palette(palette: PathLike | np.ndarray | list) -> np.ndarray:
    """A (19, 3) uint8 palette (row i = colour of class id i) from a file or an array.

    Files: JSON (a list of 19 [r, g, b] or "#rrggbb"), text (19 lines of "r g b" or "#rrggbb";
    '#' and '//' comments, a trailing class name allowed) or a palette PNG (its first 19 entries).
    """
    if isinstance(palette, (str, os.PathLike)):
        path = Path(palette)
        if not path.is_file():
            raise FaceweaveError(f"palette file {path} not found; check the path")
        rows, source = _palette_rows_from_file(path), str(path)
    else:
        rows, source = palette, "palette"
    try:
        array = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise FaceweaveError(f"{source}: a palette is 19 [r, g, b] triples of integers 0..255") from None
    if array.shape != (NUM_CLASSES, 3):
        raise FaceweaveError(f"{source}: a palette needs {NUM_CLASSES} colours (one per class, "
                             f"CelebAMask-HQ order), got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) \
            or array.min() < 0 or array.max() > 255:
        raise FaceweaveError(f"{source}: palette colours must be integers 0..255")
    return array.astype(np.uint8)


def _check_index_values(ids: np.ndarray, source: PathLike) -> np.ndarray:
    bad = np.unique(ids[(ids < 0) | (ids >= NUM_CLASSES)])
    if bad.size:
        raise FaceweaveError(
            f"{source}: mask values {_listed(bad)} are not class ids 0..{NUM_CLASSES - 1}; "
            "is this a colour mask saved as greyscale, or ids scaled up for viewing? "
            "Save the class ids themselves, or the colour-coded mask as RGB"
        )
    return ids.astype(np.uint8)


def _refuse_lossy_ids(im: Image.Image, source: PathLike) -> None:
    """Class ids are exact numbers; JPEG changes them near every edge (12 -> 11 or 13)."""
    if im.format == "JPEG":
        raise FaceweaveError(f"{source}: an index mask cannot be a JPEG (compression changes the "
                             "class ids near every edge); save it as PNG")


def _nearest(colours: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared RGB distances (colours x palette entries) and the nearest entry of each colour."""
    diff = colours[:, None, :].astype(np.float32) - palette[None, :, :].astype(np.float32)
    dist2 = np.einsum("upc,upc->up", diff, diff)
    return dist2, dist2.argmin(axis=1)


def decode_colour_mask(rgb: np.ndarray, palettes: dict[str, np.ndarray] | None = None, tolerance: float = 40,
                       source: PathLike = "the mask", fix: str | None = None) -> np.ndarray:
    """An H x W x 3 uint8 colour-coded mask (an array, e.g. a painted canvas) -> class ids.

    palettes: {name: (19, 3) colours}, default every known palette (KNOWN_PALETTES); the one that
    explains most pixels is used. Colours that no palette explains give a one-line error that
    names them, `source`, and `fix` (default: how to pass a palette file). Robust to
    antialiasing and JPEG blur as the file reader is (it calls this).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise FaceweaveError(f"{source}: a colour mask is an H x W x 3 uint8 array, got shape {rgb.shape} "
                             f"dtype {rgb.dtype}")
    return _decode_colours(rgb, KNOWN_PALETTES if palettes is None else palettes, tolerance, source, fix)


def _decode_colours(rgb: np.ndarray, palettes: dict[str, np.ndarray], tolerance: float,
                    source: PathLike, fix: str | None = None) -> np.ndarray:
    """Colour-coded mask -> class ids, robust to antialiasing and JPEG blur.

    The palette explaining most pixels (within `tolerance`) is chosen. A pixel is sure of its
    class when its colour is the palette's own (thin parts) or its 3x3 neighbourhood all snaps
    to one class. Any other pixel is an edge, where JPEG's halved-resolution chroma and
    antialiasing mix two colours into a third that may look like another class (hair +
    background ~ lower lip): it takes the nearest colour among the classes sure within 3 px
    of it. Pixels far from every palette colour with no class nearby are unknown; more than
    0.5 % of them is an error naming their colours.
    """
    height, width, _ = rgb.shape
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    keys, inverse, counts = np.unique(packed.ravel(), return_inverse=True, return_counts=True)
    colours = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)

    best = None                               # (pixels explained, name, distances, nearest)
    for name, palette in palettes.items():
        dist2, nearest = _nearest(colours, palette)
        explained = int(counts[dist2[np.arange(len(keys)), nearest] <= tolerance ** 2].sum())
        if best is None or explained > best[0]:
            best = (explained, name, dist2, nearest)
    _, name, dist2, nearest = best
    palette = palettes[name]
    duplicated = [c for c in np.unique(palette, axis=0) if (palette == c).all(axis=1).sum() > 1]
    if duplicated:
        raise FaceweaveError(f"palette {name} gives {_hex(duplicated[0])} to more than one class, "
                             "so a colour-coded mask cannot tell them apart; use distinct colours")

    nearest_dist2 = dist2[np.arange(len(keys)), nearest]
    close = nearest_dist2 <= tolerance ** 2   # per distinct colour
    classes = nearest[inverse].reshape(height, width).astype(np.uint8)
    close_pixel = close[inverse].reshape(height, width)
    seed_kernel = np.ones((_SEED_KERNEL, _SEED_KERNEL), np.uint8)
    window = np.ones((_EDGE_WINDOW, _EDGE_WINDOW), np.uint8)
    present = np.unique(classes[close_pixel])

    def seeds_of(class_id: int) -> np.ndarray:
        region = ((classes == class_id) & close_pixel).astype(np.uint8)
        return cv2.erode(region, seed_kernel, borderType=cv2.BORDER_REPLICATE)

    sure = (nearest_dist2 <= _EXACT ** 2)[inverse].reshape(height, width)
    for class_id in present:
        sure |= seeds_of(class_id) > 0
    unsure = np.flatnonzero(~sure.ravel())
    unsure_colour = inverse.ravel()[unsure]
    best_dist = np.full(unsure.size, np.inf, dtype=np.float32)
    best_class = classes.ravel()[unsure]
    for class_id in present:
        nearby = cv2.dilate(seeds_of(class_id), window).ravel()[unsure] > 0
        dist = dist2[unsure_colour, class_id]
        better = nearby & (dist < best_dist)
        best_dist[better], best_class[better] = dist[better], class_id
    out = classes.ravel().copy()
    out[unsure] = best_class

    unknown = unsure[~np.isfinite(best_dist) & ~close[unsure_colour]]
    if unknown.size >= _UNKNOWN_SHARE * height * width:
        ids, pixels = np.unique(inverse.ravel()[unknown], return_counts=True)
        top = np.argsort(-pixels, kind="stable")[:3]
        listed = ", ".join(f"{_hex(colours[ids[i]])} {pixels[i] / (height * width):.1%}" for i in top)
        which = "the given palette" if len(palettes) == 1 else f"any known palette (closest: {name})"
        raise FaceweaveError(
            f"{source}: {unknown.size / (height * width):.1%} of the pixels have colours not in "
            f"{which}: {listed}; " + (fix or f"if this is a colour-coded mask, {_PALETTE_HINT}")
        )
    return out.reshape(height, width)


def _decode_palette_image(im: Image.Image, palettes: dict[str, np.ndarray], tolerance: float,
                          source: PathLike) -> np.ndarray:
    """Mode-P mask: the index is the class id, unless the image is a re-indexed colour mask.

    Editors that save a colour-coded mask as "indexed colour" number its colours in their
    own order; then the palette entries, not the indices, carry the classes.
    """
    index = np.asarray(im.getchannel(0) if im.mode == "PA" else im)
    entries = np.zeros((256, 3), dtype=np.uint8)
    listed = np.asarray(im.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
    entries[:len(listed)] = listed
    used = np.unique(index)
    colour_coded = entries[index]

    if used.max() < NUM_CLASSES:
        # Entries agree with a palette at the same ids (CelebAMask-HQ's palette PNGs): ids.
        for palette in palettes.values():
            offset = entries[used].astype(int) - palette[used]
            if np.all(np.sum(offset ** 2, axis=1) <= tolerance ** 2):
                return index.astype(np.uint8)
        # Entries are distinct colours of one palette in another order: an editor re-indexed them.
        for palette in palettes.values():
            dist2, nearest = _nearest(entries[used], palette)
            within = dist2[np.arange(len(used)), nearest] <= tolerance ** 2
            if within.all() and len(np.unique(nearest)) == len(used):
                return _decode_colours(colour_coded, palettes, tolerance, source)
        return index.astype(np.uint8)        # entries mean nothing (a grey ramp, ...): ids
    try:
        return _decode_colours(colour_coded, palettes, tolerance, source)
    except FaceweaveError:
        bad = used[used >= NUM_CLASSES]
        raise FaceweaveError(
            f"{source}: palette mask uses indices {_listed(bad)} (class ids stop at "
            f"{NUM_CLASSES - 1}) and its colours match no known mask palette; save class ids "
            f"0..{NUM_CLASSES - 1} as the indices, or if it is colour-coded, {_PALETTE_HINT}"
        ) from None


def read_mask(path: PathLike, size: int | None = None, palette: PathLike | np.ndarray | None = None,
              tolerance: int = 40) -> np.ndarray:
    """A label map as H x W uint8 class ids 0..18 (CelebAMask-HQ order), from any common encoding.

    index   single-channel PNG (8 or 16 bit): value = class id
    palette mode-P PNG: index = class id (re-indexed colour masks are decoded by colour)
    colour  RGB(A) PNG or JPEG: the colours of `palette` if given, else of the KNOWN_PALETTES
            entry that explains most pixels; blur within `tolerance` (RGB distance) and
            blended edges snap to the right class
    An RGB image whose channels are equal and small is an index mask saved as RGB.
    `size` resizes to size x size with nearest-neighbour (labels must not blend).
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise FaceweaveError(f"tolerance must be a non-negative number, got {tolerance!r}")
    palettes = {"given": load_palette(palette)} if palette is not None else KNOWN_PALETTES
    im = _open(path, DEFAULT_MAX_PIXELS)
    if im.mode == "1":
        im = im.convert("L")                   # 0/255, so a black-and-white mask is an error
    if im.mode in ("P", "PA"):
        mask = _decode_palette_image(im, palettes, tolerance, path)
    elif im.mode in ("L", "LA") + _SIXTEEN_BIT_MODES:
        _refuse_lossy_ids(im, path)
        mask = _check_index_values(np.asarray(im.getchannel(0) if im.mode == "LA" else im), path)
    else:
        try:
            rgb = np.asarray(im.convert("RGB"))
        except ValueError:
            raise FaceweaveError(f"{path}: colour mode {im.mode} is not supported for masks; "
                                 "save the mask as RGB or single-channel PNG") from None
        signed = rgb.astype(np.int16)
        spread = max(int(np.abs(signed[..., 0] - signed[..., 1]).max()),
                     int(np.abs(signed[..., 1] - signed[..., 2]).max()))
        if spread <= 4 and rgb.max() < 32:     # dark greys only: class ids saved as RGB
            _refuse_lossy_ids(im, path)
            if spread:
                raise FaceweaveError(f"{path} looks like class ids saved as RGB, but its channels "
                                     "differ; save the ids as a single-channel PNG")
            mask = _check_index_values(rgb[..., 0], path)
        else:
            mask = _decode_colours(rgb, palettes, tolerance, path)
    return mask if size is None else resize_mask(mask, size)


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise FaceweaveError(f"a mask is an H x W array of integer class ids, got "
                             f"shape {mask.shape} dtype {mask.dtype}")
    bad = np.unique(mask[(mask < 0) | (mask >= NUM_CLASSES)])
    if bad.size:
        raise FaceweaveError(f"mask has values {_listed(bad)} outside the class ids "
                             f"0..{NUM_CLASSES - 1}")
    return mask.astype(np.uint8)


def write_mask(path: PathLike, mask: np.ndarray) -> None:
    """Save class ids as a single-channel index PNG (the CelebAMask-HQ label format), atomically."""
    write_png(path, _check_mask(mask))


def write_color_mask(path: PathLike, mask: np.ndarray,
                     palette: PathLike | np.ndarray = CELEBAMASK_PALETTE) -> None:
    """Save class ids as a colour-coded RGB PNG (for people to look at or paint on), atomically."""
    write_png(path, load_palette(palette)[_check_mask(mask)])


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize (labels must not blend); size is a side or (height, width)."""
    height, width = _target_shape(size)
    mask = _check_mask(mask)
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def resize_image(img: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an image: area averaging to shrink (no aliasing), bicubic to enlarge."""
    height, width = _target_shape(size)
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.dtype != np.uint8:
        raise FaceweaveError(f"resize_image needs an H x W (x C) uint8 image, got "
                             f"shape {img.shape} dtype {img.dtype}")
    if img.shape[:2] == (height, width):
        return img
    shrinking = height <= img.shape[0] and width <= img.shape[1]
    return cv2.resize(img, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _target_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    sides = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(sides) != 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                              or not 1 <= s <= 16384 for s in sides):
        raise FaceweaveError(f"size must be a side length or (height, width) in pixels "
                             f"(1..16384), got {size!r}")
    return int(sides[0]), int(sides[1])


# ---------------------------------------------------------------------------------------
# Sketches
# ---------------------------------------------------------------------------------------

def _sketch_grey(im: Image.Image) -> np.ndarray:
    """Grey levels (float, 0..255); transparent pixels become paper, whatever tone the ink has."""
    if im.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(im, dtype=np.float32) / 257.0
    alpha = None
    if _has_alpha(im):
        im = im.convert("RGBA")
        alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0
    grey = np.asarray(im.convert("L"), dtype=np.float32)
    if alpha is not None and alpha.min() < 1.0:
        ink = grey[alpha > 0.5]
        paper = 255.0 if ink.size == 0 or np.median(ink) < 128 else 0.0
        grey = grey * alpha + paper * (1.0 - alpha)
    return grey


def read_sketch(path: PathLike, size: int | None = None) -> np.ndarray:
    """A line drawing as H x W uint8, lines = 255 on a 0 background, strongest line at 255.

    Dark-on-light and light-on-dark drawings, grey or colour, with or without transparency,
    all give the same array: the paper tone is the median of the image border (or of the whole
    image when the border is mid-grey), lines are the contrast against it. A blank page, or a
    picture less than half of which is paper (a photo), is an error. Shrinking averages
    pixels (INTER_AREA) and then restores the strongest line to 255, so thin lines survive.
    """
    grey = _sketch_grey(_open(path, DEFAULT_MAX_PIXELS))
    height, width = grey.shape
    band = max(1, min(height, width) // 50)
    border = np.concatenate([grey[:band].ravel(), grey[-band:].ravel(),
                             grey[:, :band].ravel(), grey[:, -band:].ravel()])
    paper = float(np.median(border))
    if 64 < paper < 192:
        paper = float(np.median(grey))
    if (np.abs(grey - paper) < _PAPER_NOISE).mean() < 0.5:
        raise FaceweaveError(f"{path}: less than half the picture is plain paper, so it is not a "
                             "line drawing (a photo?); pass a clean sketch, or make one from a "
                             "photo with sketch_from_image")
    contrast = paper - grey if paper >= 128 else grey - paper
    contrast = np.clip(contrast, 0, None)
    peak = float(contrast.max())
    if peak < _MIN_SKETCH_CONTRAST:
        raise FaceweaveError(f"{path}: no lines found (the darkest stroke differs from the paper by "
                             f"{peak:.0f} grey levels); pass a sketch with visible lines")
    sketch = np.rint(contrast * (255.0 / peak)).astype(np.uint8)
    if size is not None:
        sketch = resize_sketch(sketch, size)
    return sketch


def resize_sketch(sketch: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an H x W uint8 sketch (lines 255 on 0) to `size` (side or (height, width)):
    area averaging when shrinking, so thin lines survive, then the strongest line is
    stretched back to 255."""
    height, width = _target_shape(size)
    if sketch.shape == (height, width):
        return sketch
    shrinking = height <= sketch.shape[0] and width <= sketch.shape[1]
    resized = cv2.resize(sketch, (width, height),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    peak = int(resized.max())
    if 0 < peak < 255:
        resized = np.rint(resized.astype(np.float32) * (255.0 / peak)).astype(np.uint8)
    return resized


def _check_sketch(sketch: np.ndarray) -> np.ndarray:
    sketch = np.asarray(sketch)
    if sketch.ndim != 2 or sketch.dtype != np.uint8:
        raise FaceweaveError(f"a sketch is an H x W uint8 array (lines 255 on 0), got "
                             f"shape {sketch.shape} dtype {sketch.dtype}")
    return sketch


def write_sketch(path: PathLike, sketch: np.ndarray) -> None:
    """Save a sketch as black lines on white (how people draw), atomically."""
    write_png(path, 255 - _check_sketch(sketch))


def sketch_from_image(rgb: np.ndarray, method: str = "xdog") -> np.ndarray:
    """A line drawing of a photo (lines = 255): the sketch condition when a user has no drawing.

    xdog   eXtended Difference of Gaussians (Winnemöller et al. 2012): the DoG of the grey
           image, G_(k sigma) - G_sigma, through a soft tanh threshold; its positive side is
           the dark side of an edge, where pencil lines sit. Sigma grows with the image size.
    canny  Canny edges of the blurred grey image, hysteresis thresholds at 0.66x and 1.33x
           the median grey level: thin binary lines.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or not (rgb.ndim == 2 or (rgb.ndim == 3 and rgb.shape[2] == 3)):
        raise FaceweaveError(f"sketch_from_image needs an H x W x 3 (or H x W) uint8 image, got "
                             f"shape {rgb.shape} dtype {rgb.dtype}")
    grey = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if method == "xdog":
        return _xdog(grey)
    if method == "canny":
        blurred = cv2.GaussianBlur(grey, (5, 5), 0)
        median = float(np.median(blurred))
        return cv2.Canny(blurred, int(max(0.0, 0.66 * median)), int(min(255.0, 1.33 * median)))
    raise FaceweaveError(f"unknown sketch method {method!r}; use 'xdog' or 'canny'")


def _xdog(grey: np.ndarray, k: float = 1.6, epsilon: float = 0.01, phi: float = 60.0) -> np.ndarray:
    """XDoG line strength: tanh(phi * (G_(k sigma) - G_sigma - epsilon)) where positive.

    On [0, 1] grey levels the DoG is ~0 on flat regions whatever their brightness, so the
    picture does not fill in dark areas (hair, background); epsilon drops texture noise.
    """
    sigma = 0.5 * max(1.0, min(grey.shape) / 256.0)
    image = grey.astype(np.float32) / 255.0
    fine = cv2.GaussianBlur(image, (0, 0), sigma)
    coarse = cv2.GaussianBlur(image, (0, 0), k * sigma)
    strength = np.tanh(phi * np.clip(coarse - fine - epsilon, 0, None))
    return np.rint(strength * 255.0).astype(np.uint8)


def sketch_from_mask(mask: np.ndarray) -> np.ndarray:
    """Part boundaries of a label map (lines = 255), 1 px wide.

    A pixel is on a line where its right or lower neighbour has another class, so each
    boundary between two parts is drawn exactly once (marking both sides would make it 2 px).
    """
    mask = _check_mask(mask)
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    return edge.astype(np.uint8) * 255
