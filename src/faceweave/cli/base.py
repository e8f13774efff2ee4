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
    from ..backends.options import parse_pairs
    return parse_pairs(values, what, cast)


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


def _check_sampling_options(options: dict) -> None:
    """Rules between sampling options (each option alone is checked by backends/options.py)."""
    if options.get("eta") is not None and options.get("sampler") != "ddim":
        raise FaceweaveError("--ddim-eta applies to --sampler ddim; add --sampler ddim or drop --ddim-eta")
