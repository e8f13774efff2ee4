"""`faceweave evaluate`: the ruler's protocol (FaceSynth or real faces) on a backend."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from ..backends.options import click_options
from .base import _check_sampling_options, main


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
@click_options("evaluate")
@click.option("--batch-size", default=16, show_default=True, type=int, help="Images per generate call.")
@click.option("--edit", "edit_task", is_flag=True,
              help="Score editing instead (hairstyle edits of held-out faces: reconstruction, preservation "
                   "outside the edit, whether the edit happened); --steps sets the inversion steps [20].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def evaluate_cmd(backend, model, given, n, size, data, seeds_per_condition, out, overwrite, inception_weights,
                 parser_model, classifier_model, batch_size, edit_task, quiet, **flags) -> None:
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
    from ..backends import backend_name
    from ..backends.options import chosen
    from ..eval.evaluate import METRICS, run_evaluation

    backend = backend_name(backend)
    call, load = chosen("evaluate", backend, flags)
    _check_sampling_options(call)
    options = {**call, **load}
    data = data.strip()
    if data.lower() in ("facesynth", "celebamask1k"):
        data = data.lower()
    if edit_task:
        if data != "facesynth":
            raise FaceweaveError("--edit scores edits of FaceSynth faces (exact ground truth); drop --data")
        if {"sampler", "eta", "guidance_window", "s_tmin"} & set(options):
            raise FaceweaveError("--edit inverts and regenerates with its own deterministic sampler; "
                                 "drop --sampler/--ddim-eta/--s-tmin/--guidance-window")
        from ..backends import get_backend
        from ..eval.editing import EDIT_STEPS, evaluate_editing, write_editing
        from ..io import check_output_folder

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
