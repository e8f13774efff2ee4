"""Contact sheets: look at a data set (image | coloured mask | sketch | caption) at a glance."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..conditions import colorize_mask
from ..errors import FaceweaveError
from ..io import read_image, read_mask, resize_image, resize_mask, write_png
from .unified import read_records, read_stored_sketch


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:          # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(root: str | os.PathLike, n: int = 8, cell: int = 128, columns: int = 2,
                  start: int = 0) -> np.ndarray:
    """Rows of image | coloured mask | sketch | first caption, `columns` rows side by side."""
    root = Path(root)
    records = read_records(root / "captions.jsonl")[start:start + n]
    if not records:
        raise FaceweaveError(f"{root} holds no samples from index {start}; pick a smaller --start")
    font = _font(max(10, cell // 10))
    text_w = cell * 2
    rows = []
    for rec in records:
        name = rec["file"]
        panels = [resize_image(read_image(root / "images" / name), cell)]
        mask_path, sketch_path = root / "masks" / name, root / "sketches" / name
        blank = np.full((cell, cell, 3), 255, np.uint8)
        panels.append(colorize_mask(resize_mask(read_mask(mask_path), cell)) if mask_path.exists() else blank)
        if sketch_path.exists():
            panels.append(np.repeat(255 - read_stored_sketch(sketch_path, cell)[..., None], 3, axis=2))
        else:
            panels.append(blank)
        caption = (rec.get("captions") or [""])[0]
        text = Image.new("RGB", (text_w, cell), (255, 255, 255))
        draw = ImageDraw.Draw(text)
        chars = max(12, int(text_w / (font.size * 0.55))) if hasattr(font, "size") else 40
        draw.multiline_text((6, 6), "\n".join(textwrap.wrap(caption, chars)[:8]), fill=(20, 20, 20), font=font)
        panels.append(np.asarray(text))
        rows.append(np.concatenate(panels, axis=1))
    while len(rows) % columns:
        rows.append(np.full_like(rows[0], 255))
    per_col = len(rows) // columns
    cols = [np.concatenate(rows[c * per_col:(c + 1) * per_col], axis=0) for c in range(columns)]
    gap = np.full((cols[0].shape[0], max(4, cell // 16), 3), 255, np.uint8)
    return np.concatenate([x for c in cols for x in (c, gap)][:-1], axis=1)


def image_grid(images: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Equal-sized H x W x 3 uint8 images in rows of `columns`, white gaps between them."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = im
    return out


def save_contact_sheet(root, out, **kw) -> Path:
    sheet = contact_sheet(root, **kw)
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise FaceweaveError(f"contact sheets are PNG files; name the output like {out.with_suffix('.png')}")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, sheet)
    return out


def condition_panels(cond, size: int) -> list[np.ndarray]:
    """Pictures of a Conditions' mask (coloured) and sketch (dark lines), for overview grids."""
    from ..io import resize_sketch

    panels = []
    if cond.mask is not None:
        panels.append(colorize_mask(resize_mask(cond.mask, size)))
    if cond.sketch is not None:
        panels.append(np.repeat(255 - resize_sketch(cond.sketch, size)[..., None], 3, 2))
    return panels
