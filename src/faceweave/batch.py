"""Many faces from a conditions file: `faceweave generate --from FILE.jsonl --out DIR`.

One JSON object per line, every key optional (docs/batch.md):

    {"prompt": "a smiling woman with blond hair", "mask": "masks/woman.png", "seed": 7, "name": "woman"}
    {"attributes": {"Male": 1, "Eyeglasses": 1}}
    {"attributes": "Male=1,Eyeglasses=1", "sketch": "sketches/man.png"}

Line n (counted from 1, as editors count) becomes DIR/<name>.png and DIR/<name>.json (the
image's metadata, as `generate` writes it per seed, plus the line it came from); name
defaults to the line number zero-padded to 6 digits and seed to the line number. Mask and
sketch paths are relative to the file's folder. DIR/run.json records the settings and the
file (path, SHA-256); DIR/errors.jsonl the lines that could not be made.

Reproducible however it is run. Lines go to the model in fixed blocks of --batch-size
consecutive line numbers (block k holds lines kB+1 .. kB+B) and a block always goes whole
(its finished lines are computed again, not written again), so a line's image is the same
bytes from one process or several, from one run or an interrupted one and its resumption
(the same hardware and threads per process assumed: float sums may round differently on
other ones). Batching itself moves a pixel by at most one grey level from the image the line
would get alone (Backend.generate's contract).

Resuming: a line is finished when DIR/<name>.json was written (last, after the images) by
the same settings from the same line and the same mask and sketch contents; the others are
made. A folder made with other settings is refused unless --overwrite.

Several processes (`accelerate launch --multi_gpu --num_processes N -m faceweave.cli generate
--from ...`, or torchrun): process 0 reads and checks the file and the folder and writes
run.json; the blocks still to make are dealt out in turn (the j-th to process j mod N), each
process writes its own images, and process 0 gathers their reports and writes the summary.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import difflib
import hashlib
import inspect
import json
import os
import re
import secrets
from pathlib import Path

import click

from . import io
from .conditions import Conditions
from .errors import FaceweaveError
from .seeds import check_seed

KEYS = ("prompt", "attributes", "mask", "sketch", "seed", "name")
EXAMPLE = '{"prompt": "a smiling woman", "mask": "mask.png", "seed": 3}'
RUN_FORMAT = "faceweave-generate-from"
PRINTED_LINE_ERRORS = 20           # more bad lines than this are counted, and listed in errors.jsonl only
# a name is a plain file stem: no folders, no hidden files, no clash with the files a run writes itself
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_RESERVED = {"run", "errors"}
_TEMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")         # io's and _write_json's temporary files
# pipeline keywords that are not settings: the conditions, and how the work is cut and shown
_NOT_SETTINGS = {"self", "prompt", "attributes", "mask", "sketch", "seeds", "conditions", "batch_size", "callback",
                 "progress", "output_type", "return_influence"}
_SETTING_NAMES = {"num_inference_steps": "steps", "guidance_scale": "guidance"}
# how run.json's settings are set on the command line, for the message refusing a different one
_FLAGS = {"backend": "--backend", "model": "--model", "model_sha256": "the weights of --model",
          "size": "the model's image size", "precision": "--precision", "batch_size": "--batch-size",
          "palette": "--palette", "palette_sha256": "the contents of --palette", "steps": "--steps",
          "guidance": "--guidance/--scale", "sampler": "--sampler", "eta": "--ddim-eta", "s_tmin": "--s-tmin",
          "guidance_window": "--guidance-window", "prompt_attributes": "--prompt-attributes/--no-prompt-attributes",
          "layout_prior": "--layout-prior/--no-layout-prior", "mixing": "--mixing", "diversity": "--diversity",
          "from": "--from"}
# how long a process waits for the others at the start (process 0 reads every line) and the end
_WAIT = datetime.timedelta(hours=2)


# --- the lines --------------------------------------------------------------------------------

@dataclasses.dataclass
class Line:
    """One good line of the file: what it asks for, with file paths made absolute."""

    number: int                    # counted from 1
    name: str                      # output stem
    seed: int
    source: dict                   # the object as written (kept in the metadata; compared on resuming)
    prompt: str | None = None
    attributes: dict = dataclasses.field(default_factory=dict)
    mask: str | None = None
    sketch: str | None = None
    digest: str = ""               # Conditions.digest() of what the line read (file contents included)

    def conditions(self, palette=None) -> Conditions:
        """The line's Conditions, its mask and sketch files read (again) now."""
        return Conditions(prompt=self.prompt, attributes=self.attributes,
                          mask=None if self.mask is None else io.read_mask(self.mask, palette=palette),
                          sketch=None if self.sketch is None else io.read_sketch(self.sketch))


