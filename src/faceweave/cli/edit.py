"""`faceweave edit` and `faceweave invert`: real photos through a backend's edit / inversion."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from ..backends.options import click_options
from .base import _check_out, _read_conditions, _write_json, _writing, main


def _command_backend(command: str, backend, model) -> str:
    """The backend a photo command runs: --backend, else the --model's family, else diffusion;
    one that lacks the command (its spec's capabilities) is a one-line error."""
    from .. import checkpoint
    from ..backends.base import DEFAULT_BACKEND, backend_name
    from ..backends.options import capable, join_names

    family = checkpoint.read_config(model)["family"] if model else None
    name = backend_name(backend) if backend is not None else (family or DEFAULT_BACKEND)
    able = capable(command)
    if name not in able:
        what = {"edit": "edit photos", "invert": "invert photos"}[command]
        raise FaceweaveError(f"faceweave {command} supports --backend {join_names(able)}; {name!r} cannot {what}")
    if family is not None and family != name:
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a {name!r} one; "
                             f"drop --backend or pass a {name} checkpoint")
    return name


@main.command("edit")
@click.option("--image", required=True, type=click.Path(dir_okay=False), help="The face photo to edit.")
@click.option("--mask", default=None, type=click.Path(dir_okay=False),
              help="The edited mask: where the photo's parts should be.")
@click.option("--prompt", default=None, help="Text for the edited face.")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=0|1", help="Attributes of the edited face.")
@click.option("--backend", default=None,
              help="Editing backend: diffusion, collab or gan  [default: the --model's, else diffusion]")
@click.option("--model", default=None, help="Checkpoint folder or bundled name.")
@click_options("edit")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: edited.png, comparison.png, meta.json.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def edit_cmd(image, mask, prompt, attrs, backend, model, out, overwrite, quiet, **flags) -> None:
    """Edit a face photo with a new mask, prompt or attributes, keeping the rest.

    diffusion: the photo is inverted (probability-flow ODE) under its own mask and
    regenerated under the edited conditions; outside the pixels whose class changed, the
    photo's own inversion path is kept, so only the edited parts change. collab: each
    edited collaborator's condition is optimised and fine-tuned on the photo (Imagic-style).
    gan: the face is aligned, inverted into W+, moved along the mapped edit and pasted back.

    \b
    Example:
      faceweave parse photo.jpg --out photo_mask.png      # then paint the change into a copy
      faceweave edit --image photo.jpg --mask edited_mask.png --out edits/
      faceweave edit --image photo.jpg --mask no_smile.png --classes mouth,u_lip,l_lip --out edits2/
      faceweave edit --backend collab --image photo.jpg --prompt "a smiling woman" --out edits3/
      faceweave edit --backend gan --image photo.jpg --prompt "smiling" --strength 1.5 --out edits4/
    """
    from .. import io
    from ..backends.options import chosen
    from ..data.sheet import image_grid

    backend = _command_backend("edit", backend, model)
    options, _ = chosen("edit", backend, flags)
    photo = io.read_photo(image)
    target = _read_conditions(prompt, mask, None, attrs)
    if not target.given:
        raise FaceweaveError("nothing to edit: give --mask, --prompt or --attr")
    _check_out(out, overwrite)
    import faceweave
    pipe = faceweave.load(model or backend)
    result = pipe.edit_photo(photo, target, progress=not quiet, name=str(image), **options)
    with _writing(out, overwrite) as folder:
        io.write_png(folder / "edited.png", result.image)
        io.write_png(folder / "comparison.png", image_grid(result.panels, columns=len(result.panels)))
        _write_json(folder / "meta.json", result.metadata)
    for note in result.metadata.get("notes", []):
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote edited.png, comparison.png and meta.json to {out} ({result.summary})")


@main.command("invert")
@click.argument("photo", type=click.Path(dir_okay=False))
@click.option("--backend", default=None,
              help="diffusion (noise of the ODE) or gan (a StyleGAN2 W+ code)  "
                   "[default: the --model's, else diffusion]")
@click.option("--model", default=None, help="Checkpoint folder or bundled name  [default: the backend's bundled model]")
@click_options("invert")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: latent.safetensors, reconstruction.png, meta.json.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT.")
def invert_cmd(photo, backend, model, out, overwrite, **flags) -> None:
    """Invert a face photo into a model's latent space, to keep, reconstruct or edit.

    diffusion: the noise of the probability-flow ODE (latent.safetensors, key "noise").
    gan: the face is found and aligned, then encoded and refined into a StyleGAN2 W+ code
    (latent.safetensors: "wplus" (1, num_ws, w_dim) and the noise maps "noise.0", ...;
    aligned.png: the face it read). Both write the photo regenerated from the code
    (reconstruction.png: how faithful the inversion is) and meta.json with its PSNR.

    \b
    Example:
      faceweave invert photo.jpg --out inverted/
      faceweave invert photo.jpg --mask photo_mask.png --prompt "a smiling woman" --steps 100 --out inv2/
      faceweave invert photo.jpg --backend gan --out inv3/
    """
    from safetensors.torch import save

    from .. import io
    from ..backends.options import chosen

    backend = _command_backend("invert", backend, model)
    options, _ = chosen("invert", backend, flags)
    image = io.read_photo(photo)
    _check_out(out, overwrite)
    import faceweave
    pipe = faceweave.load(model or backend)
    result = pipe.invert_photo(image, name=str(photo), **options)
    with _writing(out, overwrite) as folder:
        if result.tensors is not None:
            (folder / "latent.safetensors").write_bytes(save(result.tensors, metadata=result.tensor_metadata))
        for name, picture in result.files.items():
            io.write_png(folder / name, picture)
        io.write_png(folder / "reconstruction.png", result.image)
        _write_json(folder / "meta.json", result.metadata)
    for note in result.metadata.get("notes", []):
        click.echo(f"note: {note}", err=True)
    files = ", ".join([*(["latent.safetensors"] if result.tensors is not None else []), *result.files])
    click.echo(f"wrote {files}, reconstruction.png ({result.summary}) and meta.json to {out}")
