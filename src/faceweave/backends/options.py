"""Options declared once, as data: what each backend's commands take, turned into CLI flags
and checked in one place.

A backend folder's `options.py` lists, per command ("generate", "edit", "invert",
"evaluate"), the `Option`s its pipeline reads. The CLI builds its flags from the union over
every registered backend (`click_options`), and after parsing refuses, in one generic place
(`chosen`), a flag the chosen backend does not declare:

    error: --diversity applies to --backend gan, not diffusion; drop it

Options shared by several backends (steps, guidance, sampler, ...) are the module-level
instances below, so their flag, help and range are written once. This module imports no
torch: `faceweave --help` reads it.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Sequence

from ..errors import FaceweaveError

COMMANDS = ("generate", "edit", "invert", "evaluate")


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting of a backend's command.

    name     the keyword the backend's call takes (e.g. "num_inference_steps")
    flag     the CLI flag ("--steps"); a switch pair is "--on/--off"
    type     "int", "float", "text", "choice", "switch" (a --on/--off pair: True, False or
             None), "flag" (present or not), "pairs" (repeatable NAME=NUMBER)
    default  what the backend uses when the flag is not given (None: the model's own,
             from its checkpoint's "sampling" block; see the help)
    help     one sentence for --help
    range    (low, high) for numbers, inclusive
    choices  the allowed words of a "choice"
    when_set the value a "flag" passes when given (e.g. --no-align passes align=False)
    parse    text -> value, for flags with a syntax of their own (e.g. START,END)
    stage    "call" (an argument of the call) or "load" (of faceweave.load, e.g. precision)
    metavar  the placeholder --help shows
    """

    name: str
    flag: str
    type: str
    default: Any = None
    help: str = ""
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    when_set: Any = True
    parse: Callable[[str], Any] | None = None
    stage: str = "call"
    metavar: str | None = None

    @property
    def dest(self) -> str:
        """The click parameter name: the first flag's words ("--guidance-window" -> guidance_window)."""
        return self.flag.split("/")[0].lstrip("-").replace("-", "_")

    def given(self, value) -> bool:
        if self.type == "switch":                  # --x/--no-x: False is a choice, None is silence
            return value is not None
        return value is not None and value is not False and value != ()

    def value(self, raw):
        """The call's value of a given flag, range-checked (one-line errors)."""
        if self.type == "flag":
            return self.when_set
        if self.type == "pairs":
            return parse_pairs(raw, self.flag, float)
        if self.parse is not None:
            return self.parse(raw)
        if self.range is not None and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            low, high = self.range
            if not low <= raw <= high:
                raise FaceweaveError(f"{self.flag} {raw} is out of range: give a value from {low:g} to {high:g}")
        return raw


def parse_pairs(values, what: str, cast) -> dict:
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


def parse_window(text: str) -> tuple[float, float]:
    try:
        start, end = (float(p) for p in text.split(","))
    except ValueError:
        raise FaceweaveError(f"--guidance-window {text!r} must be two fractions START,END, e.g. 0.2,0.8") from None
    return start, end


def parse_classes(text: str) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] or None


def read_mask_file(path: str):
    """A mask flag's file -> class ids (io.read_mask: known palettes or class ids)."""
    from .. import io
    return io.read_mask(path)


# ---------------------------------------------------------------- options several backends share

SAMPLER_NAMES = ("euler", "heun", "dpmpp_2m", "ddim", "euler_ancestral")

STEPS = Option("num_inference_steps", "--steps", "int", None, "Sampling steps  [default: the model's own, 20]")
GUIDANCE = Option("guidance_scale", "--guidance", "float", None,
                  "Classifier-free guidance scale for all given conditions together (1 = off)  "
                  "[default: the model's own, 2.0]")
SCALE = Option("guidance_scale", "--scale", "pairs", None,
               "Per-modality guidance instead of --guidance, e.g. --scale prompt=3 --scale mask=1.5 (repeatable).",
               metavar="MODALITY=W")
SAMPLER = Option("sampler", "--sampler", "choice", None,
                 "Sampler: the ODE solvers euler, heun, dpmpp_2m, ddim; euler_ancestral adds fresh noise each step "
                 "(= ddim with --ddim-eta 1)  [default: the model's own: euler_ancestral for diffusion, dpmpp_2m "
                 "for collab]", choices=SAMPLER_NAMES)
DDIM_ETA = Option("eta", "--ddim-eta", "float", None,
                  "With --sampler ddim: 0 deterministic, 1 ancestral (fresh noise each step, from each image's "
                  "seed)  [default: 0]")
S_TMIN = Option("s_tmin", "--s-tmin", "float", None,
                "euler_ancestral (or ddim with --ddim-eta > 0): fresh noise only at the steps from a noise level >= "
                "SIGMA, deterministic below (Karras et al.'s S_tmin; measured in docs/diffusion.md)  [default: 0]",
                metavar="SIGMA")
WINDOW = Option("guidance_window", "--guidance-window", "text", None,
                "Guide only from START to END, fractions of the steps (e.g. 0.2,0.8)  [default: all steps]",
                parse=parse_window, metavar="START,END")
