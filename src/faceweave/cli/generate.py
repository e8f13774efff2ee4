"""`faceweave generate`: faces from any mix of prompt, attributes, mask and sketch, by any backend."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from .base import (
    SAMPLER_NAMES, _check_out, _check_sampling_options, _condition_panels, _diffusion_only, _eta_option,
    _layout_prior_option, _parse_pairs, _parse_window, _precision_option, _prompt_attributes_option,
    _read_conditions, _s_tmin_option, _window_option, _write_json, _writing, main)


@main.command("generate")
@click.option("--prompt", default=None, help="Text description of the face.")
@click.option("--mask", default=None, type=click.Path(dir_okay=False),
              help="Semantic mask PNG (class ids, or colours of a known palette).")
@click.option("--sketch", default=None, type=click.Path(dir_okay=False), help="Line drawing (any polarity).")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=0|1",
              help="A CelebA attribute, e.g. --attr Smiling=1 --attr Eyeglasses=0 (repeatable).")
@click.option("--backend", default=None,
              help="Generation backend: diffusion, collab or gan  [default: the --model's, else diffusion]")
@click.option("--model", default=None, help="Checkpoint folder or bundled name  [default: the backend's bundled model]")
@click.option("--seeds", default=None, help="Seeds, one image each: 0-3, 0,5,7 or 0-2,10  [default: 0-3]")
@click.option("--from", "source", default=None, type=click.Path(dir_okay=False), metavar="FILE.jsonl",
              help="One face per line of FILE: a JSON object with any of prompt, attributes, mask, sketch, seed, "
                   "name (docs/batch.md) -> OUT/NAME.png + NAME.json; a second run makes only what is missing.")
@click.option("--batch-size", default=None, type=click.IntRange(1, 1024),
              help="With --from: lines per model call (fixed blocks of line numbers)  [default: 16]")
@click.option("--steps", default=None, type=int, help="Sampling steps (diffusion, collab)  [default: 20]")
@click.option("--guidance", default=None, type=float,
              help="Classifier-free guidance scale for all given conditions together (1 = off)  [default: 2.0]")
@click.option("--scale", "scales", multiple=True, metavar="MODALITY=W",
              help="Per-modality guidance instead of --guidance, e.g. --scale prompt=3 --scale mask=1.5.")
@click.option("--sampler", default=None, type=click.Choice(SAMPLER_NAMES),
              help="Sampler (diffusion, collab): the ODE solvers euler, heun, dpmpp_2m, ddim; euler_ancestral "
                   "adds fresh noise each step (= ddim with --ddim-eta 1)  "
                   "[default: euler_ancestral for diffusion, dpmpp_2m for collab]")
@_eta_option
@_s_tmin_option
@_window_option
@_prompt_attributes_option
@_layout_prior_option
@_precision_option
@click.option("--palette", default=None, type=click.Path(dir_okay=False),
              help="Colour palette of --mask if it is not a known one (JSON/TXT of 19 colours).")
@click.option("--diversity", default=None, type=float,
              help="gan: 0..1, how far each seed's own latent replaces the finest layers of the mapped one  "
                   "[default: 0.5]")
@click.option("--mixing", default=None, type=click.Choice(["learned", "average"]),
              help="collab: the dynamic diffuser's maps or the naive average of the collaborators  [default: learned]")
@click.option("--save-influence", is_flag=True,
              help="collab: write OUT/influence.png (rows = collaborators, columns = steps; first 4 seeds).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: SEED.png per seed, grid.png, meta.json (--from: NAME.png, NAME.json, run.json).")
@click.option("--overwrite", is_flag=True,
              help="Replace files in OUT (--from: a folder made with other settings, or from another file).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate_cmd(prompt, mask, sketch, attrs, backend, model, seeds, source, batch_size, steps, guidance, scales,
                 sampler, eta, s_tmin, window, prompt_attributes, layout_prior, precision, diversity, mixing,
                 save_influence, palette, out, overwrite, quiet) -> None:
    """Generate faces from any mix of a prompt, attributes, a mask and a sketch.

    Image i depends only on seed i: the same seed gives the same face whatever else is
    asked for in the same call.

    \b
    Example:
      faceweave generate --prompt "a smiling woman with blond hair" \\
          --mask examples/mask_real_woman.png --seeds 0-3 --out out/      # real faces: diffusion-64-real
      faceweave generate --attr Male=1 --attr Eyeglasses=1 --scale attributes=3 --out out2/
      faceweave data synth --out /tmp/fs --n 1 --size 64                  # FaceSynth: diffusion-64
      faceweave generate --model diffusion-64 --prompt "a bald man with glasses" --out out7/   # + SEED_layout.png
      faceweave generate --model diffusion-64 --prompt "a bald man" --mask out7/000002_layout.png --seeds 2 --out out8/
      faceweave generate --prompt "an old man with a goatee" --sampler dpmpp_2m --out out5/   # more variety, higher fd
      faceweave generate --prompt "a woman with glasses" --precision bf16 --seeds 0-15 --out out6/   # faster on a CPU with bf16
      faceweave generate --backend collab --prompt "a bald man" --mask /tmp/fs/masks/000000.png \\
          --save-influence --out out3/
      faceweave generate --backend gan --prompt "a smiling man" --mask /tmp/fs/masks/000000.png --out out4/

    \b
    Many faces from a file, one JSON object per line (docs/batch.md); run again to resume:
      faceweave generate --from examples/conditions.jsonl --out out9/
      accelerate launch --multi_gpu --num_processes 2 -m faceweave.cli generate \\
          --from examples/conditions.jsonl --out out9/        # lines shared between 2 processes
    """
    import numpy as np

    from .. import checkpoint
    from ..backends.base import backend_name
    from ..conditions import colorize_mask
    from ..data.sheet import image_grid
    from ..io import resize_mask, write_png
    from ..seeds import parse_seeds

    if backend is not None:
        backend = backend_name(backend)
        if backend not in ("diffusion", "collab", "gan"):
            raise FaceweaveError(f"faceweave generate runs --backend diffusion, collab or gan (the {backend!r} "
                                 "backend is for evaluation only)")
    if scales and guidance is not None:
        raise FaceweaveError("give either --guidance (one scale) or --scale MODALITY=W (per modality), not both")
    if source is not None:
        named = [flag for flag, value in (("--prompt", prompt), ("--mask", mask), ("--sketch", sketch),
                                          ("--attr", attrs), ("--seeds", seeds)) if value]
        if named:
            raise FaceweaveError(f"with --from each line gives its own conditions and seed; drop {', '.join(named)} "
                                 "(or put it in the lines)")
        if save_influence:
            raise FaceweaveError("--save-influence draws one call's seeds, not a --from file's lines; drop it")
    elif batch_size is not None:
        raise FaceweaveError("--batch-size applies to --from; drop it")
    cond = None if source is not None else _read_conditions(prompt, mask, sketch, attrs, palette)
    seed_list = None if source is not None else parse_seeds("0-3" if seeds is None else seeds)
    scale = _parse_pairs(scales, "--scale", float) if scales else (2.0 if guidance is None else guidance)
    import faceweave
    family = checkpoint.read_config(model)["family"] if model else (backend or "diffusion")
    if backend is not None and family != backend:
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a {backend!r} one; "
                             f"drop --backend or pass a {backend} checkpoint")
    if family != "collab" and (mixing or save_influence):
        raise FaceweaveError("--mixing and --save-influence apply to --backend collab only; drop them")
    if family == "gan" and (steps is not None or guidance is not None or scales or sampler or eta is not None
                            or window is not None):
        raise FaceweaveError("the gan backend has no sampling steps, guidance or sampler (one forward pass); "
                             "drop --steps/--guidance/--scale/--sampler/--ddim-eta/--guidance-window")
    _check_sampling_options(family, sampler, eta, window)
    if family != "gan" and diversity is not None:
        raise FaceweaveError("--diversity applies to --backend gan only; drop it")
    _diffusion_only(family, prompt_attributes, "--prompt-attributes/--no-prompt-attributes")
    _diffusion_only(family, layout_prior, "--layout-prior/--no-layout-prior")
    _diffusion_only(family, precision, "--precision")
    _diffusion_only(family, s_tmin, "--s-tmin")
    if family == "gan":
        options = {"diversity": 0.5 if diversity is None else diversity}
    else:
        extra = {"mixing": mixing or "learned", **({"return_influence": True} if save_influence else {})} \
            if family == "collab" else \
            {"prompt_attributes": prompt_attributes is not False, "guidance_window": _parse_window(window),
             "layout_prior": layout_prior, "s_tmin": s_tmin or 0.0}
        options = {"num_inference_steps": 20 if steps is None else steps, "guidance_scale": scale, "eta": eta or 0.0,
                   **({"sampler": sampler} if sampler else {}), **extra}
    if source is not None:
        from ..batch import generate_from
        status = generate_from(source, out, family=family, model=model or family, options=options,
                               precision=precision or "fp32", batch_size=batch_size or 16, palette=palette,
                               overwrite=overwrite, quiet=quiet)
        raise click.exceptions.Exit(status)
    _check_out(out, overwrite)
    pipe = faceweave.load(model or family, precision=precision or "fp32")
    result = pipe(conditions=cond, seeds=seed_list, progress=not quiet, **options)
    with _writing(out, overwrite) as folder:
        if save_influence:
            from ..backends.collab import influence_picture
            pictures = [influence_picture(maps, pipe.names, image)
                        for maps, image in zip(result.influence[:4], result.images)]
            write_png(folder / "influence.png", np.concatenate(pictures, 0))
        for seed, image in zip(seed_list, result.images):
            write_png(folder / f"{seed:06d}.png", image)
        layouts = getattr(result, "layouts", None) or [None] * len(seed_list)
        for seed, layout in zip(seed_list, layouts):
            if layout is not None:      # colour-coded, so it can be edited and passed back as --mask
                write_png(folder / f"{seed:06d}_layout.png", colorize_mask(layout))
        size = result.images[0].shape[0]
        panels = _condition_panels(cond, size)
        per_row = min(8, len(seed_list))
        if any(layout is not None for layout in layouts[:16]):
            # each row of outputs over a row of the layouts drawn for them
            blank = np.full((size, size, 3), 255, np.uint8)
            cells = []
            for start in range(0, min(16, len(seed_list)), per_row):
                outs = result.images[start:start + per_row]
                lays = [blank if m is None else colorize_mask(resize_mask(m, size))
                        for m in layouts[start:start + per_row]]
                pad = [blank] * (per_row - len(outs))
                cells += (panels if start == 0 else [blank] * len(panels)) + outs + pad
                cells += [blank] * len(panels) + lays + pad
            write_png(folder / "grid.png", image_grid(cells, columns=len(panels) + per_row))
        else:
            shown = result.images[:16]
            write_png(folder / "grid.png", image_grid(panels + shown, columns=len(panels) + min(8, len(shown))))
        listing = {"images": [f"{s:06d}.png" for s in seed_list]}
        if any(layout is not None for layout in layouts):
            listing["layouts"] = [None if m is None else f"{s:06d}_layout.png" for s, m in zip(seed_list, layouts)]
        _write_json(folder / "meta.json", {**listing, "results": result.metadata})
    for note in sorted({n for m in result.metadata for n in m["notes"]}):
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {len(seed_list)} images, grid.png and meta.json to {out}")
