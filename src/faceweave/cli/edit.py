"""`faceweave edit` and `faceweave invert`: real photos through a backend's edit / inversion."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from .base import (
    _check_out, _condition_panels, _diffusion_only, _prompt_attributes_option, _read_conditions,
    _write_json, _writing, main)


@main.command("edit")
@click.option("--image", required=True, type=click.Path(dir_okay=False), help="The face photo to edit.")
@click.option("--mask", default=None, type=click.Path(dir_okay=False),
              help="The edited mask: where the photo's parts should be.")
@click.option("--source-mask", default=None, type=click.Path(dir_okay=False),
              help="The photo's own mask  [default: parsed with the bundled parser]")
@click.option("--prompt", default=None, help="Text for the edited face.")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=0|1", help="Attributes of the edited face.")
@click.option("--backend", default=None,
              help="Editing backend: diffusion, collab or gan  [default: the --model's, else diffusion]")
@click.option("--model", default=None, help="Checkpoint folder or bundled name.")
@click.option("--steps", default=None, type=int,
              help="Inversion and sampling steps  [default: 50; collab: 20 sampling steps; gan: 100 projector "
                   "steps after the encoder, 0 for the encoder alone]")
@click.option("--guidance", default=None, type=float, help="Guidance scale of the edit  [default: 1.0; collab: 2.0]")
@_prompt_attributes_option
@click.option("--everywhere", is_flag=True,
              help="Let the whole image change (default: only where the mask changed, dilated 2 px).")
@click.option("--classes", default=None, metavar="NAME,...",
              help="Count only mask changes from or to these classes as the edit, e.g. mouth,u_lip,l_lip,ear_r "
                   "(useful when the photo's own mask is parsed and imperfect).")
@click.option("--embed-steps", default=30, show_default=True, type=int,
              help="collab: steps optimising each condition embedding to reconstruct the photo.")
@click.option("--finetune-steps", default=30, show_default=True, type=int,
              help="collab: steps fine-tuning each edited collaborator on the photo (0: none).")
@click.option("--eta", default=0.8, show_default=True, type=float,
              help="collab: how far toward the target embedding (0 = the photo's, 1 = the target's).")
@click.option("--seed", default=0, show_default=True, type=int, help="collab: sampling seed.")
@click.option("--strength", default=None, type=float,
              help="gan: 0..3, how far along the mapped edit direction  [default: 1.0]")
@click.option("--blend", default=None, type=click.Choice(["residual", "generated"]),
              help="gan: paste the photo plus the GAN's change (residual) or the GAN's face (generated)  "
                   "[default: residual]")
@click.option("--no-align", is_flag=True,
              help="gan: the image is already an aligned face crop (no detection, no paste-back).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: edited.png, comparison.png, meta.json.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def edit_cmd(image, mask, source_mask, prompt, attrs, backend, model, steps, guidance, prompt_attributes,
             everywhere, classes,
             embed_steps, finetune_steps, eta, seed, strength, blend, no_align, out, overwrite, quiet) -> None:
    """Edit a face photo with a new mask, prompt or attributes, keeping the rest.

    The photo is inverted (probability-flow ODE) under its own mask and regenerated under
    the edited conditions; outside the pixels whose class changed, the photo's own
    inversion path is kept, so only the edited parts change.

    \b
    Example:
      faceweave parse photo.jpg --out photo_mask.png      # then paint the change into a copy
      faceweave edit --image photo.jpg --mask edited_mask.png --out edits/
      faceweave edit --image photo.jpg --mask no_smile.png --classes mouth,u_lip,l_lip --out edits2/
      faceweave edit --backend collab --image photo.jpg --prompt "a smiling woman" --out edits3/
      faceweave edit --backend gan --image photo.jpg --prompt "smiling" --strength 1.5 --out edits4/
    """
    import numpy as np

    from .. import io
    from ..backends.base import backend_name
    from ..conditions import Conditions
    from ..data.sheet import image_grid

    from .. import checkpoint
    family = checkpoint.read_config(model)["family"] if model else "diffusion"
    backend = backend_name(backend) if backend is not None else family
    if backend not in ("diffusion", "collab", "gan"):
        raise FaceweaveError(f"faceweave edit supports --backend diffusion, collab or gan; "
                             f"{backend!r} cannot edit photos yet")
    if backend != "gan" and (strength is not None or blend or no_align):
        raise FaceweaveError("--strength, --blend and --no-align apply to --backend gan only; drop them")
    _diffusion_only(backend, prompt_attributes, "--prompt-attributes/--no-prompt-attributes")
    if model and family != backend:
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a {backend!r} one; "
                             f"drop --backend or pass a {backend} checkpoint")
    photo = io.read_photo(image)
    target = _read_conditions(prompt, mask, None, attrs)
    if not target.given:
        raise FaceweaveError("nothing to edit: give --mask, --prompt or --attr")
    own = None if source_mask is None else io.read_mask(source_mask)
    _check_out(out, overwrite)
    import faceweave
    if backend == "gan":
        if source_mask is not None or everywhere or classes or guidance is not None:
            raise FaceweaveError("--source-mask, --everywhere, --classes and --guidance do not apply to "
                                 "--backend gan; drop them")
        _edit_gan(faceweave.load(model or "gan"), photo, target, 100 if steps is None else steps,
                  1.0 if strength is None else strength, blend or "residual", not no_align, out, overwrite, quiet,
                  name=str(image))
        return
    if backend == "collab":
        _edit_collab(faceweave.load(model or "collab"), photo, target, own, 20 if steps is None else steps,
                     2.0 if guidance is None else guidance, embed_steps, finetune_steps, eta, seed, out,
                     overwrite, quiet)
        return
    steps, guidance = 50 if steps is None else steps, 1.0 if guidance is None else guidance
    pipe = faceweave.load(model or "diffusion")
    size = pipe.size
    if own is None:
        from ..ruler import load_parser
        own = load_parser().predict(photo)
    source = Conditions(mask=own)
    region = np.ones((size, size), bool) if everywhere or target.mask is None else None
    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    result = pipe.edit(photo, source, target, num_inference_steps=steps, guidance_scale=guidance,
                       region=region, classes=names, progress=not quiet,
                       prompt_attributes=prompt_attributes is not False)
    small = io.resize_image(photo, size)
    edited = result.images[0]
    panels = [small, *_condition_panels(source, size), *_condition_panels(target, size), edited]
    with _writing(out, overwrite) as folder:
        io.write_png(folder / "edited.png", edited)
        io.write_png(folder / "comparison.png", image_grid(panels, columns=len(panels)))
        _write_json(folder / "meta.json", result.metadata[0])
    for note in result.metadata[0]["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote edited.png, comparison.png and meta.json to {out} "
               f"({result.metadata[0]['edited_pixels']} pixels free to change)")


def _edit_gan(pipe, photo, target, steps, strength, blend, align, out, overwrite, quiet, name="the photo") -> None:
    """faceweave edit --backend gan: align, invert, move along the mapped difference, paste back."""
    from .. import io
    from ..data.sheet import image_grid

    result = pipe.edit(photo, target, strength=strength, steps=steps, align=align, blend=blend,
                       progress=not quiet, name=name)
    size = pipe.size
    crop = io.resize_image(result.images[0], size) if not align else None
    panels = [result.aligned, result.reconstruction, result.edited_face, *_condition_panels(target, size)]
    if crop is not None:
        panels.append(crop)
    meta = result.metadata[0]
    with _writing(out, overwrite) as folder:
        io.write_png(folder / "edited.png", result.images[0])
        io.write_png(folder / "comparison.png", image_grid(panels, columns=len(panels)))
        _write_json(folder / "meta.json", meta)
    for note in meta["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote edited.png, comparison.png (aligned face | GAN reconstruction | edited | conditions) and "
               f"meta.json to {out} (inversion PSNR {meta['inversion']['psnr']:.2f} dB, {meta['seconds']} s)")


def _edit_collab(pipe, photo, target, source_mask, steps, guidance, embed_steps, finetune_steps, eta, seed,
                 out, overwrite, quiet) -> None:
    """faceweave edit --backend collab: per-collaborator embedding optimisation + fine-tuning.
    source_mask: the photo's own class ids, or None to parse them when the target has a mask."""
    from .. import io
    from ..data.sheet import image_grid

    if getattr(pipe, "names", None) is None:
        raise FaceweaveError("--backend collab needs a collab checkpoint (faceweave train collab); "
                             "drop --model or pass one")
    own = None
    if target.mask is not None:
        own = source_mask
        if own is None:
            from ..ruler import load_parser
            own = load_parser().predict(photo)
    result = pipe.edit(photo, target, source_mask=own, embed_steps=embed_steps, finetune_steps=finetune_steps,
                       eta=eta, num_inference_steps=steps, guidance_scale=guidance, seed=seed,
                       progress=not quiet)
    edited = result.images[0]
    size = pipe.size
    panels = [io.resize_image(photo, size), *_condition_panels(target, size), io.resize_image(edited, size)]
    meta = result.metadata[0]
    with _writing(out, overwrite) as folder:
        io.write_png(folder / "edited.png", edited)
        io.write_png(folder / "comparison.png", image_grid(panels, columns=len(panels)))
        _write_json(folder / "meta.json", meta)
    for note in meta["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote edited.png, comparison.png and meta.json to {out} (optimisation {meta['optimise_seconds']} s, "
               f"sampling {meta['sample_seconds']} s; edited by {', '.join(meta['edited_by'])})")


