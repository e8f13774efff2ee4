"""The `faceweave` command: one module per command group, all on the `main` group.

Every subcommand has --help with a runnable example. A user mistake (a bad file, flag or
folder) is a FaceweaveError: one line on stderr, exit status 2, nothing written half-way.
Anything else is a bug and keeps its traceback.
"""
from . import app, data, edit, evaluate, generate, multiview, photos, stylize, train  # noqa: F401  (registers the commands)
from ..backends.options import SAMPLER_NAMES
from .base import main

__all__ = ["SAMPLER_NAMES", "main"]
