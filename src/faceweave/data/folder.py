"""Reader for a plain folder of face photos, the layout a user is most likely to have.

    SRC/*.png|jpg|jpeg|webp|bmp     the photos (or SRC/images/* when SRC holds no photos)
    SRC/masks/NAME.png              optional label maps, same stem as the photo, any encoding
                                    `io.read_mask` accepts (index, palette or colour PNG)
    SRC/sketches/NAME.png           optional sketches (else they are extracted)
    SRC/captions.jsonl              optional: {"file": "a.jpg", "captions": [...] | "caption": "...",
                                    "attributes": {"Smiling": 1, ...}} per line; other keys
                                    (e.g. "split") are carried into the output
    SRC/captions.txt                optional: "a.jpg<TAB>caption" or "a.jpg: caption" per line,
                                    a file named on several lines gets several captions

A unified folder is itself a valid source (images/, masks/, sketches/, captions.jsonl), so
`prepare --layout folder` also re-sizes an already converted data set.

Masks are all-or-none: a data set where some images have masks and others do not cannot
be batched, so a partial masks/ folder is an error that lists what is missing.
"""
from __future__ import annotations

import functools
from pathlib import Path

from .. import io
from ..conditions import validate_attributes
from ..errors import FaceweaveError
from .source import SourceSample, by_stem, layout_error, list_images, read_text_lines
from .unified import parse_record

LAYOUT = "folder"
_CAPTION_KEYS = {"file", "captions", "caption", "attributes"}


def _photo_dir(src: Path) -> Path:
    if list_images(src) or not (src / "images").is_dir():
        return src
    return src / "images"


def _lookup(photos: dict[str, Path], name: str, where: str) -> str:
    """A caption file may name a photo by file name or by stem; unknown names are typos."""
    for stem in (name, Path(name).stem):
        if stem in photos:
            return stem
    raise FaceweaveError(f"{where}: no photo named {name!r} in the folder")


def _read_captions_txt(path: Path, photos: dict[str, Path]) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = {}
    for number, line in enumerate(read_text_lines(path), start=1):
        name, sep, text = line.partition("\t") if "\t" in line else line.partition(":")
        if not sep or not text.strip():
            raise FaceweaveError(
                f"{path}, line {number}: expected 'photo.jpg<TAB>caption' or 'photo.jpg: caption'")
        stem = _lookup(photos, name.strip(), f"{path}, line {number}")
        captions.setdefault(stem, []).append(text.strip())
    return captions


def _read_captions_jsonl(path: Path, photos: dict[str, Path]):
    """-> captions, attributes and the other keys (e.g. "split" of a unified folder) by stem."""
    captions: dict[str, list[str]] = {}
    attributes: dict[str, dict[str, int]] = {}
    extras: dict[str, dict] = {}
    for number, line in enumerate(read_text_lines(path), start=1):
        where = f"{path}, line {number}"
        record = parse_record(line, where)
        stem = _lookup(photos, record["file"], where)
        texts = record.get("captions", [record["caption"]] if "caption" in record else [])
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise FaceweaveError(f"{where}: \"captions\" must be a list of strings")
        captions.setdefault(stem, []).extend(t.strip() for t in texts if t.strip())
        if record.get("attributes"):
            try:
                attributes[stem] = validate_attributes(record["attributes"])
            except FaceweaveError as exc:
                raise FaceweaveError(f"{where}: {exc}") from None
        extras[stem] = {k: v for k, v in record.items() if k not in _CAPTION_KEYS}
    return captions, attributes, extras


def _matching(folder: Path, stems: list[str], what: str) -> dict[str, Path]:
    """stem -> file for an all-or-none side folder (masks/, sketches/)."""
    files = by_stem(list_images(folder), what)
    missing = [s for s in stems if s not in files]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FaceweaveError(
            f"{folder} has no {what[:-1]} for {len(missing)} photo(s): {shown}; "
            f"add them or remove {folder.name}/ (all photos need one, or none)"
        )
    return files


def scan(src: Path, limit: int | None = None) -> list[SourceSample]:
    """List the photos of a plain folder (the first `limit` by name when given)."""
    photo_dir = _photo_dir(src)
    photos = by_stem(list_images(photo_dir), "photos")
    if not photos:
        raise layout_error(LAYOUT, src, "photos (.png/.jpg/.jpeg/.webp/.bmp) in it or in images/")
    captions: dict[str, list[str]] = {}
    attributes: dict[str, dict[str, int]] = {}
    extras: dict[str, dict] = {}
    if (src / "captions.jsonl").is_file():
        captions, attributes, extras = _read_captions_jsonl(src / "captions.jsonl", photos)
    elif (src / "captions.txt").is_file():
        captions = _read_captions_txt(src / "captions.txt", photos)

    stems = sorted(photos)[:limit]
    masks = _matching(src / "masks", stems, "masks") if (src / "masks").is_dir() else {}
    sketches = _matching(src / "sketches", stems, "sketches") if (src / "sketches").is_dir() else {}
    return [
        SourceSample(
            name=stem,
            image=photos[stem],
            load_mask=functools.partial(io.read_mask, masks[stem]) if stem in masks else None,
            sketch=sketches.get(stem),
            captions=captions.get(stem, []),
            attributes=attributes.get(stem),
            extra=extras.get(stem, {}),
        )
        for stem in stems
    ]