@main.command("invert")
@click.argument("photo", type=click.Path(dir_okay=False))
@click.option("--mask", default=None, type=click.Path(dir_okay=False),
              help="The photo's mask  [default: parsed with the bundled parser]")
@click.option("--no-mask", is_flag=True, help="Invert without a mask condition.")
@click.option("--prompt", default=None, help="A caption of the photo (optional condition).")
@click.option("--backend", default=None,
              help="diffusion (noise of the ODE) or gan (a StyleGAN2 W+ code)  "
                   "[default: the --model's, else diffusion]")
@click.option("--model", default=None, help="Checkpoint folder or bundled name  [default: the backend's bundled model]")
@click.option("--steps", default=None, type=int,
              help="ODE steps each way  [default: 50]; gan: projector steps after the encoder [default: 100]")
@click.option("--no-align", is_flag=True, help="gan: PHOTO is already an aligned face crop.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: latent.safetensors, reconstruction.png, meta.json.")
@click.option("--overwrite", is_flag=True, help="Replace files in OUT.")
def invert_cmd(photo, mask, no_mask, prompt, backend, model, steps, no_align, out, overwrite) -> None:
    """Invert a face photo into a model's latent space, to keep, reconstruct or edit.

    diffusion: the noise of the probability-flow ODE (latent.safetensors, key "noise").
    gan: the face is found and aligned, then encoded and refined into a StyleGAN2 W+ code
    (latent.safetensors: "wplus" (1, num_ws, w_dim) and the noise maps "noise.0", ...).
    Both write the photo regenerated from the code (reconstruction.png: how faithful the
    inversion is) and meta.json with its PSNR.

    \b
    Example:
      faceweave invert photo.jpg --out inverted/
      faceweave invert photo.jpg --mask photo_mask.png --prompt "a smiling woman" --steps 100 --out inv2/
      faceweave invert photo.jpg --backend gan --out inv3/
    """
    from safetensors.torch import save

    from .. import checkpoint, io
    from ..backends.base import backend_name
    from ..conditions import Conditions, check_prompt
    from ..io import write_png

    family = checkpoint.read_config(model)["family"] if model else None
    backend = backend_name(backend) if backend is not None else (family or "diffusion")
    if backend not in ("diffusion", "gan"):
        raise FaceweaveError(f"faceweave invert supports --backend diffusion or gan, not {backend!r}")
    if family is not None and family != backend:
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a {backend!r} one; "
                             f"drop --backend or pass a {backend} checkpoint")
    if mask is not None and no_mask:
        raise FaceweaveError("give --mask or --no-mask, not both")
    image = io.read_photo(photo)
    prompt, own = check_prompt(prompt), None if mask is None else io.read_mask(mask)
    _check_out(out, overwrite)
    import faceweave
    if backend == "gan":
        if mask is not None or no_mask or prompt is not None:
            raise FaceweaveError("--mask, --no-mask and --prompt apply to --backend diffusion; a GAN inversion "
                                 "reads only the photo")
        _invert_gan(faceweave.load(model or "gan"), image, photo, 100 if steps is None else steps, not no_align,
                    out, overwrite)
        return
    if no_align:
        raise FaceweaveError("--no-align applies to --backend gan only; drop it")
    steps = 50 if steps is None else steps
    pipe = faceweave.load(model or "diffusion")
    if own is None and not no_mask:
        from ..ruler import load_parser
        own = load_parser().predict(image)
    noise, back, meta = pipe.invert(image, Conditions(prompt=prompt, mask=own), num_inference_steps=steps)
    small = io.resize_image(image, pipe.size)
    meta["reconstruction_psnr"] = _psnr(small, back)
    with _writing(out, overwrite) as folder:
        (folder / "latent.safetensors").write_bytes(save({"noise": noise.contiguous()}, metadata={
            "sigma_max": str(meta["sigma_max"]), "steps": str(steps)}))
        write_png(folder / "reconstruction.png", back)
        _write_json(folder / "meta.json", meta)
    for note in meta["notes"]:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote latent.safetensors, reconstruction.png (PSNR {meta['reconstruction_psnr']:.2f} dB) "
               f"and meta.json to {out}")


