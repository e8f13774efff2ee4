"""`faceweave parse` and `faceweave describe`: the ruler's parser and attribute reader on photos."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from .base import _check_out, _writing, main


@main.command("parse")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(),
              help="Output mask PNG for one image; a folder (NAME.png per image) for several.")
@click.option("--model", default=None,
              help="Checkpoint folder or bundled name  [default: parser-real-128 (real photos); "
                   "parser-64 / parser-128 for FaceSynth faces]")
@click.option("--color", is_flag=True, help="Write a colour-coded mask (CelebAMask-HQ palette) instead of class ids.")
@click.option("--overwrite", is_flag=True, help="With several images: write into an --out folder that holds files.")
def parse_cmd(images, out, model, color, overwrite) -> None:
    """Label every pixel of face photos with one of the 19 CelebAMask-HQ classes.

    Each mask has its image's size. Without --color it is an index PNG (pixel value =
    class id), the format every --mask option reads. The default parser was trained on
    real CelebA-HQ photos (aligned faces, as `faceweave align`-style crops give).

    \b
    Example:
      faceweave parse face.png --out face_mask.png
      faceweave parse photos/*.jpg --out masks/
      faceweave parse face.png --out face_mask_colour.png --color --model parser-128
    """
    from pathlib import Path

    from .. import io
    from ..ruler import load_parser, photo_parser_name

    if len(images) == 1 and not Path(out).is_dir():
        if Path(out).suffix.lower() != ".png":
            raise FaceweaveError(f"--out {out} must end in .png for one image (or be a folder)")
        photo = io.read_photo(images[0])                 # a bad file is refused before the parser loads
        mask = load_parser(model if model is not None else photo_parser_name()).predict(photo)
        (io.write_color_mask if color else io.write_mask)(out, mask)
        click.echo(f"wrote {out} ({mask.shape[1]}x{mask.shape[0]})")
        return
    stems = [Path(p).stem for p in images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise FaceweaveError(f"several images are named {clash[0]!r}; their masks would overwrite each other "
                             "(rename them or parse them into separate folders)")
    photos = [io.read_photo(p) for p in images]       # every file is checked before anything is written
    _check_out(out, overwrite)
    parser = load_parser(model if model is not None else photo_parser_name())
    from tqdm import tqdm

    with _writing(out, overwrite) as folder:
        for stem, photo in tqdm(list(zip(stems, photos)), desc="parse", unit="img", disable=None):
            (io.write_color_mask if color else io.write_mask)(folder / f"{stem}.png", parser.predict(photo))
    click.echo(f"wrote {len(images)} masks to {out}")


@main.command("describe")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help='One JSON object per line: {"image", "attributes", "caption"}.')
@click.option("--model", default=None,
              help="Checkpoint folder or bundled name  [default: classifier-64; with --real: parser-real-128]")
@click.option("--real", "real", is_flag=True,
              help="Real photos: read the attributes the real ruler reads (the parsed mask, the hair, dlib's "
                   "age and gender) instead of the FaceSynth classifier's 40.")
def describe_cmd(images, as_json, model, real) -> None:
    """Attribute probabilities and a caption for each face image.

    \b
    Example:
      faceweave describe face.png
      faceweave describe photos/*.jpg --json > labels.jsonl
      faceweave describe --real photos/*.jpg
    """
    import json

    from .. import io
    from ..text import describe_attributes

    photos = [io.read_photo(path) for path in images]      # every file is checked before a model loads
    if real:
        from ..eval.real import RealLabeller, real_parser

        labeller = RealLabeller(real_parser(model, 128), strict=True)   # no face, two faces: an error
        names = iter(images)

        def read(photo):
            probs = labeller.predict_proba(photo[None], names=[next(names)])[0]
            return dict(zip(labeller.attributes, map(float, probs)))
    else:
        from ..ruler import load_classifier

        read = load_classifier(model).predict
    lines = []                                 # printed once all are read: an error prints nothing else
    for path, photo in zip(images, photos):
        attributes = read(photo)
        caption = describe_attributes(attributes)
        if as_json:
            lines.append(json.dumps({"image": path, "attributes": attributes, "caption": caption}))
        else:
            present = ", ".join(f"{k} {v:.2f}" for k, v in sorted(attributes.items(), key=lambda kv: -kv[1])
                                if v >= 0.5)
            lines.append(f"{path}: {caption}\n  present: {present or 'none'}")
    for line in lines:
        click.echo(line)


# --- generation ---------------------------------------------------------------------------
