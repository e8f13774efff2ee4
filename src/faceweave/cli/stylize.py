"""`faceweave stylize`: a face photo in the look of a reference image or a text (MMFS)."""
from __future__ import annotations

import click

from ..backends.options import click_options
from ..errors import FaceweaveError
from .base import _check_out, _write_json, _writing, main


@main.command("stylize")
@click.option("--image", required=True, type=click.Path(dir_okay=False), help="The face photo to stylize.")
@click.option("--style", default=None, type=click.Path(),
              help="One-shot: a reference image of the look, or a folder of them.")
@click.option("--style-text", default=None, help="Zero-shot: the look in words (needs a model with a text mapper).")
@click.option("--model", default=None,
              help="A stylize checkpoint: a folder (faceweave train stylize; docs/stylize.md) or a bundled name "
                   "[default: stylize-64-real].")
@click_options("stylize")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: stylized.png (the face), pasted.png (the photo), comparison.png, meta.json.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT.")
def stylize_cmd(image, style, style_text, model, out, overwrite, **flags) -> None:
    """Stylize a face photo towards a reference image (one-shot) or a text (zero-shot).

    The face is found and aligned, encoded into a StyleGAN2's features and decoded by the
    generator's upper layers. With --style those layers are fine-tuned for a few seconds
    towards the reference (a folder: towards all its images); with --style-text a mapper
    moves their style codes by the sentence. The stylized face is pasted back into the photo.

    \b
    Example:
      faceweave stylize --image photo.jpg --style painting.png --out out/
      faceweave stylize --image photo.jpg --style my_styles/ --strength 0.7 --out out2/
      faceweave stylize --image photo.jpg --style-text "a pencil sketch" --out out3/
      faceweave stylize --image photo.jpg --style painting.png --model runs/stylize-cartoon-64-real/best --out out4/
    """
    from pathlib import Path

    from .. import io
    from ..backends.options import chosen
    from ..data.sheet import image_grid

    if (style is None) == (style_text is None):
        raise FaceweaveError("give exactly one style: --style REF_IMAGE (or a folder) or --style-text TEXT"
                             + (", not both" if style is not None else ""))
    if style_text is not None and not style_text.strip():
        raise FaceweaveError('--style-text is empty; describe the look, e.g. --style-text "a pencil sketch"')
    if model is None:
        from ..backends.stylize.pipeline import DEFAULT_MODEL
        model = DEFAULT_MODEL
    options, _ = chosen("stylize", "stylize", flags)
    photo = io.read_photo(image)
    reference = None
    if style is not None:
        if not Path(style).exists():
            raise FaceweaveError(f"--style {style} does not exist; pass a reference image or a folder of them")
        reference = style if Path(style).is_dir() else io.read_image(style)
    _check_out(out, overwrite)
    import faceweave
    from ..checkpoint import read_config
    family = read_config(model)["family"]
    if family != "stylize":
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a stylize one; pass a folder made "
                             "by faceweave train stylize")
    pipe = faceweave.load(model)
    result = pipe(photo, style=reference, style_text=style_text, name=str(image), **options)
    s = pipe.size
    look = result.references[:3] if result.references else []
    panels = [result.aligned, *look, result.stylized]
    with _writing(out, overwrite) as folder:
        io.write_png(folder / "stylized.png", result.stylized)
        io.write_png(folder / "pasted.png", result.images[0])
        io.write_png(folder / "comparison.png", image_grid([io.resize_image(p, s) for p in panels], columns=len(panels)))
        _write_json(folder / "meta.json", {**result.metadata[0], "image": str(image),
                                           "style": None if style is None else str(style)})
    for note in result.metadata[0].get("notes", []):
        click.echo(f"note: {note}", err=True)
    what = (f"one-shot, decoder tuned in {result.metadata[0]['tune_seconds']:.1f} s" if style is not None
            else f"zero-shot: {result.metadata[0]['style_text']!r}")
    click.echo(f"wrote stylized.png, pasted.png, comparison.png and meta.json to {out} ({what})")
