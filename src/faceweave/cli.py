"""The `faceweave` command. Every subcommand has --help with a runnable example.

A user mistake (a bad file, flag or folder) is a FaceweaveError: one line on stderr,
exit status 2, nothing written half-way. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

import click

from .errors import FaceweaveError


class _Group(click.Group):
    """A click group that turns FaceweaveError, and click's own usage errors (a word where a
    number goes, an unknown option), into one `error: ...` line and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FaceweaveError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            message = " ".join(exc.format_message().split())
            click.echo(f"error: {message} (see {where} --help)", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faceweave")
def main() -> None:
    """faceweave: multi-modal face generation and editing.

    \b
    Example:
      faceweave data synth --out data/fs64 --n 16 --size 64
      faceweave data show data/fs64 --out sheet.png
    """


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
    from .data.prepare import synthesize

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
    from .data.sheet import save_contact_sheet

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

    from .data.stats import dataset_stats, format_stats

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
    from .data.prepare import prepare

    count = prepare(layout, src, out, size=size, overwrite=overwrite, limit=limit)
    click.echo(f"wrote {count} samples to {out}")


@main.command("train")
@click.argument("family")
@click.option("--preset", default=None,
              help="Named recipe, e.g. s64 (see `faceweave.train.TASKS[FAMILY].presets`; optional with --resume).")
@click.option("--data", default=None, help="facesynth:SIZE[:n=N] or a unified folder (optional with --resume).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: run.json, metrics.jsonl, last/, best/.")
@click.option("--max-steps", type=int, default=None, help="Total optimizer steps (overrides the preset).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last (weights, optimizer, step).")
@click.option("--batch-size", type=int, default=None, help="Images per step (overrides the preset).")
@click.option("--lr", type=float, default=None, help="Peak learning rate (overrides the preset).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other preset key, e.g. --set ema_decay=0.999 --set weighting=p2 (JSON values); "
                   "model.NAME sets one field of the architecture, e.g. --set model.mask_mode=spatial.")
@click.option("--modalities", default=None, metavar="LIST",
              help="diffusion only: the conditions the model reads, e.g. text or mask,sketch (default: all four).")
@click.option("--collaborators", default=None, metavar="NAME=CKPT,...",
              help="collab only: the frozen uni-modal models, e.g. text=runs/uni-text/best,mask=runs/uni-mask/best.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(family, preset, data, out, max_steps, resume, batch_size, lr, settings, modalities, collaborators,
              quiet) -> None:
    """Train a model family (parser, classifier, diffusion, vae, collab) with a named preset.

    \b
    Example:
      faceweave train diffusion --preset s64 --data facesynth:64 --out runs/diffusion64
      faceweave train vae --preset f4 --data facesynth:128 --out runs/vae128
      faceweave train diffusion --preset s128 --data facesynth:128 --set vae=runs/vae128/best --out runs/d128
      faceweave train diffusion --preset uni64 --modalities mask --data facesynth:64 --out runs/uni-mask
      faceweave train diffusion --preset s64 --data facesynth:64 --out runs/spatial --set model.mask_mode=spatial
      faceweave train collab --preset s64 --data facesynth:64 --out runs/collab64 \\
          --collaborators text=runs/uni-text/best,mask=runs/uni-mask/best
      faceweave train parser --preset tiny --data facesynth:32 --out runs/parser-tiny --max-steps 20
      faceweave train parser --preset s64 --data facesynth:64:n=1000000 --out runs/parser64
      faceweave train parser --out runs/parser64 --resume

    Ctrl-C (or SIGTERM) saves the checkpoint after the step in progress and stops;
    --resume continues from there.
    """
    from .train import train

    if data is None and not resume:
        raise FaceweaveError("--data is required to start a run (e.g. --data facesynth:64); "
                             "only --resume may leave it out")
    if preset is None and not resume:
        raise FaceweaveError("--preset is required to start a run (e.g. --preset s64); "
                             "only --resume may leave it out (the run remembers its recipe)")
    import json
    extra = _parse_pairs(settings, "--set", lambda v: _json_or_text(json, v))
    if modalities is not None:
        if family != "diffusion":
            raise FaceweaveError(f"--modalities is for diffusion models, not {family}")
        from .train.tasks import check_modalities
        extra["modalities"] = check_modalities(modalities)
    if collaborators is not None:
        if family != "collab":
            raise FaceweaveError(f"--collaborators is for faceweave train collab, not {family}")
        from .train.tasks import parse_collaborators
        extra["collaborators"] = parse_collaborators(collaborators)
    # --lr, --batch-size and --max-steps are shorthands for --set; one that is not given must
    # not undo the same key given with --set (a dropped --set lr=... trained at the preset's lr)
    flags = {"max_steps": max_steps, "batch_size": batch_size, "lr": lr}
    clash = sorted(k for k, v in flags.items() if v is not None and k in extra and extra[k] != v)
    if clash:
        raise FaceweaveError(f"{', '.join(clash)} given twice with different values (a flag and --set); give it once")
    result = train(family, preset, data, out, resume=resume, progress=not quiet,
                   overrides={**extra, **{k: v for k, v in flags.items() if v is not None}})
    import os
    if int(os.environ.get("RANK", "0")) != 0:          # one summary line per run, not per process
        return
    if result.get("stopped_by"):
        # 128 + the signal's number, as a shell reports a process that a signal ended
        import signal
        code = getattr(signal, result["stopped_by"], signal.SIGTERM)
        click.echo(f"stopped at step {result['step']} ({result['stopped_by']}); the checkpoint is saved: "
                   f"continue with  faceweave train {family} --out {out} --resume", err=True)
        sys.exit(128 + int(code))
    click.echo(f"finished at step {result['step']}: " +
               ", ".join(f"{k}={v:.4f}" for k, v in result.items() if k != "step" and isinstance(v, float)))


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

    from . import io
    from .ruler import load_parser

    if len(images) == 1 and not Path(out).is_dir():
        if Path(out).suffix.lower() != ".png":
            raise FaceweaveError(f"--out {out} must end in .png for one image (or be a folder)")
        photo = io.read_photo(images[0])                 # a bad file is refused before the parser loads
        mask = load_parser(model if model is not None else _default_photo_parser()).predict(photo)
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
    parser = load_parser(model if model is not None else _default_photo_parser())
    from tqdm import tqdm

    with _writing(out, overwrite) as folder:
        for stem, photo in tqdm(list(zip(stems, photos)), desc="parse", unit="img", disable=None):
            (io.write_color_mask if color else io.write_mask)(folder / f"{stem}.png", parser.predict(photo))
    click.echo(f"wrote {len(images)} masks to {out}")


def _default_photo_parser() -> str:
    """The real-face parser when it is bundled, else the FaceSynth one."""
    from .checkpoint import bundled_models

    return "parser-real-128" if "parser-real-128" in bundled_models() else "parser-64"


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

    from . import io
    from .text import describe_attributes

    photos = [io.read_photo(path) for path in images]      # every file is checked before a model loads
    if real:
        from .eval.real import RealLabeller, real_parser

        labeller = RealLabeller(real_parser(model, 128), strict=True)   # no face, two faces: an error
        names = iter(images)

        def read(photo):
            probs = labeller.predict_proba(photo[None], names=[next(names)])[0]
            return dict(zip(labeller.attributes, map(float, probs)))
    else:
        from .ruler import load_classifier

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

def _parse_pairs(values, what: str, cast) -> dict:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise FaceweaveError(f"{what} {item!r} must look like NAME=VALUE")
        try:
            out[name.strip()] = cast(value.strip())
        except ValueError:
            raise FaceweaveError(f"{what} {item!r}: {value.strip()!r} is not a valid value") from None
    return out


def _json_or_text(json, value: str):
    """--set values: JSON when they parse (numbers, true, null, lists), else the text itself."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _attribute_value(text: str) -> int:
    low = text.lower()
    if low in ("1", "yes", "true", "y"):
        return 1
    if low in ("0", "no", "false", "n"):
        return 0
    raise ValueError(text)


def _read_conditions(prompt, mask, sketch, attrs, palette=None):
    from . import io
    from .conditions import Conditions

    return Conditions(prompt=prompt, attributes=_parse_pairs(attrs, "--attr", _attribute_value),
                      mask=None if mask is None else io.read_mask(mask, palette=palette),
                      sketch=None if sketch is None else io.read_sketch(sketch))


def _check_out(out, overwrite: bool) -> None:
    """Refuse an --out folder that cannot be written before any model runs (io.check_output_folder);
    here --overwrite replaces the files of the same names and keeps the others."""
    from . import io

    io.check_output_folder(out, overwrite, replace=False)


def _writing(out, overwrite: bool):
    """`with _writing(out, overwrite) as folder:` every file lands in --out at once or none
    does (io.output_folder)."""
    from . import io

    return io.output_folder(out, overwrite, replace=False)


def _write_json(path, data) -> None:
    import json
    import os

    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)


def _condition_panels(cond, size: int):
    """Pictures of the given conditions (coloured mask, sketch), for the overview grid."""
    import numpy as np

    from .conditions import colorize_mask
    from .io import resize_sketch, resize_mask

    panels = []
    if cond.mask is not None:
        panels.append(colorize_mask(resize_mask(cond.mask, size)))
    if cond.sketch is not None:
        panels.append(np.repeat(255 - resize_sketch(cond.sketch, size)[..., None], 3, 2))
    return panels


# diffusion only: read the attributes a prompt names into attribute tokens (generate, edit, evaluate)
_prompt_attributes_option = click.option(
    "--prompt-attributes/--no-prompt-attributes", "prompt_attributes", default=None,
    help="diffusion: also condition on the attributes the prompt names (\"blond\" -> Blond_Hair=1; --attr wins); "
         "--no-prompt-attributes leaves the prompt to the text encoder  [default: on]")


# sampler details shared by generate and evaluate (names as in diffusion.samplers.SAMPLERS; not imported
# here, so --help never loads torch)
SAMPLER_NAMES = ("euler", "heun", "dpmpp_2m", "ddim", "euler_ancestral")
_eta_option = click.option(
    "--ddim-eta", "eta", default=None, type=float,
    help="With --sampler ddim: 0 deterministic, 1 ancestral (fresh noise each step, from each image's seed)  "
         "[default: 0]")
_s_tmin_option = click.option(
    "--s-tmin", "s_tmin", default=None, type=float, metavar="SIGMA",
    help="diffusion, euler_ancestral (or ddim with --ddim-eta > 0): fresh noise only at the steps from a noise "
         "level >= SIGMA, deterministic below (Karras et al.'s S_tmin; measured in docs/diffusion.md)  [default: 0]")
_window_option = click.option(
    "--guidance-window", "window", default=None, metavar="START,END",
    help="diffusion: guide only from START to END, fractions of the steps (e.g. 0.2,0.8)  [default: all steps]")


_precision_option = click.option(
    "--precision", default=None, type=click.Choice(["fp32", "bf16"]),
    help="diffusion: bf16 runs the denoiser under bfloat16 autocast: 1.3-2.3x less CPU time on a CPU with "
         "AVX512-BF16 or AMX (measured in docs/diffusion.md), half a grey level from fp32 on average  "
         "[default: fp32]")


def _diffusion_only(backend: str, value, flag: str) -> None:
    """A diffusion-only option given (not None) with another backend is a one-line error."""
    if value is not None and backend != "diffusion":
        verb = "apply" if "/" in flag else "applies"
        raise FaceweaveError(f"{flag} {verb} to --backend diffusion, not {backend}; drop it")


def _parse_window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        start, end = (float(p) for p in parts)
    except ValueError:
        raise FaceweaveError(f"--guidance-window {text!r} must be two fractions START,END, e.g. 0.2,0.8") from None
    return start, end


def _check_sampling_options(backend: str, sampler: str | None, eta: float | None, window: str | None) -> None:
    if eta is not None and sampler != "ddim":
        raise FaceweaveError("--ddim-eta applies to --sampler ddim; add --sampler ddim or drop --ddim-eta")
    if window is not None and backend != "diffusion":
        raise FaceweaveError(f"--guidance-window applies to --backend diffusion, not {backend}; drop it")


# diffusion only: draw a FaceSynth layout for a prompt or attributes given without a mask (generate, evaluate)
_layout_prior_option = click.option(
    "--layout-prior/--no-layout-prior", "layout_prior", default=None,
    help="diffusion: given a prompt or attributes but no mask or sketch, follow a FaceSynth label map drawn "
         "(from each seed) to have the attributes asked for; --no-layout-prior lets the model invent the "
         "layout  [default: the model's own: on unless the checkpoint says otherwise]")


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

    from . import checkpoint
    from .backends.base import backend_name
    from .conditions import colorize_mask
    from .data.sheet import image_grid
    from .io import resize_mask, write_png
    from .seeds import parse_seeds

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
        from .batch import generate_from
        status = generate_from(source, out, family=family, model=model or family, options=options,
                               precision=precision or "fp32", batch_size=batch_size or 16, palette=palette,
                               overwrite=overwrite, quiet=quiet)
        raise click.exceptions.Exit(status)
    _check_out(out, overwrite)
    pipe = faceweave.load(model or family, precision=precision or "fp32")
    result = pipe(conditions=cond, seeds=seed_list, progress=not quiet, **options)
    with _writing(out, overwrite) as folder:
        if save_influence:
            from .backends.collab import influence_picture
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

    from . import io
    from .backends.base import backend_name
    from .conditions import Conditions
    from .data.sheet import image_grid

    from . import checkpoint
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
        from .ruler import load_parser
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
    from . import io
    from .data.sheet import image_grid

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
    from . import io
    from .data.sheet import image_grid

    if getattr(pipe, "names", None) is None:
        raise FaceweaveError("--backend collab needs a collab checkpoint (faceweave train collab); "
                             "drop --model or pass one")
    own = None
    if target.mask is not None:
        own = source_mask
        if own is None:
            from .ruler import load_parser
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

    from . import checkpoint, io
    from .backends.base import backend_name
    from .conditions import Conditions, check_prompt
    from .io import write_png

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
        from .ruler import load_parser
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

    from . import io

    notes = []
    if align:
        from .align import align_face
        aligned = align_face(image, size=pipe.size, name=str(name))
        face = aligned.image
        if aligned.warning:
            notes.append(aligned.warning)
    else:
        face = image
    inv = pipe.invert(face, steps=steps, progress=True)
    tensors = {"wplus": inv.wplus.detach().float().contiguous().cpu(),
               **{f"noise.{i}": n.detach().float().contiguous().cpu() for i, n in enumerate(inv.noise)}}
    from .eval.editing import identity_scores

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
    from .eval.metrics import psnr
    return round(float(psnr(a, b)), 3)

@main.command("evaluate")
@click.option("--backend", required=True, help="Backend to score (copy: the copy-paste baseline).")
@click.option("--model", default=None, help="The backend's checkpoint folder or bundled name.")
@click.option("--given", default="prompt,mask", show_default=True,
              help="Conditions the backend gets: any of prompt,attributes,mask,sketch, or none.")
@click.option("--n", "n", default=500, show_default=True, type=int, help="Held-out faces to score.")
@click.option("--size", default=64, show_default=True, type=int, help="Image side in pixels.")
@click.option("--data", default="facesynth", show_default=True,
              help="Held-out faces: facesynth (exact ground truth), celebamask1k (real photos, real ruler), "
                   "or a unified folder of a CelebAMask-HQ copy (test ids 27000-29999).")
@click.option("--seeds-per-condition", default=4, show_default=True, type=int,
              help="Images per condition for diversity, on the first 32 conditions (1: no diversity).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder  [default: runs/eval_BACKEND]")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it already holds files.")
@click.option("--inception-weights", default=None, type=click.Path(dir_okay=False),
              help="InceptionV3 FID weights (.pth or .safetensors) for standard fid and kid_inception.")
@click.option("--parser", "parser_model", default=None,
              help="Parser checkpoint or bundled name  [default: parser-SIZE]")
@click.option("--classifier", "classifier_model", default=None,
              help="Classifier checkpoint or bundled name  [default: classifier-SIZE]")
@click.option("--bank-size", default=None, type=int,
              help="copy backend: training faces to pick from  [default: 1000]")
@click.option("--steps", default=None, type=int, help="diffusion: sampling steps  [default: 20]")
@click.option("--guidance", default=None, type=float, help="diffusion: one guidance scale  [default: 2.0]")
@click.option("--scale", "scales", multiple=True, metavar="MODALITY=W",
              help="diffusion: per-modality guidance instead of --guidance (repeatable).")
@click.option("--sampler", default=None, type=click.Choice(SAMPLER_NAMES),
              help="diffusion, collab: sampler, as in generate  "
                   "[default: euler_ancestral for diffusion, dpmpp_2m for collab]")
@_eta_option
@_s_tmin_option
@_window_option
@_prompt_attributes_option
@_layout_prior_option
@_precision_option
@click.option("--mixing", default=None, type=click.Choice(["learned", "average"]),
              help="collab: learned influence maps or the naive average (the paper's ablation)  [default: learned]")
@click.option("--batch-size", default=16, show_default=True, type=int, help="Images per generate call.")
@click.option("--edit", "edit_task", is_flag=True,
              help="Score editing instead (hairstyle edits of held-out faces: reconstruction, preservation "
                   "outside the edit, whether the edit happened); --steps sets the inversion steps [20].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate_cmd(backend, model, given, n, size, data, seeds_per_condition, out, overwrite, inception_weights,
                 parser_model, classifier_model, bank_size, steps, guidance, scales, sampler, eta, s_tmin, window,
                 prompt_attributes, layout_prior, precision, mixing, batch_size, edit_task, quiet) -> None:
    """Score a backend on held-out faces, next to the real faces' ceiling.

    FaceSynth faces by default (exact ground truth); --data celebamask1k scores on real
    photos with the real ruler (real parser, derived attributes, identity-space fd,
    memorisation). Writes OUT/metrics.json, OUT/report.html and OUT/grid.png;
    docs/evaluation.md describes both protocols and each metric.

    \b
    Example:
      faceweave evaluate --backend copy --n 64 --size 64 --out runs/eval_copy
      faceweave evaluate --backend copy --data celebamask1k --n 64 --out runs/eval_copy_real
      faceweave evaluate --backend diffusion --data celebamask1k --n 69 --seeds-per-condition 1
      faceweave evaluate --backend diffusion --model diffusion-64 --given prompt,mask --n 500 --steps 20 --guidance 2
      faceweave evaluate --backend collab --mixing average --given prompt,mask --n 500
    """
    from .backends import backend_name
    from .eval.evaluate import METRICS, run_evaluation

    backend = backend_name(backend)
    if bank_size is not None and backend != "copy":
        raise FaceweaveError("--bank-size applies to --backend copy only; drop it")
    options = {} if bank_size is None else {"bank_size": bank_size}
    data = data.strip()
    if data.lower() in ("facesynth", "celebamask1k"):
        data = data.lower()
    if mixing is not None:
        if backend != "collab":
            raise FaceweaveError(f"--mixing applies to --backend collab, not {backend}; drop it")
        options["mixing"] = mixing
    _diffusion_only(backend, prompt_attributes, "--prompt-attributes/--no-prompt-attributes")
    if prompt_attributes is not None:
        options["prompt_attributes"] = prompt_attributes
    _diffusion_only(backend, layout_prior, "--layout-prior/--no-layout-prior")
    if layout_prior is not None:
        options["layout_prior"] = layout_prior
    _diffusion_only(backend, precision, "--precision")
    if precision is not None:
        options["precision"] = precision
    _diffusion_only(backend, s_tmin, "--s-tmin")
    if s_tmin is not None:
        options["s_tmin"] = s_tmin
    if backend in ("diffusion", "collab"):
        if scales and guidance is not None:
            raise FaceweaveError("give either --guidance or --scale MODALITY=W, not both")
        if steps is not None:
            options["steps"] = steps
        if scales or guidance is not None:
            options["guidance"] = _parse_pairs(scales, "--scale", float) if scales else guidance
        _check_sampling_options(backend, sampler, eta, window)
        options.update({k: v for k, v in (("sampler", sampler), ("eta", eta), ("guidance_window", _parse_window(window)))
                        if v is not None})
    elif steps is not None or guidance is not None or scales or sampler or eta is not None or window is not None:
        raise FaceweaveError(f"--steps/--guidance/--scale/--sampler/--ddim-eta/--guidance-window apply to "
                             f"--backend diffusion or collab, not {backend}; drop them")
    if edit_task:
        if data != "facesynth":
            raise FaceweaveError("--edit scores edits of FaceSynth faces (exact ground truth); drop --data")
        if sampler or eta is not None or window is not None or s_tmin is not None:
            raise FaceweaveError("--edit inverts and regenerates with its own deterministic sampler; "
                                 "drop --sampler/--ddim-eta/--s-tmin/--guidance-window")
        from .backends import get_backend
        from .eval.editing import EDIT_STEPS, evaluate_editing, write_editing
        from .io import check_output_folder

        out = out or f"runs/eval_{backend}_edit"
        check_output_folder(out, overwrite)
        edit_steps = options.pop("steps", EDIT_STEPS)
        metrics, rows = evaluate_editing(get_backend(backend, model, **options), n=n, size=size, steps=edit_steps,
                                         parser=parser_model, classifier=classifier_model, progress=not quiet)
        write_editing(metrics, rows, out, overwrite)
        for key, value in metrics.items():
            if key != "protocol":
                click.echo(f"{key:>22}  {value if value is None else round(value, 4)}")
        click.echo(f"wrote {out}/metrics.json and grid.png")
        return
    out = out or f"runs/eval_{backend}"
    metrics = run_evaluation(
        out, overwrite, backend=backend, model=model, given=given, n=n, size=size,
        seeds_per_condition=seeds_per_condition, parser=parser_model, classifier=classifier_model,
        inception_weights=inception_weights, batch_size=batch_size, progress=not quiet,
        backend_options=options or None, data=data)
    for note in metrics["warnings"]:
        click.echo(f"note: {note}", err=True)
    for key in (*METRICS, "memorised"):
        run, ceiling = metrics[key], metrics["ceiling"][key]
        if run is not None or ceiling is not None:
            click.echo(f"{key:>15}  {run if run is None else round(run, 4)!s:>10}  "
                       f"(ceiling {ceiling if ceiling is None else round(ceiling, 4)})")
    click.echo(f"wrote {out}/metrics.json, report.html and grid.png")


@main.command("app")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the app to your whole network (no login!).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--model", default=None,
              help="Checkpoint folder or bundled name replacing its backend's default  [default: diffusion-64-real]")
@click.option("--max-concurrency", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Requests that run at once (they share one model and the CPU cores).")
@click.option("--max-queue", default=16, show_default=True, type=click.IntRange(1, 10_000),
              help="Requests that may wait; more are refused at once with 'queue is full'.")
def app_cmd(host, port, model, max_concurrency, max_queue) -> None:
    """Start the web app: paint a mask, type a prompt, get faces; edit photos.

    Needs the app extra (pip install 'faceweave[app]'). Serves on 127.0.0.1 only unless
    --host says otherwise; uploads are limited to 10 MB and 40 megapixels. docs/app.md
    explains every control. Stop it with Ctrl+C.

    \b
    Example:
      faceweave app                      # then open http://127.0.0.1:7860
      faceweave app --port 8080 --max-queue 32
    """
    from .app import launch

    launch(host=host, port=port, model=model, max_concurrency=max_concurrency, max_queue=max_queue, block=True)


if __name__ == "__main__":   # python -m faceweave.cli
    sys.exit(main())
