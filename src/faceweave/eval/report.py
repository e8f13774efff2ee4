"""The pictures of an evaluation: report.html (one self-contained page) and grid.png.

The page needs nothing beside it (images are embedded as base64 PNG), so it can be mailed,
attached to an issue or opened years later: the protocol, the metrics of the run next to
the ceiling, per-class and per-attribute details, and for the first few held-out faces
the conditions the backend was given | the real face | the outputs, one per seed.
"""
from __future__ import annotations

import base64
import html
import io as _bytes_io
import json
import math
import textwrap

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..conditions import colorize_mask
from .metrics import LATENCY_REPEATS

# metric -> (label, direction and range, what it measures): the report's table and the docs' list.
METRIC_NOTES: dict[str, tuple[str, str, str]] = {
    "mask_miou": ("mask mIoU", "higher, 0..1",
                  "the parser's mask of each output vs the requested mask: IoU per class, pooled over all "
                  "images, averaged over classes"),
    "mask_pixel_acc": ("mask pixel accuracy", "higher, 0..1",
                       "share of pixels whose parsed class is the requested one"),
    "attr_acc": ("attribute accuracy", "higher, 0..1",
                 "the classifier agrees with each requested attribute (given, or read from the prompt)"),
    "sketch_f": ("sketch F-score", "higher, 0..1",
                 "XDoG edges of each output vs the requested sketch, matched within a tolerance"),
    "fd": ("fd", "lower, >= 0",
           "Fréchet distance to real held-out faces in the classifier's feature space (not FID)"),
    "kid": ("kid", "lower, about 0 at best",
            "kernel distance (unbiased MMD²) on the same features; can dip below 0"),
    "fid": ("FID (Inception)", "lower, >= 0", "standard FID with the user's InceptionV3 weights"),
    "kid_inception": ("KID (Inception)", "lower, about 0 at best", "KID on the same Inception features"),
    "diversity": ("diversity", "higher, 0..2",
                  "mean pairwise cosine distance of classifier features between seeds of one condition"),
    "sec_per_image": ("seconds / image", "lower", "wall-clock time of generate per image (throughput, batched)"),
    "latency_batch1": ("latency, 1 image", "lower",
                       f"seconds for one image generated alone (median of {LATENCY_REPEATS})"),
    "peak_memory_mb": ("peak memory (MiB)", "lower",
                       "peak CUDA allocation on a GPU, else the process's peak resident set size"),
    "n": ("n", "", "held-out faces scored"),
}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:          # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _condition_text(face, given) -> str:
    parts = []
    if "prompt" in given:
        parts.append(face.captions[0])
    if "attributes" in given:
        present = [name for name, value in face.attributes.items() if value]
        parts.append("attributes: " + (", ".join(present) or "none present") + " (the rest absent)")
    return "\n".join(parts)


def _columns(samples: list[dict], given) -> list[str]:
    columns = [m for m in ("mask", "sketch") if m in given]
    if "prompt" in given or "attributes" in given:
        columns.append("text")
    columns.append("real (held out)")
    outputs = max((len(s["outputs"]) for s in samples), default=1)
    columns += [f"output, seed {k}" if outputs > 1 else "output" for k in range(outputs)]
    return columns


def _panels(sample: dict, given) -> list[np.ndarray | str]:
    """One row: the given conditions, the real face, the outputs (text cells as str)."""
    face = sample["face"]
    row: list[np.ndarray | str] = []
    if "mask" in given:
        row.append(colorize_mask(face.mask))
    if "sketch" in given:
        row.append(np.repeat((255 - face.sketch)[..., None], 3, axis=2))   # black on white, as drawn
    if "prompt" in given or "attributes" in given:
        row.append(_condition_text(face, given))
    return row + [face.image, *sample["outputs"]]


def _panel_image(panel: np.ndarray, cell: int) -> Image.Image:
    """Enlarged with nearest neighbours (the pixels shown are the pixels scored), or area-averaged
    when a panel is bigger than the cell."""
    interpolation = cv2.INTER_NEAREST if panel.shape[0] <= cell else cv2.INTER_AREA
    return Image.fromarray(cv2.resize(panel, (cell, cell), interpolation=interpolation))


