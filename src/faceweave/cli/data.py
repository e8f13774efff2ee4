"""`faceweave data`: render FaceSynth faces, show and count a data set, convert CelebAMask-HQ / MM-CelebA-HQ / folders."""
from __future__ import annotations

import click

from .base import _Group, main


@main.group(cls=_Group)
def data() -> None:
    """Render, convert and look at data sets (the unified folder format)."""


@data.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (unified format).")
@click.option("--n", "n", required=True, type=int, help="Number of faces to render.")
@click.option("--size", default=128, show_default=True, type=int, help="Image side in pixels (32..512).")
@click.option("--seed", default=0, show_default=True, type=int, help="Stream seed; same seed, same faces.")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="Which disjoint FaceSynth split to draw from (evaluation uses test).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it already holds files.")
def data_synth(out, n, size, seed, split, overwrite) -> None:
    """Render FaceSynth faces with exact masks, sketches, attributes and captions.

    \b
    Example:
      faceweave data synth --out data/fs64 --n 1000 --size 64 --seed 0
    """
    from ..data.prepare import synthesize

    count = synthesize(out, n=n, size=size, seed=seed, split=split, overwrite=overwrite)
    click.echo(f"wrote {count} faces to {out}")


@data.command("show")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output PNG.")
@click.option("--n", "n", default=8, show_default=True, type=click.IntRange(1, 256), help="Samples to show.")
@click.option("--cell", default=128, show_default=True, type=click.IntRange(32, 512), help="Panel size in pixels.")
@click.option("--columns", default=2, show_default=True, type=click.IntRange(1, 8))
@click.option("--start", default=0, show_default=True, type=click.IntRange(0), help="First sample to show.")
def data_show(folder, out, n, cell, columns, start) -> None:
    """Draw a contact sheet: image | coloured mask | sketch | caption.

    \b
    Example:
      faceweave data show data/fs64 --out sheet.png --n 8
    """
    from ..data.sheet import save_contact_sheet

    path = save_contact_sheet(folder, out, n=n, cell=cell, columns=columns, start=start)
    click.echo(f"wrote {path}")


@data.command("stats")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_stats(folder, as_json) -> None:
    """Class pixel/image shares and attribute rates of a unified folder.

    \b
    Example:
      faceweave data stats data/fs64
    """
    import json

    from ..data.stats import dataset_stats, format_stats

    stats = dataset_stats(folder)
    click.echo(json.dumps(stats, indent=1) if as_json else format_stats(stats))


@data.command("prepare")
@click.option("--layout", required=True, type=click.Choice(["celebamask-hq", "mm-celeba-hq", "folder"]),
              help="Layout of the source folder.")
@click.option("--src", required=True, type=click.Path(), help="Source folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (unified format).")
@click.option("--size", default=None, type=int, help="Resize to SIZE x SIZE (default: keep).")
@click.option("--limit", default=None, type=int, help="Convert only the first N images.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it already holds files.")
def data_prepare(layout, src, out, size, limit, overwrite) -> None:
    """Convert CelebAMask-HQ, MM-CelebA-HQ or a photo folder to the unified format.

    \b
    Example:
      faceweave data prepare --layout celebamask-hq --src ~/CelebAMask-HQ --out data/cmhq256 --size 256
    """
    from ..data.prepare import prepare

    count = prepare(layout, src, out, size=size, overwrite=overwrite, limit=limit)
    click.echo(f"wrote {count} samples to {out}")
