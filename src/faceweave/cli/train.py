"""`faceweave train FAMILY`: every model family through one training loop (train/registry.py names them)."""
from __future__ import annotations

import sys

import click

from ..errors import FaceweaveError
from .base import _json_or_text, _parse_pairs, main


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
              help="collab only: the frozen uni-modal models, e.g. text=runs/uni-text/best,mask=runs/uni-mask/best, "
                   "or views of one model: text=diffusion-64-real@text+attributes,mask=diffusion-64-real@mask.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(family, preset, data, out, max_steps, resume, batch_size, lr, settings, modalities, collaborators,
              quiet) -> None:
    """Train a model family (parser, classifier, diffusion, vae, collab, stylegan2, gan, ddgi, ...)
    with a named preset.

    \b
    Example:
      faceweave train diffusion --preset s64 --data facesynth:64 --out runs/diffusion64
      faceweave train vae --preset f4 --data facesynth:128 --out runs/vae128
      faceweave train diffusion --preset s128 --data facesynth:128 --set vae=runs/vae128/best --out runs/d128
      faceweave train diffusion --preset uni64 --modalities mask --data facesynth:64 --out runs/uni-mask
      faceweave train diffusion --preset s64 --data facesynth:64 --out runs/spatial --set model.mask_mode=spatial
      faceweave train collab --preset s64 --data facesynth:64 --out runs/collab64 \\
          --collaborators text=runs/uni-text/best,mask=runs/uni-mask/best
      faceweave train collab --preset s64 --data celebamask1k:64 --out runs/collab-64-real \
          --collaborators text=diffusion-64-real@text+attributes,mask=diffusion-64-real@mask
      faceweave train parser --preset tiny --data facesynth:32 --out runs/parser-tiny --max-steps 20
      faceweave train parser --preset s64 --data facesynth:64:n=1000000 --out runs/parser64
      faceweave train parser --out runs/parser64 --resume
      faceweave train stylegan2 --preset s --data celebamask1k:64:photos --out runs/sg2 --set augment=ada
      faceweave train multiview --preset s --data facesynth --out runs/multiview-64-facesynth
      faceweave train ddgi --preset s --data celebamask1k:64 --out runs/ddgi64 \
          --set diffusion=diffusion-64-real --set generator=runs/sg2/best

    Ctrl-C (or SIGTERM) saves the checkpoint after the step in progress and stops;
    --resume continues from there.
    """
    from ..train import train

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
        from ..backends.diffusion.train import check_modalities
        extra["modalities"] = check_modalities(modalities)
    if collaborators is not None:
        if family != "collab":
            raise FaceweaveError(f"--collaborators is for faceweave train collab, not {family}")
        from ..backends.collab.train import parse_collaborators
        extra["collaborators"] = parse_collaborators(collaborators)
    if family == "multiview" and data is not None and not resume and "pose" not in extra:
        # FaceSynth knows each head's pose exactly; photos get theirs from their landmarks
        extra["pose"] = "facesynth" if str(data).split(":")[0].strip().lower() == "facesynth" else "landmarks"
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