def _attributes(value) -> dict:
    """An object {"Smiling": 1} or text as --attr takes it, several at once: "Smiling=1,Male=0"."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        from .cli.base import _attribute_value, _parse_pairs  # the --attr vocabulary (1/0, yes/no, true/false)
        return _parse_pairs([p for p in re.split(r"[,\s]+", value) if p], "attribute", _attribute_value)
    raise FaceweaveError(f'attributes must be an object like {{"Smiling": 1}} or text like "Smiling=1,Male=0", '
                         f"got {json.dumps(value)}")


def _path(value, key: str, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FaceweaveError(f"{key} must be the path of an image file (text), got {json.dumps(value)}")
    return str((base / Path(value).expanduser()).absolute())


def parse_line(number: int, text: str, base: Path, accepts, palette=None) -> Line:
    """Line `number` of the file as a Line, its files read and checked, or a FaceweaveError
    naming the problem and the fix (without the line number: the caller adds it)."""
    try:
        item = json.loads(text)
    except ValueError as exc:
        raise FaceweaveError(f"not JSON ({exc.msg} at column {getattr(exc, 'colno', '?')}); write one JSON "
                             f"object per line, e.g. {EXAMPLE}") from None
    if not isinstance(item, dict):
        kind = {list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(type(item), "a number")
        raise FaceweaveError(f"{kind}, not a JSON object; write one object per line, e.g. {EXAMPLE}")
    for key in item:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FaceweaveError(f"unknown key {key!r}{hint}; a line takes {', '.join(KEYS)}")
    seed = check_seed(item["seed"]) if item.get("seed") is not None else number
    name = item.get("name")
    if name is None:
        name = f"{number:06d}"
    elif not isinstance(name, str) or not _NAME.fullmatch(name) or name.lower() in _RESERVED \
            or name.endswith("_layout"):
        raise FaceweaveError(f"name {json.dumps(name)} cannot name an output file; use letters, digits, '.', '_' "
                             "and '-' (up to 100, not starting with '.' or '-', not 'run', 'errors' or ending in "
                             "'_layout'), or leave it out for the line number")
    line = Line(number, name, seed, item, prompt=item.get("prompt"),
                attributes=_attributes(item["attributes"]) if item.get("attributes") is not None else {},
                mask=_path(item["mask"], "mask", base) if item.get("mask") is not None else None,
                sketch=_path(item["sketch"], "sketch", base) if item.get("sketch") is not None else None)
    cond = line.conditions(palette)
    line.prompt, line.attributes = cond.prompt, cond.attributes       # as checked: canonical names
    unread = [m for m in cond.given if m not in accepts]
    if unread:
        raise FaceweaveError(f"the model does not read {', '.join(unread)} (it reads {', '.join(accepts)}); drop "
                             f"{', '.join(repr(m) for m in unread)} from the line or use a --model that reads it")
    line.digest = cond.digest()
    return line


def read_file(path: Path) -> tuple[bytes, list[str | None]]:
    """The file's bytes and its lines as text (None for one that is not UTF-8)."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise FaceweaveError(f"--from {path} is a folder; give a .jsonl file with one JSON object per line") from None
    except OSError as exc:
        raise FaceweaveError(f"cannot read --from {path} ({exc.strerror or exc}); check the path") from None
    lines: list[str | None] = []
    for i, raw in enumerate(data.split(b"\n")):
        try:
            lines.append(raw.decode("utf-8-sig" if i == 0 else "utf-8"))
        except UnicodeDecodeError:
            lines.append(None)
    return data, lines


# --- settings and the run record --------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _model_sha256(folder) -> str | None:
    """A fingerprint of a checkpoint's weights (its *.safetensors files; config.json is left out:
    measurements recorded into it do not change the images)."""
    files = sorted(Path(folder).glob("*.safetensors")) if folder else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + _sha256(f).encode())
    return h.hexdigest()


