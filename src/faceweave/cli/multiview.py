"""`faceweave multiview`: one face rendered at several yaws (the EG3D-style multiview backend)."""
from __future__ import annotations

import click

from ..backends.options import click_options
from ..errors import FaceweaveError
from .base import _check_out, _read_conditions, _write_json, _writing, main


@main.command("multiview")
@click.option("--image", default=None, type=click.Path(dir_okay=False),
              help="A face photo to invert into the generator and turn.")
@click.option("--prompt", default=None, help="Text description of the face (needs a ddgi model on a multiview generator).")
@click.option("--mask", default=None, type=click.Path(dir_okay=False),
              help="Semantic mask PNG (class ids, or colours of a known palette).")
@click.option("--sketch", default=None, type=click.Path(dir_okay=False), help="Line drawing (any polarity).")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=0|1",
              help="A CelebA attribute, e.g. --attr Smiling=1 (repeatable).")
@click.option("--palette", default=None, type=click.Path(dir_okay=False),
              help="Colour palette of --mask if it is not a known one (JSON/TXT of 19 colours).")
@click.option("--yaws", default="-30,-15,0,15,30", show_default=True,
              help="Yaws in degrees, comma-separated, each from -30 to 30 (write --yaws=-30,0,30).")
@click.option("--seed", default=None, help="Seeds, one face each: 0, 0-3 or 0,5  [default: 0]")
@click.option("--model", default=None,
              help="A multiview checkpoint (faceweave train multiview), or for conditions a ddgi checkpoint "
                   "trained on one (faceweave train ddgi --set generator=MULTIVIEW).")
@click_options("multiview")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: FACE_yawY.png per face and yaw, FACE_strip.png, meta.json.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT.")
def multiview_cmd(image, prompt, mask, sketch, attrs, palette, yaws, seed, model, out, overwrite, **flags) -> None:
    """Render one face at several yaws: from a seed, from conditions (through a ddgi model
    trained on the multiview generator) or from a photo (inverted at its estimated yaw).

    \b
    Example:
      faceweave multiview --seed 0-3 --model runs/multiview-64-facesynth/best --out out/
      faceweave multiview --image photo.jpg --yaws=-30,0,30 --model runs/multiview-64-facesynth/best --out out2/
      faceweave multiview --mask mask.png --model runs/ddgi-64-multiview/best --out out3/
    """
    from .. import io
    from ..backends.multiview.pipeline import parse_yaws
    from ..backends.options import chosen
    from ..checkpoint import read_config
    from ..seeds import parse_seeds

    yaw_list = parse_yaws(yaws)
    conditions = _read_conditions(prompt, mask, sketch, attrs, palette)
    if image is not None and conditions.given:
        raise FaceweaveError(f"give a photo (--image) or conditions ({', '.join('--' + g for g in conditions.given)}), "
                             "not both: a photo is turned as it is")
    if image is not None and seed is not None:
        raise FaceweaveError("--seed applies to faces drawn from seeds or conditions, not to --image; drop it")
    if model is None:
        raise FaceweaveError("the multiview backend has no bundled model yet: train one with faceweave train "
                             "multiview --preset s --data facesynth --out runs/multiview-64-facesynth "
                             "(docs/multiview.md) and pass --model runs/multiview-64-facesynth/best")
    options, _ = chosen("multiview", "multiview", flags)
    family = read_config(model)["family"]
    if conditions.given and family != "ddgi":
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint; conditions need a ddgi model trained on a "
                             "multiview generator (faceweave train ddgi --set generator=MULTIVIEW_CHECKPOINT, "
                             "docs/multiview.md), or drop the conditions and use --seed or --image")
    if not conditions.given and family != "multiview":
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a multiview one; pass a folder made by "
                             "faceweave train multiview (a ddgi model on one only with --prompt/--mask/--sketch/--attr)")
    photo = io.read_photo(image) if image is not None else None
    seeds = parse_seeds(seed if seed is not None else "0", "--seed")
    _check_out(out, overwrite)
    import faceweave
    from ..backends.multiview.pipeline import ddgi_multiview
    pipe = faceweave.load(model)
    if conditions.given:
        mv = ddgi_multiview(pipe)
        if mv is None:
            raise FaceweaveError(f"the ddgi model {model} drives a StyleGAN2, not a multiview generator; train one on "
                                 "a multiview checkpoint: faceweave train ddgi --set generator=MULTIVIEW_CHECKPOINT")
        unknown = [k for k in options if k != "truncation"]
        if unknown or "truncation" in options:
            raise FaceweaveError("--truncation, --invert-steps and --no-align apply to seeds and photos, not to "
                                 "conditions; drop them")
        result = mv.views_from_ddgi(pipe, [conditions] * len(seeds), seeds, yaw_list)
        names = [f"{s:06d}" for s in seeds]
    elif photo is not None:
        options.pop("truncation", None)
        result = pipe.views(image=photo, yaws=yaw_list, name=str(image), **options)
        names = ["photo"]
    else:
        if "invert_steps" in options or "align" in options:
            raise FaceweaveError("--invert-steps and --no-align apply to --image; drop them")
        result = pipe.views(seeds=seeds, yaws=yaw_list, **options)
        names = [f"{s:06d}" for s in seeds]
    with _writing(out, overwrite) as folder:
        files = []
        for name, views in zip(names, result.views):
            for yaw, view in zip(yaw_list, views):
                files.append(f"{name}_yaw{yaw:+g}.png")
                io.write_png(folder / files[-1], view)
            io.write_png(folder / f"{name}_strip.png", result.strip(names.index(name)))
        if result.aligned:
            io.write_png(folder / "photo_aligned.png", result.aligned[0])
        _write_json(folder / "meta.json", {"yaws": yaw_list, "model": str(model),
                                           "image": None if image is None else str(image),
                                           "given": list(conditions.given), "faces": result.metadata,
                                           "files": files})
    for meta in result.metadata:
        for note in meta.get("notes", []):
            click.echo(f"note: {note}", err=True)
    extra = (f"; photo at estimated yaw {result.metadata[0]['estimated_yaw']:+.1f}" if image is not None else "")
    click.echo(f"wrote {len(files)} views of {len(names)} face(s), strips and meta.json to {out}{extra}")
