"""The `faceweave` command. Every subcommand has --help with a runnable example.

A user mistake (a bad file, flag or folder) is a FaceweaveError: one line on stderr,
exit status 2, nothing written half-way. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

import click

from .errors import FaceweaveError


class _Group(click.Group):
    """A click group that turns FaceweaveError into `error: ...` and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FaceweaveError as exc:
            click.echo(f"error: {exc}", err=True)
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
@click.option("--preset", required=True, help="Named recipe, e.g. s64 (see `faceweave.train.TASKS[FAMILY].presets`).")
@click.option("--data", default=None, help="facesynth:SIZE[:n=N] or a unified folder (optional with --resume).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: run.json, metrics.jsonl, last/, best/.")
@click.option("--max-steps", type=int, default=None, help="Total optimizer steps (overrides the preset).")
@click.option("--resume", is_flag=True, help="Continue from OUT/last (weights, optimizer, step).")
@click.option("--batch-size", type=int, default=None, help="Images per step (overrides the preset).")
@click.option("--lr", type=float, default=None, help="Peak learning rate (overrides the preset).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(family, preset, data, out, max_steps, resume, batch_size, lr, quiet) -> None:
    """Train a model family (parser, classifier) with a named preset.

    \b
    Example:
      faceweave train parser --preset tiny --data facesynth:32 --out runs/parser-tiny --max-steps 20
      faceweave train parser --preset s64 --data facesynth:64:n=1000000 --out runs/parser64
      faceweave train parser --preset s64 --out runs/parser64 --resume
    """
    from .train import train

    if data is None and not resume:
        raise FaceweaveError("--data is required to start a run (e.g. --data facesynth:64); "
                             "only --resume may leave it out")
    result = train(family, preset, data, out, resume=resume, progress=not quiet,
                   overrides={"max_steps": max_steps, "batch_size": batch_size, "lr": lr})
    click.echo(f"finished at step {result['step']}: " +
               ", ".join(f"{k}={v:.4f}" for k, v in result.items() if k != "step" and isinstance(v, float)))


@main.command("parse")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output mask PNG (19-class index PNG).")
@click.option("--model", default=None, help="Checkpoint folder or bundled name (default: parser-64).")
@click.option("--color", is_flag=True, help="Write a colour-coded mask (CelebAMask-HQ palette) instead of class ids.")
def parse_cmd(image, out, model, color) -> None:
    """Label every pixel of a face photo with one of the 19 CelebAMask-HQ classes.

    The mask has the image's size. Without --color it is an index PNG (pixel value = class
    id), the format every --mask option reads.

    \b
    Example:
      faceweave parse face.png --out face_mask.png
      faceweave parse face.png --out face_mask_colour.png --color --model parser-128
    """
    from . import io
    from .ruler import load_parser

    photo = io.read_image(image)
    mask = load_parser(model).predict(photo)
    (io.write_color_mask if color else io.write_mask)(out, mask)
    click.echo(f"wrote {out} ({mask.shape[1]}x{mask.shape[0]})")


@main.command("describe")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help='One JSON object per line: {"image", "attributes", "caption"}.')
@click.option("--model", default=None, help="Checkpoint folder or bundled name (default: classifier-64).")
def describe_cmd(images, as_json, model) -> None:
    """Attribute probabilities and a caption for each face image.

    \b
    Example:
      faceweave describe face.png
      faceweave describe photos/*.jpg --json > labels.jsonl
    """
    import json

    from . import io
    from .ruler import load_classifier
    from .text import describe_attributes

    classifier = load_classifier(model)
    for path in images:
        attributes = classifier.predict(io.read_image(path))
        caption = describe_attributes(attributes)
        if as_json:
            click.echo(json.dumps({"image": path, "attributes": attributes, "caption": caption}))
        else:
            present = ", ".join(f"{k} {v:.2f}" for k, v in sorted(attributes.items(), key=lambda kv: -kv[1])
                                if v >= 0.5)
            click.echo(f"{path}: {caption}\n  present: {present or 'none'}")



@main.command("evaluate")
@click.option("--backend", required=True, help="Backend to score (copy: the copy-paste baseline).")
@click.option("--model", default=None, help="The backend's checkpoint folder or bundled name.")
@click.option("--given", default="prompt,mask", show_default=True,
              help="Conditions the backend gets: any of prompt,attributes,mask,sketch, or none.")
@click.option("--n", "n", default=500, show_default=True, type=int, help="Held-out faces to score.")
@click.option("--size", default=64, show_default=True, type=int, help="Image side in pixels.")
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
@click.option("--batch-size", default=16, show_default=True, type=int, help="Images per generate call.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate_cmd(backend, model, given, n, size, seeds_per_condition, out, overwrite, inception_weights,
                 parser_model, classifier_model, bank_size, batch_size, quiet) -> None:
    """Score a backend on held-out FaceSynth faces, next to the real faces' ceiling.

    Writes OUT/metrics.json, OUT/report.html and OUT/grid.png; docs/evaluation.md
    describes the protocol and each metric.

    \b
    Example:
      faceweave evaluate --backend copy --n 64 --size 64 --out runs/eval_copy
    """
    from .backends import backend_name
    from .eval.evaluate import METRICS, run_evaluation

    backend = backend_name(backend)
    if bank_size is not None and backend != "copy":
        raise FaceweaveError("--bank-size applies to --backend copy only; drop it")
    out = out or f"runs/eval_{backend}"
    metrics = run_evaluation(
        out, overwrite, backend=backend, model=model, given=given, n=n, size=size,
        seeds_per_condition=seeds_per_condition, parser=parser_model, classifier=classifier_model,
        inception_weights=inception_weights, batch_size=batch_size, progress=not quiet,
        backend_options=None if bank_size is None else {"bank_size": bank_size})
    for note in metrics["warnings"]:
        click.echo(f"note: {note}", err=True)
    for key in METRICS:
        run, ceiling = metrics[key], metrics["ceiling"][key]
        if run is not None or ceiling is not None:
            click.echo(f"{key:>15}  {run if run is None else round(run, 4)!s:>10}  "
                       f"(ceiling {ceiling if ceiling is None else round(ceiling, 4)})")
    click.echo(f"wrote {out}/metrics.json, report.html and grid.png")

if __name__ == "__main__":   # python -m faceweave.cli
    sys.exit(main())