def _invert_gan(pipe, image, name, steps, align, out, overwrite) -> None:
    from safetensors.torch import save

    from .. import io

    notes = []
    if align:
        from ..align import align_face
        aligned = align_face(image, size=pipe.size, name=str(name))
        face = aligned.image
        if aligned.warning:
            notes.append(aligned.warning)
    else:
        face = image
    inv = pipe.invert(face, steps=steps, progress=True)
    tensors = {"wplus": inv.wplus.detach().float().contiguous().cpu(),
               **{f"noise.{i}": n.detach().float().contiguous().cpu() for i, n in enumerate(inv.noise)}}
    from ..eval.editing import identity_scores

    aligned_face = io.resize_image(face, pipe.size)
    identity = identity_scores(aligned_face[None], inv.reconstruction[None], inv.reconstruction[None])
    meta = {**inv.metadata, "reconstruction_psnr": inv.metadata["psnr"],
            "reconstruction_identity_distance": identity["recon_identity_dist"], "aligned": align, "notes": notes}
    with _writing(out, overwrite) as folder:
        (folder / "latent.safetensors").write_bytes(save(tensors, metadata={
            "model": str(inv.metadata["model"]), "method": inv.metadata["method"]}))
        io.write_png(folder / "aligned.png", aligned_face)
        io.write_png(folder / "reconstruction.png", inv.reconstruction)
        _write_json(folder / "meta.json", meta)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote latent.safetensors, aligned.png, reconstruction.png (PSNR {inv.metadata['psnr']:.2f} dB) "
               f"and meta.json to {out}")


def _psnr(a, b) -> float:
    from ..eval.metrics import psnr
    return round(float(psnr(a, b)), 3)
