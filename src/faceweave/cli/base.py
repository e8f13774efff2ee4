"""The `faceweave` command group and what its commands share.

Every subcommand has --help with a runnable example.

A user mistake (a bad file, flag or folder) is a FaceweaveError: one line on stderr,
exit status 2, nothing written half-way. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import click

from ..errors import FaceweaveError


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
    from .. import io
    from ..conditions import Conditions

    return Conditions(prompt=prompt, attributes=_parse_pairs(attrs, "--attr", _attribute_value),
                      mask=None if mask is None else io.read_mask(mask, palette=palette),
                      sketch=None if sketch is None else io.read_sketch(sketch))


def _check_out(out, overwrite: bool) -> None:
    """Refuse an --out folder that cannot be written before any model runs (io.check_output_folder);
    here --overwrite replaces the files of the same names and keeps the others."""
    from .. import io

    io.check_output_folder(out, overwrite, replace=False)


def _writing(out, overwrite: bool):
    """`with _writing(out, overwrite) as folder:` every file lands in --out at once or none
    does (io.output_folder)."""
    from .. import io

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

    from ..conditions import colorize_mask
    from ..io import resize_sketch, resize_mask

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


