"""What every source-layout reader hands to `prepare`: a list of `SourceSample`s.

A reader (celebamask_hq, mm_celeba_hq, folder) only finds files and parses annotation
text; it loads nothing heavy. Pixels are read lazily, one sample at a time, by `prepare`,
so scanning 30,000 images costs a directory listing, and a bad file is reported by name
when it is reached. The helpers below are the folder-finding and error-wording rules the
readers share, so that every layout fails the same, readable way.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..errors import FaceweaveError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclasses.dataclass
class SourceSample:
    """One image of a source data set, with its annotations still on disk.

    name         output stem: the unified folder stores NAME.png
    image        path of the photo
    load_mask    () -> H x W class ids, or None when the layout has no masks
    sketch       path of a ready-made sketch (MM-CelebA-HQ ships some), else None
    captions     the layout's own captions ([] when it has none)
    attributes   CelebA attribute -> 0/1, or None when unknown
    extra        JSON-able keys copied into captions.jsonl (e.g. "split")
    derive       (image, mask) -> attributes read off the pixels at the source resolution,
                 for layouts without attribute files; `attributes` wins where both know one
    """

    name: str
    image: Path
    load_mask: Callable[[], np.ndarray] | None = None
    sketch: Path | None = None
    captions: Callable[[], list[str]] | list[str] = dataclasses.field(default_factory=list)
    attributes: dict[str, int] | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    derive: Callable[[np.ndarray, np.ndarray | None], dict[str, int]] | None = None

    def read_captions(self) -> list[str]:
        return list(self.captions() if callable(self.captions) else self.captions)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def is_image_file(path: Path) -> bool:
    return path.is_file() and _visible(path) and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Photos directly inside `folder`, sorted by name (hidden files skipped)."""
    return sorted(p for p in folder.iterdir() if is_image_file(p))


def descend(folder: Path) -> Path:
    """Step through wrapper folders that hold nothing but one sub-folder.

    Archives often unpack with an extra level (MM-CelebA-HQ: image/images/,
    sketch/sketch/, text/celeba-caption/); the files we want are one level down.
    """
    while True:
        entries = [p for p in folder.iterdir() if _visible(p)]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def find_dir(root: Path, candidates: Iterable[str]) -> Path | None:
    """The first candidate sub-folder of `root` that exists (wrappers descended), else None."""
    for name in candidates:
        path = root / name
        if path.is_dir():
            return descend(path)
    return None


def find_file(root: Path, candidates: Iterable[str]) -> Path | None:
    for name in candidates:
        if (root / name).is_file():
            return root / name
    return None


def describe_dir(root: Path, limit: int = 12) -> str:
    """'a/, b/, notes.txt' — what a folder holds, for error messages."""
    entries = sorted(p for p in root.iterdir() if _visible(p))
    if not entries:
        return "nothing (the folder is empty)"
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(names) + more


def layout_error(layout: str, root: Path, expected: str) -> FaceweaveError:
    return FaceweaveError(
        f"{root} does not look like the {layout} layout: expected {expected}; "
        f"found {describe_dir(root)}"
    )


def by_stem(paths: Iterable[Path], what: str) -> dict[str, Path]:
    """stem -> path; two files with one stem (a.jpg and a.png) would map to one output name."""
    out: dict[str, Path] = {}
    for path in paths:
        if path.stem in out:
            raise FaceweaveError(
                f"two {what} share the name {path.stem!r}: {out[path.stem].name} and {path.name}; "
                "rename one (output files are named by stem)"
            )
        out[path.stem] = path
    return out


def read_text_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a UTF-8 text file; undecodable text names the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FaceweaveError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise FaceweaveError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