def sample_grid(samples: list[dict], given, cell: int | None = None) -> np.ndarray:
    """grid.png: a header, then per sample the given conditions | real | outputs. `cell`
    defaults to the image size, at least 128 px and at most 256 px (a readable page)."""
    size = samples[0]["face"].image.shape[0]
    cell = cell or min(256, max(128, size))
    columns = _columns(samples, given)
    font_px = max(10, cell // 10)
    font = _font(font_px)
    text_width = 2 * cell
    widths = [text_width if c == "text" else cell for c in columns]
    header = font_px + 14
    grid = Image.new("RGB", (sum(widths) + 4 * (len(widths) - 1), header + len(samples) * (cell + 4)),
                     (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    x_positions = np.concatenate([[0], np.cumsum(np.array(widths) + 4)])[:-1]
    for x, name in zip(x_positions, columns):
        draw.text((int(x) + 4, 4), name, fill=(20, 20, 20), font=font)
    chars = max(12, int(text_width / (font_px * 0.55)))
    max_lines = (cell - 8) // int(font_px * 1.25)
    for r, sample in enumerate(samples):
        y = header + r * (cell + 4)
        for x, panel in zip(x_positions, _panels(sample, given)):
            if isinstance(panel, str):
                lines = [w for line in panel.splitlines() for w in textwrap.wrap(line, chars)]
                draw.multiline_text((int(x) + 4, y + 4), "\n".join(lines[:max_lines]), fill=(20, 20, 20),
                                    font=font)
            else:
                grid.paste(_panel_image(panel, cell), (int(x), y))
    return np.asarray(grid)


def _png_uri(image: np.ndarray) -> str:
    buffer = _bytes_io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { image-rendering: pixelated; display: block; }
.text { max-width: 260px; font-size: 12px; white-space: pre-wrap; }
code { background: #f3f3f3; padding: 1px 3px; }
"""


def _metrics_table(metrics: dict) -> str:
    rows = []
    for key, (label, direction, meaning) in METRIC_NOTES.items():
        rows.append(f"<tr><td><code>{key}</code><br>{html.escape(label)}</td>"
                    f"<td class=num>{_number(metrics.get(key))}</td>"
                    f"<td class=num>{_number(metrics['ceiling'].get(key))}</td>"
                    f"<td>{html.escape(direction)}</td><td>{html.escape(meaning)}</td></tr>")
    return ("<table><tr><th>metric</th><th>run</th><th>ceiling (real held-out faces)</th>"
            "<th>better, range</th><th>what it measures</th></tr>" + "".join(rows) + "</table>")


def _details_table(title: str, run: dict | None, ceiling: dict | None) -> str:
    if not run:
        return ""
    rows = "".join(f"<tr><td>{html.escape(str(name))}</td><td class=num>{_number(value)}</td>"
                   f"<td class=num>{_number((ceiling or {}).get(name))}</td></tr>" for name, value in run.items())
    return (f"<details><summary>{html.escape(title)}</summary><table><tr><th></th><th>run</th>"
            f"<th>ceiling</th></tr>{rows}</table></details>")


def _samples_table(samples: list[dict], given) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *_columns(samples, given)])
    rows = []
    for sample in samples:
        cells = [f"<td>{sample['index']}</td>"]
        for panel in _panels(sample, given):
            if isinstance(panel, str):
                cells.append(f"<td class=text>{html.escape(panel)}</td>")
            else:
                cells.append(f"<td><img src='{_png_uri(panel)}' width=128 height=128 alt=''></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def report_html(metrics: dict, samples: list[dict]) -> str:
    """The whole report page as one string."""
    protocol = metrics["protocol"]
    given = protocol["given"]
    title = (f"faceweave evaluate: {protocol['backend']['backend']} at {protocol['size']} px, "
             f"given {', '.join(given) or 'nothing'}, n = {protocol['n']}")
    protocol_rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value if isinstance(value, str) else json.dumps(value))}"
        f"</td></tr>" for key, value in protocol.items())
    notes = "".join(f"<li>{html.escape(w)}</li>" for w in metrics["warnings"])
    run, ceiling = metrics["details"]["run"], metrics["details"]["ceiling"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>The <b>ceiling</b> is the same measurement on the real held-out faces against their own
conditions: what a perfect generator scores with these instruments. <code>fd</code> is measured
in the feature space of faceweave's own attribute classifier; it is not FID.</p>
<h2>Metrics</h2>
{_metrics_table(metrics)}
{"<h3>Warnings</h3><ul>" + notes + "</ul>" if notes else ""}
{_details_table("IoU per class", run.get("per_class_iou"), ceiling.get("per_class_iou"))}
{_details_table("accuracy per attribute", run.get("per_attribute"), ceiling.get("per_attribute"))}
<h2>Samples: conditions | real | outputs</h2>
{_samples_table(samples, given)}
<h2>Protocol</h2>
<table>{protocol_rows}</table>
</body></html>
"""