def _settings(pipe, family: str, options: dict, precision: str, batch_size: int, palette, source: Path,
              data: bytes) -> dict:
    """Everything that decides the images, as run.json records it: the model, every sampling
    setting (the pipeline's defaults filled in) and the file."""
    bound = inspect.signature(pipe.__call__).bind_partial(**options)
    bound.apply_defaults()
    defaults = pipe.sampling                         # what a None takes: the checkpoint's own
    sampling = {_SETTING_NAMES.get(k, k): defaults.get(k) if v is None else v
                for k, v in bound.arguments.items() if k not in _NOT_SETTINGS}
    path = pipe.meta.get("path")
    settings = {"backend": family, "model": None if path is None else str(path),
                "model_sha256": _model_sha256(path), "size": int(pipe.size), "precision": precision,
                "batch_size": batch_size, "palette": None if palette is None else str(Path(palette).absolute()),
                "palette_sha256": None if palette is None else _sha256(Path(palette)),
                **sampling,
                "from": str(source), "from_sha256": hashlib.sha256(data).hexdigest()}
    return json.loads(json.dumps(settings, default=list))     # as it reads back from run.json


def _digest(settings: dict) -> str:
    """What a line's metadata records of the settings: all but the file, so a line left as it
    was keeps its image when the file changes around it (--overwrite)."""
    kept = {k: v for k, v in settings.items() if k not in ("from", "from_sha256")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def _difference(out: Path, old: dict, new: dict) -> str | None:
    """The one-line refusal of a folder made with other settings, or None when they agree."""
    differing = [k for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]
    if not differing:
        return None
    key = differing[0]
    more = f" (and {len(differing) - 1} more setting{'s' if len(differing) > 2 else ''})" if len(differing) > 1 \
        else ""
    fix = "add --overwrite to make its images again with these settings, or choose another --out"
    was, now = old.get(key), new.get(key)
    if key == "from_sha256":
        return (f"{out} was made from another version of {new['from']} (SHA-256 {str(was)[:12]}..., now "
                f"{now[:12]}...){more}; add --overwrite to make the lines that changed (the others are kept), "
                "or choose another --out")
    if key in ("model_sha256", "palette_sha256"):
        what = "--model" if key == "model_sha256" else "--palette"
        return (f"the {'weights' if key == 'model_sha256' else 'colours'} of {what} {new[what[2:]]} changed since "
                f"{out} was made (SHA-256 {str(was)[:12]}..., now {str(now)[:12]}...){more}; {fix}")
    flag = _FLAGS.get(key, key)
    if "/" in flag and isinstance(was, bool) and isinstance(now, bool):      # --layout-prior/--no-layout-prior
        on, off = flag.split("/")
        return f"{out} was made with {on if was else off}, not {on if now else off}{more}; {fix}"

    def shown(value) -> str:
        return "the default" if value is None else json.dumps(value)
    return f"{out} was made with {flag} {shown(was)}, not {shown(now)}{more}; {fix}"


def _write_json(path: Path, data) -> None:
    """Atomically: a temporary file in the same folder, then a rename."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8") as f:
            json.dump(data, f, indent=1, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise FaceweaveError(f"cannot write {path} ({exc.strerror or exc}); check the folder's free space and "
                             "permissions, then run the same command again (finished images are kept)") from None


def _read_record(out: Path) -> dict | None:
    """run.json of an earlier run in `out`, None if there is none; anything else there is an error."""
    path = out / "run.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT or not isinstance(record.get("settings"),
                                                                                           dict):
        raise FaceweaveError(f"{path} is not the record of a `generate --from` run; use --overwrite to write into "
                             f"{out} anyway, or choose another --out")
    return record


# --- the plan: what each process makes ---------------------------------------------------------

@dataclasses.dataclass
class Block:
    lines: list[Line]              # the good lines of one block of line numbers, all computed together
    write: set[int]                # the line numbers whose outputs are still missing


@dataclasses.dataclass
class Plan:
    settings: dict
    run: str                       # _digest(settings)
    blocks: list[Block]            # the blocks with something to write, in line order
    errors: list[dict]             # {"line", "error"} of the lines found bad while reading
    lines: int                     # non-blank lines in the file
    finished: int                  # good lines whose outputs were there already
    record: dict                   # run.json as written at the start


def _finished(out: Path, line: Line, run: str, overwrite: bool) -> bool:
    """Whether line's outputs are complete: its .json (written last) from these settings and this
    line, and the images it lists. Made from other mask or sketch contents: an error, unless
    --overwrite asks for it to be made again."""
    try:
        meta = json.loads((out / f"{line.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("run") != run or meta.get("line") != line.number \
            or meta.get("source") != line.source:
        return False
    if meta.get("input") != line.digest:
        if overwrite:
            return False
        changed = " or ".join(k for k in ("mask", "sketch") if getattr(line, k)) or "conditions"
        raise FaceweaveError(f"its {changed} changed since {out / (line.name + '.png')} was made; add --overwrite "
                             "to make it again from the new one")
    listed = [meta.get("image"), *([meta["layout_image"]] if meta.get("layout_image") else [])]
    return all(isinstance(f, str) and (out / f).is_file() for f in listed)


def _report_lines(errors: list[dict]) -> None:
    """One line on stderr per failed line, the first PRINTED_LINE_ERRORS of them."""
    for e in errors[:PRINTED_LINE_ERRORS]:
        click.echo(f"line {e['line']}: {e['error']}", err=True)


def prepare(source, out, pipe, family: str, options: dict, precision: str, batch_size: int, palette,
            overwrite: bool, processes: int) -> Plan:
    """Process 0's part before any image: check the folder against the settings, read and check
    every line, write run.json, find what is finished. Nothing is written when a FaceweaveError
    comes out, except that a folder made by an earlier run keeps what it holds."""
    source = Path(source).expanduser().absolute()
    data, texts = read_file(source)
    settings = _settings(pipe, family, options, precision, batch_size, palette, source, data)
    out = io.check_output_folder(out, overwrite=True, replace=False)       # writable; holds what?
    record = _read_record(out) if out.is_dir() and not overwrite else None
    if record is not None:
        refusal = _difference(out, record["settings"], settings)
        if refusal:
            raise FaceweaveError(refusal)
    elif out.is_dir() and not overwrite and any(out.iterdir()):
        raise FaceweaveError(f"output folder {out} already holds files and no run.json; use --overwrite to write into "
                             "it anyway, or choose another folder")
    if not any(t is None or t.strip() for t in texts):
        raise FaceweaveError(f"--from {source} holds no lines; write one JSON object per line, e.g. {EXAMPLE}")

    accepts = tuple(pipe.modalities)
    lines: list[Line] = []
    errors: list[dict] = []
    names: dict[str, int] = {}
    count = 0
    for number, text in enumerate(texts, 1):
        if text is not None and not text.strip():
            continue                                    # blank lines are allowed, and keep their numbers
        count += 1
        try:
            if text is None:
                raise FaceweaveError("not UTF-8 text; save the file as UTF-8")
            line = parse_line(number, text, source.parent, accepts, palette)
            taken = names.get(line.name.lower())
            if taken is not None:
                raise FaceweaveError(f"name {line.name!r} is taken by line {taken} (names are compared ignoring "
                                     "case); give this line another name")
            names[line.name.lower()] = number
            lines.append(line)
        except FaceweaveError as exc:
            errors.append({"line": number, "error": str(exc)})
    if not lines:
        first = errors[0]
        raise FaceweaveError(f"no line of {source} can be made ({count} tried); line {first['line']}: "
                             f"{first['error']}")

    run = _digest(settings)
    out.mkdir(parents=True, exist_ok=True)
    for item in out.iterdir():                          # an interrupted write's leftovers
        if _TEMP.fullmatch(item.name) and item.is_file():
            with contextlib.suppress(OSError):
                item.unlink()
    done, good = set(), []
    for line in lines:
        try:
            if _finished(out, line, run, overwrite):
                done.add(line.number)
            good.append(line)
        except FaceweaveError as exc:
            errors.append({"line": line.number, "error": str(exc)})
    blocks: dict[int, list[Line]] = {}
    for line in good:
        blocks.setdefault((line.number - 1) // batch_size, []).append(line)
    todo = [Block(group, {ln.number for ln in group if ln.number not in done}) for _, group in sorted(blocks.items())]
    todo = [b for b in todo if b.write]
    record = {"format": RUN_FORMAT, "format_version": 1, "settings": settings, "faceweave": _version(),
              "processes": processes, "started": _now(), "finished": None, "summary": None}
    _write_json(out / "run.json", record)
    errors.sort(key=lambda e: e["line"])
    _report_lines(errors)
    return Plan(settings, run, todo, errors, count, len(done), record)


def _version() -> str:
    from . import __version__
    return __version__


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --- the work ----------------------------------------------------------------------------------

def _block_options(pipe, options: dict, conds: list[Conditions]) -> dict:
    """The options of one block's call: per-modality guidance narrowed to what its lines give
    (the pipeline's guidance_for; each image is guided along what its own line gives)."""
    scale = options.get("guidance_scale")
    if not isinstance(scale, dict):
        return options
    return {**options, "guidance_scale": pipe.guidance_for(scale, conds, options.get("layout_prior"))}


def _write_line(out: Path, line: Line, image, layout, metadata: dict, cond: Conditions, run: str) -> None:
    """The line's images, then its .json: the .json says the line is finished, so it comes last."""
    from .conditions import colorize_mask

    files = {"image": f"{line.name}.png"}
    if layout is not None:                  # colour-coded, so it can be edited and given back as "mask"
        files["layout_image"] = f"{line.name}_layout.png"
        io.write_png(out / files["layout_image"], colorize_mask(layout))
    io.write_png(out / files["image"], image)
    _write_json(out / f"{line.name}.json", {"line": line.number, "name": line.name, **files,
                                             "source": line.source, "run": run, "input": cond.digest(),
                                             **metadata})


def work(pipe, family: str, options: dict, blocks: list[Block], out, palette, run: str, show: bool) -> dict:
    """Make this process's blocks; a report of what it wrote, the lines that failed now (a
    mask file gone since it was read) and the notes of its images."""
    from tqdm import tqdm

    out = Path(out).expanduser().absolute()
    report = {"written": 0, "errors": [], "notes": {}}
    bar = tqdm(total=sum(len(b.write) for b in blocks), disable=not show, desc="generate", unit="img",
               dynamic_ncols=True)
    try:
        for block in blocks:
            lines, conds = [], []
            for line in block.lines:
                try:
                    conds.append(line.conditions(palette))
                    lines.append(line)
                except FaceweaveError as exc:
                    report["errors"].append({"line": line.number, "error": str(exc)})
                    click.echo(f"line {line.number}: {exc}", err=True)
            if not any(line.number in block.write for line in lines):
                bar.update(len(block.write))
                continue
            result = pipe(conditions=conds, seeds=[line.seed for line in lines], batch_size=len(conds),
                          progress=False, **_block_options(pipe, options, conds))
            layouts = getattr(result, "layouts", None) or [None] * len(lines)
            for line, cond, image, layout, meta in zip(lines, conds, result.images, layouts, result.metadata):
                if line.number not in block.write:
                    continue
                _write_line(out, line, image, layout, meta, cond, run)
                report["written"] += 1
                for note in meta.get("notes", []):
                    report["notes"][note] = report["notes"].get(note, 0) + 1
            bar.update(len(block.write))
    finally:
        bar.close()
    return report


# --- processes ---------------------------------------------------------------------------------

def _launched_processes() -> int:
    """How many processes the launcher started (accelerate launch and torchrun set WORLD_SIZE;
    mpirun, which accelerate uses for several CPU machines, its own variables)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        with contextlib.suppress(ValueError):
            if int(os.environ.get(name, "")) > 0:
                return int(os.environ[name])
    return 1


class Processes:
    """This process's place among the processes of a launch, through accelerate's PartialState;
    alone (index 0 of 1, accelerate not even imported) when nothing launched several."""

    def __init__(self):
        self.index, self.count, self.device, self._state = 0, 1, None, None
        if _launched_processes() > 1:
            import torch
            from accelerate import PartialState

            self._state = PartialState(cpu=not torch.cuda.is_available(), timeout=_WAIT)
            self.index, self.count = self._state.process_index, self._state.num_processes
            self.device = str(self._state.device)

    @property
    def main(self) -> bool:
        return self.index == 0

    def broadcast(self, value):
        """Process 0's value, on every process."""
        if self.count == 1:
            return value
        from accelerate.utils import broadcast_object_list
        return broadcast_object_list([value], from_process=0)[0]

    def gather(self, value) -> list:
        """Every process's value, in process order, on every process."""
        if self.count == 1:
            return [value]
        from accelerate.utils import gather_object
        return gather_object([value])


# --- the command -------------------------------------------------------------------------------

def generate_from(source, out, *, family: str, model: str, options: dict, precision: str = "fp32",
                  batch_size: int = 16, palette=None, overwrite: bool = False, quiet: bool = False) -> int:
    """`faceweave generate --from`: returns the exit status (0 all made, 1 some lines failed and the
    rest was made); a mistake that stops the whole run is a FaceweaveError (exit status 2)."""
    import faceweave

    procs = Processes()
    try:
        if palette is not None:
            io.load_palette(palette)                      # a bad palette is one error, not one per line
        pipe = faceweave.load(model, device=procs.device, precision=precision)
        options = _check_options(pipe, options)
        plan = None
        if procs.main:
            try:
                plan = prepare(source, out, pipe, family, options, precision, batch_size, palette, overwrite,
                               procs.count)
            except FaceweaveError as exc:
                plan = exc                                  # the others learn of it, and stop too
        plan = procs.broadcast(plan)
        if isinstance(plan, FaceweaveError):
            raise plan
    except FaceweaveError:
        if procs.main:
            raise
        raise click.exceptions.Exit(2) from None            # process 0 says why, once

    mine = plan.blocks[procs.index::procs.count]
    if procs.main:
        making = sum(len(b.write) for b in plan.blocks)
        click.echo(f"{plan.lines} line{'s' if plan.lines != 1 else ''}: {plan.finished} finished before, "
                   f"{len(plan.errors)} failed, {making} to make (batches of {batch_size}"
                   + (f", {procs.count} processes" if procs.count > 1 else "") + ")", err=True)
    report = work(pipe, family, options, mine, out, palette, plan.run, show=procs.main and not quiet)
    reports = procs.gather(report)
    status, failure = 0, None
    if procs.main:
        try:
            status = _finish(Path(out).expanduser().absolute(), plan, reports)
        except FaceweaveError as exc:
            status, failure = 2, exc
    # every process ends with process 0's status, and only once process 0 has written the summary:
    # a launcher stops the other processes as soon as one ends with a non-zero status
    status = procs.broadcast(status)
    if failure is not None:
        raise failure
    if status == 2:
        raise click.exceptions.Exit(2)
    return status


def _check_options(pipe, options: dict) -> dict:
    """Per-modality guidance is checked once here, for the whole file, before any image: names the
    model reads, scales in range (the pipeline's check_guidance_scale). Returns the options with
    the scales' names as the model's."""
    scale = options.get("guidance_scale")
    if not isinstance(scale, dict):
        return options
    return {**options, "guidance_scale": pipe.check_guidance_scale(scale)}


def _finish(out: Path, plan: Plan, reports: list[dict]) -> int:
    """Process 0, after every process is done: errors.jsonl, run.json's summary, the last words."""
    errors = sorted(plan.errors + [e for r in reports for e in r["errors"]], key=lambda e: e["line"])
    written = sum(r["written"] for r in reports)
    notes: dict[str, int] = {}
    for r in reports:
        for note, n in r["notes"].items():
            notes[note] = notes.get(note, 0) + n
    path = out / "errors.jsonl"
    if errors:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            temp.write_text("".join(json.dumps(e) + "\n" for e in errors), encoding="utf-8")
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise FaceweaveError(f"cannot write {path} ({exc.strerror or exc}); the images are written") from None
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()                                   # an earlier run's, now answered
    record = {**plan.record, "finished": _now(), "summary": {
        "lines": plan.lines, "written": written, "finished_before": plan.finished, "failed": len(errors),
        "written_per_process": [r["written"] for r in reports]}}
    _write_json(out / "run.json", record)
    for note, n in sorted(notes.items()):
        click.echo(f"note: {note} ({n} image{'s' if n != 1 else ''})", err=True)
    if len(plan.errors) > PRINTED_LINE_ERRORS:
        click.echo(f"... and {len(plan.errors) - PRINTED_LINE_ERRORS} more failed lines: {path} lists them all",
                   err=True)
    click.echo(f"wrote {written} image{'s' if written != 1 else ''} to {out}"
               + (f" ({plan.finished} finished before)" if plan.finished else ""))
    if errors:
        click.echo(f"error: {len(errors)} of {plan.lines} lines failed: see {path}; fix them and run the same "
                   "command again (with --overwrite if you edit the file): finished images are kept", err=True)
        return 1
    return 0
