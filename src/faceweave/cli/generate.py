"""`faceweave generate`: faces from any mix of prompt, attributes, mask and sketch, by any backend."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from ..backends.options import click_options
from .base import _check_out, _check_sampling_options, _read_conditions, _write_json, _writing, main


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
@click.option("--palette", default=None, type=click.Path(dir_okay=False),
              help="Colour palette of --mask if it is not a known one (JSON/TXT of 19 colours).")
@click_options("generate")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: SEED.png per seed, grid.png, meta.json (--from: NAME.png, NAME.json, run.json).")
@click.option("--overwrite", is_flag=True,
              help="Replace files in OUT (--from: a folder made with other settings, or from another file).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate_cmd(prompt, mask, sketch, attrs, backend, model, seeds, source, batch_size, palette, out, overwrite,
                 quiet, **flags) -> None:
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
    from ..backends.base import DEFAULT_BACKEND, backend_name
    from ..backends.options import capable, chosen, join_names
    from ..conditions import colorize_mask
    from ..data.sheet import condition_panels, image_grid
    from ..io import resize_mask, write_png
    from ..seeds import parse_seeds

    if backend is not None:
        backend = backend_name(backend)
        if backend not in capable("generate"):
            raise FaceweaveError(f"faceweave generate runs --backend {join_names(capable('generate'))} (the "
                                 f"{backend!r} backend is for evaluation only)")
    family = checkpoint.read_config(model)["family"] if model else (backend or DEFAULT_BACKEND)
    if backend is not None and family != backend:
        raise FaceweaveError(f"--model {model} is a {family!r} checkpoint, not a {backend!r} one; "
                             f"drop --backend or pass a {backend} checkpoint")
    options, load = chosen("generate", family, flags)
    _check_sampling_options(options)
    save_influence = options.get("return_influence", False)
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
    import faceweave
    precision = load.get("precision", "fp32")
    if source is not None:
        from ..batch import generate_from
        status = generate_from(source, out, family=family, model=model or family, options=options,
                               precision=precision, batch_size=batch_size or 16, palette=palette,
                               overwrite=overwrite, quiet=quiet)
        raise click.exceptions.Exit(status)
    _check_out(out, overwrite)
    pipe = faceweave.load(model or family, precision=precision)
    result = pipe(conditions=cond, seeds=seed_list, progress=not quiet, **options)
    with _writing(out, overwrite) as folder:
        if save_influence:
            write_png(folder / "influence.png", np.concatenate(pipe.influence_pictures(result, 4), 0))
        for seed, image in zip(seed_list, result.images):
            write_png(folder / f"{seed:06d}.png", image)
        layouts = getattr(result, "layouts", None) or [None] * len(seed_list)
        for seed, layout in zip(seed_list, layouts):
            if layout is not None:      # colour-coded, so it can be edited and passed back as --mask
                write_png(folder / f"{seed:06d}_layout.png", colorize_mask(layout))
        size = result.images[0].shape[0]
        panels = condition_panels(cond, size)
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
