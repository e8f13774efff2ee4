"""`faceweave evaluate`: the ruler's protocol (FaceSynth or real faces) on a backend."""
from __future__ import annotations

import click

from ..errors import FaceweaveError
from .base import (
    SAMPLER_NAMES, _check_sampling_options, _diffusion_only, _eta_option, _layout_prior_option,
    _parse_pairs, _parse_window, _precision_option, _prompt_attributes_option, _s_tmin_option,
    _window_option, main)


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
    from ..backends import backend_name
    from ..eval.evaluate import METRICS, run_evaluation

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