PROMPT_ATTRIBUTES = Option(
    "prompt_attributes", "--prompt-attributes/--no-prompt-attributes", "switch", True,
    "Also condition on the attributes the prompt names (\"blond\" -> Blond_Hair=1; --attr wins); "
    "--no-prompt-attributes leaves the prompt to the text encoder  [default: on]")
LAYOUT_PRIOR = Option(
    "layout_prior", "--layout-prior/--no-layout-prior", "switch", None,
    "Given a prompt or attributes but no mask or sketch, follow a FaceSynth label map drawn (from each seed) to "
    "have the attributes asked for; --no-layout-prior lets the model invent the layout  [default: the model's "
    "own: on unless the checkpoint says otherwise]")
# The same sampling settings for `faceweave evaluate`, under the names a sampling Backend's
# constructor takes (get_backend(name, steps=..., guidance=...)); steps is each backend's own.
EVALUATE_SAMPLING = (
    Option("guidance", "--guidance", "float", None, "One guidance scale  [default: 2.0]"),
    Option("guidance", "--scale", "pairs", None, SCALE.help, metavar=SCALE.metavar),
    Option("sampler", "--sampler", "choice", None, SAMPLER.help, choices=SAMPLER.choices),
    Option("eta", "--ddim-eta", "float", None, DDIM_ETA.help),
)
PRECISION = Option(
    "precision", "--precision", "choice", "fp32",
    "bf16 runs the denoiser under bfloat16 autocast: 1.3-2.3x less CPU time on a CPU with AVX512-BF16 or AMX "
    "(measured in docs/diffusion.md), half a grey level from fp32 on average  [default: fp32]",
    choices=("fp32", "bf16"), stage="load")
MIXING = Option("mixing", "--mixing", "choice", "learned",
                "The dynamic diffuser's influence maps or the naive average of the collaborators (the paper's "
                "ablation)  [default: learned]", choices=("learned", "average"))


# ------------------------------------------------------------------------------------ lookups

def backend_options(name: str, command: str) -> tuple[Option, ...]:
    """The options backend `name` declares for `command` (none when it lacks the command)."""
    from .base import BACKENDS

    spec = BACKENDS[name]
    if command not in spec.capabilities or spec.options is None:
        return ()
    return tuple(getattr(importlib.import_module(spec.options), command.upper(), ()))


def capable(command: str) -> list[str]:
    """The registered backends that can run `command` (their spec's capabilities)."""
    from .base import BACKENDS

    return [name for name, spec in BACKENDS.items() if command in spec.capabilities]


def _declared(command: str) -> dict[str, list[tuple[str, Option]]]:
    """flag -> [(backend, its Option)] over every backend able to run `command`."""
    flags: dict[str, list[tuple[str, Option]]] = {}
    for name in capable(command):
        for option in backend_options(name, command):
            flags.setdefault(option.flag, []).append((name, option))
    return flags


def click_options(command: str) -> Callable:
    """A decorator adding one click option per flag any backend declares for `command`,
    help saying which backends read it and, where they differ, each one's default."""
    import click

    flags = _declared(command)
    everyone = capable(command)

    def decorate(fn):
        for flag, owners in reversed(list(flags.items())):
            option = owners[0][1]
            names = [n for n, _ in owners]
            text = option.help
            defaults = {n: o.default for n, o in owners}
            if len(set(map(repr, defaults.values()))) > 1:
                text += "  [default: " + ", ".join(f"{n} {d}" for n, d in defaults.items()) + "]"
            if names != everyone:
                text = f"{' and '.join(names)}: {text[:1].lower()}{text[1:]}"
            kwargs: dict[str, Any] = {"default": None, "help": text}
            if option.metavar:
                kwargs["metavar"] = option.metavar
            if option.type == "int":
                kwargs["type"] = int
            elif option.type == "float":
                kwargs["type"] = float
            elif option.type == "choice":
                kwargs["type"] = click.Choice(option.choices)
            elif option.type == "flag":
                kwargs.update(is_flag=True, default=False)
            elif option.type == "pairs":
                kwargs.update(multiple=True, default=())
            fn = click.option(option.flag, option.dest, **kwargs)(fn)
        return fn
    return decorate


def join_names(names: Sequence[str]) -> str:
    """"a", "a or b", "a, b or c"."""
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def chosen(command: str, backend: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The given flags of `command` (click's `values` by dest) -> (call options, load options)
    of `backend`, by its declared options' names. A flag the backend does not declare, or two
    that set the same option (--guidance and --scale), is a one-line error naming the fix."""
    flags = _declared(command)
    mine = {o.flag: o for o in backend_options(backend, command)}
    given = [(flag, owners[0][1]) for flag, owners in flags.items() if owners[0][1].given(values.get(owners[0][1].dest))]
    for flag, option in given:
        if flag not in mine:
            verb = "apply" if "/" in flag else "applies"
            owners = [n for n, _ in flags[flag]]
            raise FaceweaveError(f"{flag} {verb} to --backend {join_names(owners)}, not {backend}; drop it")
    call: dict[str, Any] = {}
    load: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for flag, _ in given:
        option = mine[flag]
        if option.name in seen:
            raise FaceweaveError(f"give either {seen[option.name]} or {flag}, not both")
        seen[option.name] = flag
        (load if option.stage == "load" else call)[option.name] = option.value(values[option.dest])
    return call, load
