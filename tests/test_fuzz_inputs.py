"""Bad input, command by command: every case must be refused with exit status 2, exactly one
`error:` line on stderr, nothing on stdout and nothing written where the output was to go.

The corpus is a table (CASES): broken and hostile files (empty, text named .png, truncated
PNG/JPEG, a decompression bomb, 16-bit, CMYK, unknown palettes, RGBA, class ids >= 19, odd
sizes), bad arguments (seeds, steps, guidance, scales, attributes, prompts) and bad output
places (a file, a folder under a file, an unwritable folder, a folder holding other files).
Inputs that are legitimately accepted (a palette mask in a known palette, an RGBA or CMYK
photo, a mask of another size) are not listed: they are not mistakes. Every case is refused
before any sampling or writing starts (a few after loading the tiny test checkpoint), so the
whole file takes seconds; two tests run that checkpoint to the point of writing and make the
disk fail there, and the last ones send the same mistakes through the Python API and the web
app's handler.
"""
from __future__ import annotations

import errno
import importlib
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import faceweave
from faceweave import Conditions, FaceweaveError
from faceweave.backends.diffusion import DiffusionPipeline
from faceweave.cli import main
from faceweave.conditions import MAX_PROMPT_CHARS
from faceweave.seeds import MAX_SEED, check_seeds

LONG_PROMPT = "a smiling woman with blond hair " * (MAX_PROMPT_CHARS // 32 + 1)
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(side: int = 100_000) -> bytes:
    """A valid PNG header claiming side x side grey pixels, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz_files")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    paths = {name: root / name for name in (
        "zero.png", "text.png", "truncated.png", "truncated.jpg", "bomb.png", "grey16.png", "cmyk.jpg",
        "palette_unknown.png", "rgba_noise.png", "ids19.png", "photo.png", "mask.png", "sketch.png",
        "blank.png", "one_pixel.png", "strip.png", "file.txt", "empty.safetensors", "text.pth")}
    paths["zero.png"].write_bytes(b"")
    paths["text.png"].write_text("this is not a picture\n")
    Image.fromarray(noise).save(paths["photo.png"])
    paths["truncated.png"].write_bytes(paths["photo.png"].read_bytes()[:400])
    Image.fromarray(noise).save(root / "full.jpg", quality=90)
    paths["truncated.jpg"].write_bytes((root / "full.jpg").read_bytes()[:600])
    paths["bomb.png"].write_bytes(_bomb_png())
    Image.fromarray(rng.integers(1000, 60000, (32, 32), dtype=np.uint16)).save(paths["grey16.png"])
    Image.fromarray(noise).convert("CMYK").save(paths["cmyk.jpg"])
    unknown = Image.fromarray(rng.integers(0, 40, (32, 32), dtype=np.uint8), mode="P")
    unknown.putpalette(rng.integers(0, 256, 256 * 3, dtype=np.uint8).tolist())
    unknown.save(paths["palette_unknown.png"])
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), mode="RGBA").save(paths["rgba_noise.png"])
    Image.fromarray(np.full((32, 32), 19, np.uint8)).save(paths["ids19.png"])
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1
    Image.fromarray(mask).save(paths["mask.png"])
    sketch = np.full((32, 32), 255, np.uint8)
    sketch[16, 4:28] = 0
    Image.fromarray(sketch).save(paths["sketch.png"])
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(paths["blank.png"])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(paths["one_pixel.png"])
    Image.fromarray(rng.integers(0, 256, (2, 3000, 3), dtype=np.uint8)).save(paths["strip.png"])
    paths["empty.safetensors"].write_bytes(b"")
    paths["text.pth"].write_text("not a state dict\n")
    paths["file.txt"].write_text("a regular file\n")
    paths["model"] = tiny_model
    # a source folder for `data prepare` whose one photo is broken
    (root / "src_broken").mkdir()
    (root / "src_broken" / "a.png").write_bytes(paths["truncated.png"].read_bytes())
    paths["src_broken"] = root / "src_broken"
    (root / "src_empty").mkdir()
    paths["src_empty"] = root / "src_empty"
    (root / "src_good").mkdir()
    Image.fromarray(noise).save(root / "src_good" / "a.png")
    paths["src_good"] = root / "src_good"
    return paths


# ---------------------------------------------------------------------------------------
# The table: command -> [(case id, arguments)]. {name} is a file above; {out} a fresh output
# place that must not exist afterwards; {file} / {under_file} / {full} / {readonly} the bad
# output places of OUTPUT_CASES.
# ---------------------------------------------------------------------------------------

_IMAGE_FILES = ("zero.png", "text.png", "truncated.png", "truncated.jpg", "bomb.png")
_PHOTO_FILES = _IMAGE_FILES + ("one_pixel.png", "strip.png")      # no face fits in 1 x 1 or 3000 x 2
_MASK_FILES = _IMAGE_FILES + ("grey16.png", "cmyk.jpg", "palette_unknown.png", "rgba_noise.png", "ids19.png")
_SKETCH_FILES = _IMAGE_FILES + ("photo.png", "blank.png")
GEN = ["generate", "--model", "{model}", "--steps", "1", "--quiet", "--out", "{out}"]
EDIT = ["edit", "--model", "{model}", "--image", "{photo.png}", "--source-mask", "{mask.png}", "--quiet",
        "--out", "{out}"]
INVERT = ["invert", "--model", "{model}", "--no-mask", "--out", "{out}"]
EVAL = ["evaluate", "--backend", "copy", "--quiet", "--out", "{out}"]
SYNTH = ["data", "synth", "--n", "1", "--size", "32", "--out", "{out}"]
PREPARE = ["data", "prepare", "--layout", "folder", "--src", "{src_empty}", "--out", "{out}"]
TRAIN = ["train", "parser", "--preset", "tiny", "--data", "facesynth:32", "--quiet", "--out", "{out}"]

CASES: dict[str, list[tuple[str, list[str]]]] = {
    "generate": [
        *[(f"mask {f}", GEN + ["--mask", f"{{{f}}}"]) for f in _MASK_FILES],
        *[(f"sketch {f}", GEN + ["--sketch", f"{{{f}}}"]) for f in _SKETCH_FILES],
        ("palette file of text", GEN + ["--mask", "{rgba_noise.png}", "--palette", "{file.txt}"]),
        ("seed 2**70", GEN + ["--seeds", f"{2**70}-{2**70 + 1}"]),
        ("seed above the range", GEN + ["--seeds", str(MAX_SEED + 1)]),
        ("seed range over the top", GEN + ["--seeds", f"{MAX_SEED}-{MAX_SEED + 2}"]),
        ("negative seed", GEN + ["--seeds", "-1"]),
        ("seed word", GEN + ["--seeds", "one"]),
        ("seed fraction", GEN + ["--seeds", "1.5"]),
        ("seed empty", GEN + ["--seeds", ""]),
        ("seed range backwards", GEN + ["--seeds", "3-1"]),
        ("seed range too long", GEN + ["--seeds", "0-1000000000000"]),
        ("seed twice", GEN + ["--seeds", "0,0"]),
        ("steps 0", GEN + ["--steps", "0"]),
        ("steps negative", GEN + ["--steps", "-3"]),
        ("steps huge", GEN + ["--steps", "100000"]),
        ("steps word", GEN + ["--steps", "many"]),
        ("guidance nan", GEN + ["--guidance", "nan"]),
        ("guidance inf", GEN + ["--guidance", "inf"]),
        ("guidance negative", GEN + ["--guidance", "-2"]),
        ("guidance word", GEN + ["--guidance", "lots"]),
        ("scale without value", GEN + ["--prompt", "a man", "--scale", "prompt"]),
        ("scale nan", GEN + ["--prompt", "a man", "--scale", "prompt=nan"]),
        ("scale word", GEN + ["--prompt", "a man", "--scale", "prompt=high"]),
        ("scale unknown modality", GEN + ["--prompt", "a man", "--scale", "nose=2"]),
        ("scale not given", GEN + ["--prompt", "a man", "--scale", "sketch=2"]),
        ("scale and guidance", GEN + ["--prompt", "a man", "--scale", "prompt=2", "--guidance", "2"]),
        ("attr unknown", GEN + ["--attr", "Tentacles=1"]),
        ("attr value 2", GEN + ["--attr", "Smiling=2"]),
        ("attr without value", GEN + ["--attr", "Smiling"]),
        ("attr nan", GEN + ["--attr", "Smiling=nan"]),
        ("prompt too long", GEN + ["--prompt", LONG_PROMPT]),
        ("s-tmin nan", GEN + ["--s-tmin", "nan"]),
        ("guidance window words", GEN + ["--guidance-window", "a,b"]),
        ("guidance window nan", GEN + ["--guidance-window", "nan,1"]),
        ("guidance window backwards", GEN + ["--guidance-window", "0.8,0.2"]),
        ("ddim eta without ddim", GEN + ["--ddim-eta", "0.5"]),
        ("ddim eta nan", GEN + ["--sampler", "ddim", "--ddim-eta", "nan"]),
        ("unknown sampler", GEN + ["--sampler", "magic"]),
        ("unknown backend", GEN + ["--backend", "dreams"]),
        ("copy backend", GEN + ["--backend", "copy"]),
        ("model missing", ["generate", "--model", "{out}/nowhere", "--out", "{out}"]),
        ("model is a file", ["generate", "--model", "{file.txt}", "--out", "{out}"]),
        ("gan steps", ["generate", "--backend", "gan", "--steps", "3", "--out", "{out}"]),
        ("diversity with diffusion", GEN + ["--diversity", "0.5"]),
    ],
    "edit": [
        *[(f"image {f}", EDIT[:3] + ["--image", f"{{{f}}}"] + EDIT[5:] + ["--prompt", "a man"])
          for f in _PHOTO_FILES],
        ("image is a folder", EDIT[:3] + ["--image", "{src_empty}"] + EDIT[5:] + ["--prompt", "a man"]),
        *[(f"mask {f}", EDIT + ["--mask", f"{{{f}}}"]) for f in _MASK_FILES],
        *[(f"source mask {f}", EDIT[:5] + ["--source-mask", f"{{{f}}}"] + EDIT[7:] + ["--mask", "{mask.png}"])
          for f in ("zero.png", "ids19.png", "palette_unknown.png")],
        ("nothing to edit", EDIT),
        ("empty prompt only", EDIT + ["--prompt", ""]),
        ("prompt too long", EDIT + ["--prompt", LONG_PROMPT]),
        ("attr unknown", EDIT + ["--attr", "Wings=1"]),
        ("attr value 7", EDIT + ["--attr", "Male=7"]),
        ("steps 0", EDIT + ["--prompt", "a man", "--steps", "0"]),
        ("steps negative", EDIT + ["--prompt", "a man", "--steps", "-1"]),
        ("guidance nan", EDIT + ["--prompt", "a man", "--guidance", "nan"]),
        ("unknown class", EDIT + ["--mask", "{mask.png}", "--classes", "tentacle"]),
        ("gan strength with diffusion", EDIT + ["--prompt", "a man", "--strength", "2"]),
        ("unknown backend", EDIT + ["--prompt", "a man", "--backend", "dreams"]),
        ("copy backend", EDIT + ["--prompt", "a man", "--backend", "copy"]),
    ],
    "invert": [
        *[(f"photo {f}", INVERT + [f"{{{f}}}"]) for f in _PHOTO_FILES],
        *[(f"mask {f}", INVERT[:3] + ["--mask", f"{{{f}}}", "--out", "{out}", "{photo.png}"])
          for f in ("zero.png", "ids19.png", "palette_unknown.png", "bomb.png")],
        ("steps 0", INVERT + ["{photo.png}", "--steps", "0"]),
        ("steps negative", INVERT + ["{photo.png}", "--steps", "-4"]),
        ("prompt too long", INVERT + ["{photo.png}", "--prompt", LONG_PROMPT]),
        ("mask and no-mask", INVERT + ["{photo.png}", "--mask", "{mask.png}"]),
        ("copy backend", INVERT + ["{photo.png}", "--backend", "copy"]),
        ("no-align with diffusion", INVERT + ["{photo.png}", "--no-align"]),
    ],
    "evaluate": [
        ("n 0", EVAL + ["--n", "0"]),
        ("n 1", EVAL + ["--n", "1"]),
        ("n negative", EVAL + ["--n", "-5"]),
        ("n word", EVAL + ["--n", "all"]),
        ("size 7", EVAL + ["--size", "7"]),
        ("size huge", EVAL + ["--size", "100000"]),
        ("given unknown", EVAL + ["--given", "smell"]),
        ("seeds per condition 0", EVAL + ["--seeds-per-condition", "0"]),
        ("batch size 0", EVAL + ["--batch-size", "0"]),
        ("bank size 0", EVAL + ["--bank-size", "0"]),
        ("steps with copy", EVAL + ["--steps", "3"]),
        ("guidance nan", ["evaluate", "--backend", "diffusion", "--model", "{model}", "--guidance", "nan",
                          "--quiet", "--out", "{out}"]),
        ("steps 0", ["evaluate", "--backend", "diffusion", "--model", "{model}", "--steps", "0",
                     "--quiet", "--out", "{out}"]),
        ("unknown backend", EVAL[:1] + ["--backend", "dreams", "--out", "{out}"]),
        ("inception weights empty", EVAL + ["--inception-weights", "{empty.safetensors}"]),
        ("inception weights text", EVAL + ["--inception-weights", "{text.pth}"]),
        ("inception weights png", EVAL + ["--inception-weights", "{photo.png}"]),
        ("parser missing", EVAL + ["--parser", "{out}/nowhere"]),
        ("data: a folder that is no data set", EVAL + ["--data", "{src_empty}"]),
        ("data: real photos with a FaceSynth classifier", EVAL + ["--data", "celebamask1k", "--classifier",
                                                                   "classifier-64"]),
        ("data: real photos with --edit", EVAL + ["--data", "celebamask1k", "--edit"]),
    ],
    "parse": [
        *[(f"image {f}", ["parse", f"{{{f}}}", "--out", "{out}/mask.png"]) for f in _PHOTO_FILES],
        ("several images, one bad", ["parse", "{photo.png}", "{truncated.jpg}", "--out", "{out}"]),
        ("image is a folder", ["parse", "{src_empty}", "--out", "{out}/mask.png"]),
        ("out not png", ["parse", "{photo.png}", "--out", "{out}/mask.jpg"]),
        ("out under a file", ["parse", "{photo.png}", "--out", "{file.txt}/mask.png"]),
        ("model missing", ["parse", "{photo.png}", "--model", "{out}/nowhere", "--out", "{out}/mask.png"]),
    ],
    "describe": [
        *[(f"image {f}", ["describe", f"{{{f}}}"]) for f in _PHOTO_FILES],
        ("good then bad image", ["describe", "{photo.png}", "{truncated.png}"]),
        ("model missing", ["describe", "{photo.png}", "--model", "{out}/nowhere"]),
        ("real: a flat image", ["describe", "--real", "{blank.png}"]),
        ("real: a photo, then a flat image", ["describe", "--real", "{photo.png}", "{blank.png}"]),
    ],
    "data synth": [
        ("n 0", SYNTH + ["--n", "0"]),
        ("n negative", SYNTH + ["--n", "-2"]),
        ("size 0", SYNTH + ["--size", "0"]),
        ("size huge", SYNTH + ["--size", "100000"]),
        ("seed negative", SYNTH + ["--seed", "-1"]),
        ("seed 2**70", SYNTH + ["--seed", str(2**70)]),
        ("seed word", SYNTH + ["--seed", "x"]),
        ("unknown split", SYNTH + ["--split", "holdout"]),
    ],
    "data prepare": [
        ("src missing", PREPARE[:5] + ["{out}/nowhere", "--out", "{out}"]),
        ("src is a file", PREPARE[:5] + ["{file.txt}", "--out", "{out}"]),
        ("src empty", PREPARE),
        ("src with a broken photo", PREPARE[:5] + ["{src_broken}", "--out", "{out}"]),
        ("size 0", PREPARE[:5] + ["{src_broken}", "--out", "{out}", "--size", "0"]),
        ("limit 0", PREPARE[:5] + ["{src_broken}", "--out", "{out}", "--limit", "0"]),
        ("unknown layout", ["data", "prepare", "--layout", "shoebox", "--src", "{src_empty}", "--out", "{out}"]),
        ("out is the src", PREPARE[:5] + ["{src_broken}", "--out", "{src_broken}", "--overwrite"]),
    ],
    "train": [
        ("unknown family", ["train", "toaster", "--preset", "tiny", "--data", "facesynth:32", "--out", "{out}"]),
        ("celebamask1k spec with an unknown field", ["train", "parser", "--preset", "tiny", "--data",
                                                     "celebamask1k:32:n=3", "--out", "{out}"]),
        ("unknown preset", ["train", "parser", "--preset", "huge!", "--data", "facesynth:32", "--out", "{out}"]),
        ("no data", ["train", "parser", "--preset", "tiny", "--out", "{out}"]),
        ("bad data spec", TRAIN[:5] + ["facesynth:abc", "--out", "{out}"]),
        ("data folder missing", TRAIN[:5] + ["{out}/nowhere", "--out", "{out}"]),
        ("max steps 0", TRAIN + ["--max-steps", "0"]),
        ("max steps negative", TRAIN + ["--max-steps", "-1"]),
        ("lr nan", TRAIN + ["--lr", "nan"]),
        ("lr negative", TRAIN + ["--lr", "-0.1"]),
        ("batch size 0", TRAIN + ["--batch-size", "0"]),
        ("set without value", TRAIN + ["--set", "lr"]),
        ("set unknown key", TRAIN + ["--set", "bogus=1"]),
        ("set seed 2**70", TRAIN + ["--set", f"seed={2**70}"]),
        ("resume nothing", ["train", "parser", "--preset", "tiny", "--resume", "--out", "{out}"]),
    ],
}

# commands that write a folder (or, for parse, a file): where they are told to write
WRITERS = {
    "generate": GEN[:-1] + ["{where}"],
    "edit": EDIT[:-1] + ["{where}", "--prompt", "a man"],
    "invert": INVERT[:-1] + ["{where}", "{photo.png}"],
    "evaluate": EVAL[:-1] + ["{where}", "--n", "2"],
    "data synth": SYNTH[:-1] + ["{where}"],
    "data prepare": PREPARE[:5] + ["{src_good}", "--out", "{where}"],
    "train": TRAIN[:-1] + ["{where}", "--max-steps", "1"],
}
OUTPUT_CASES = ("a file", "under a file", "holds other files", "read-only folder", "read-only file system")


def _format(args: list[str], places: dict[str, Path]) -> list[str]:
    """Put the paths in: "{out}/x" -> "/tmp/.../out/x"."""
    return [re.sub(r"\{([\w.]+)\}", lambda m: str(places[m.group(1)]), a) for a in args]


def _listing(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.is_dir() else [path.name]


def assert_refused(args: list[str], watched: list[Path]) -> str:
    """Exit status 2, one `error:` line on stderr (beside progress bars), nothing on stdout,
    nothing new in `watched`; returns the error line."""
    before = {p: _listing(p) for p in watched}
    existed = {p: p.exists() for p in watched}
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback
        raise AssertionError("traceback:\n" + "".join(traceback.format_exception(result.exception)))
    # a progress bar of work that started before the bad input turned up may stand before it
    lines = [ln for ln in re.split(r"[\r\n]+", result.stderr.strip()) if ln and "%|" not in ln]
    assert result.exit_code == 2, (args, result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert result.stdout == "", (args, result.stdout)
    for path in watched:
        assert path.exists() == existed[path] and _listing(path) == before[path], (args, path, _listing(path))
        # no hidden staging or probe folders left beside it either
        left = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
        assert not left, left
    return lines[0]


@pytest.mark.parametrize("command,case,args", [(c, i, a) for c, cases in CASES.items() for i, a in cases],
                         ids=[f"{c}: {i}" for c, cases in CASES.items() for i, _ in cases])
def test_bad_input_is_one_line_error(files, tmp_path, command, case, args):
    out = tmp_path / "out"
    assert_refused(_format(args, {**files, "out": out}), [out])


@pytest.mark.parametrize("command", list(WRITERS))
@pytest.mark.parametrize("place", OUTPUT_CASES)
def test_bad_output_place_is_one_line_error_naming_it(files, tmp_path, monkeypatch, command, place):
    base = tmp_path / "outs"
    base.mkdir()
    if place == "a file":
        where = base / "taken.txt"
        where.write_text("keep me\n")
        watched = [where]
    elif place == "under a file":
        (base / "plain.txt").write_text("keep me\n")
        where = base / "plain.txt" / "sub"
        watched = [base / "plain.txt"]
    elif place == "holds other files":
        where = base / "full"
        where.mkdir()
        (where / "notes.txt").write_text("keep me\n")
        watched = [where]
    elif place == "read-only folder":
        if AS_ROOT:
            pytest.skip("root writes into a chmod 555 folder; 'read-only file system' covers the case")
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        where = locked / "out"
        watched = [where]
    else:
        locked = base / "mounted"
        locked.mkdir()
        where = locked / "out"
        watched = [where]
        _read_only_below(monkeypatch, locked)
    try:
        line = assert_refused(_format(WRITERS[command], {**files, "where": where}), watched)
    finally:
        if place == "read-only folder":
            (base / "locked").chmod(0o755)
    shown = str(where if place != "under a file" else base / "plain.txt")
    assert shown in line or str(where) in line, line


def _read_only_below(monkeypatch, folder: Path) -> None:
    """Make every attempt to create something under `folder` fail as on a read-only mount."""
    folder = str(folder.resolve())

    def guard(fn):
        def guarded(path, *args, **kwargs):
            if os.path.abspath(os.fspath(path)).startswith(folder + os.sep):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return fn(path, *args, **kwargs)
        return guarded
    monkeypatch.setattr(os, "mkdir", guard(os.mkdir))
    monkeypatch.setattr(os, "makedirs", guard(os.makedirs))
    import builtins
    import io
    monkeypatch.setattr(builtins, "open", guard(builtins.open))
    monkeypatch.setattr(io, "open", guard(io.open))
    monkeypatch.setattr(os, "open", guard(os.open))


# ---------------------------------------------------------------------------------------
# The disk fails half-way: nothing may be left behind
# ---------------------------------------------------------------------------------------

def _disk_full_after(monkeypatch, good_writes: int) -> None:
    """os.fsync fails with ENOSPC after `good_writes` calls: every PNG writer fsyncs."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > good_writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("command", ["generate", "data synth"])
def test_disk_full_mid_write_leaves_nothing(files, tmp_path, monkeypatch, command):
    where = tmp_path / "out"
    args = _format({"generate": GEN[:-1] + ["{where}", "--seeds", "0-2"],
                    "data synth": SYNTH[:-1] + ["{where}", "--n", "3"]}[command], {**files, "where": where})
    _disk_full_after(monkeypatch, 2)
    line = assert_refused(args, [where])
    assert str(where) in line and "No space left" in line, line


def test_disk_full_mid_write_keeps_an_existing_folder_as_it_was(files, tmp_path, monkeypatch):
    where = tmp_path / "out"
    args = _format(GEN[:-1] + ["{where}", "--seeds", "0-2"], {**files, "where": where})
    assert CliRunner().invoke(main, args).exit_code == 0
    before = {p: (where / p).read_bytes() for p in _listing(where)}
    _disk_full_after(monkeypatch, 2)
    assert_refused(args + ["--overwrite", "--seeds", "3-5"], [where])
    assert {p: (where / p).read_bytes() for p in _listing(where)} == before


# ---------------------------------------------------------------------------------------
# The same mistakes through the Python API and the web app's handler
# ---------------------------------------------------------------------------------------

PIPELINE_METHODS = {"DiffusionPipeline": ("__call__", "edit", "invert", "reconstruct", "edit_photo", "invert_photo"),
                    "CollabPipeline": ("__call__", "edit", "edit_photo"),
                    "GANPipeline": ("__call__", "edit", "invert", "edit_photo", "invert_photo"),
                    "DDGIPipeline": ("__call__", "edit", "invert", "edit_photo"),
                    "StylizePipeline": ("__call__", "sample"),
                    "MultiviewPipeline": ("__call__", "views", "views_from_ddgi")}
# a keyword the error must list among the accepted ones: seeds for generating calls, steps
# for the rest, unless named here
NAMED_KEYWORD = {("StylizePipeline", "__call__"): "style_text", ("StylizePipeline", "sample"): "seeds",
                 ("MultiviewPipeline", "views"): "yaws", ("MultiviewPipeline", "views_from_ddgi"): "yaws"}


def _pipeline_classes() -> dict[str, type]:
    found = {}
    root = Path(faceweave.__file__).parent
    for path in sorted((root / "backends").rglob("*.py")):
        dotted = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        module = importlib.import_module(dotted)
        found.update({name: cls for name, cls in vars(module).items()     # the subclasses, not the base
                      if name.endswith("Pipeline") and isinstance(cls, type) and cls.__module__ == module.__name__
                      and name != "Pipeline"})
    return found


def test_every_backend_pipeline_is_in_the_keyword_table():
    assert sorted(_pipeline_classes()) == sorted(PIPELINE_METHODS)


@pytest.mark.parametrize("name,method", [(n, m) for n, ms in PIPELINE_METHODS.items() for m in ms])
def test_an_unknown_keyword_is_named_with_the_accepted_ones(name, method):
    pipe = object.__new__(_pipeline_classes()[name])      # keywords are checked before anything is read
    with pytest.raises(FaceweaveError) as err:
        getattr(pipe, method)(negative_prompt="blurry")
    text = str(err.value)
    assert "\n" not in text and "no keyword 'negative_prompt'" in text and "; it takes " in text, text
    expected = NAMED_KEYWORD.get((name, method), "seeds" if method == "__call__" else "steps")
    assert expected in text.split("; it takes ")[1], text


def test_a_long_prompt_is_refused_in_the_same_words_everywhere(files, tmp_path):
    from faceweave import app

    out = tmp_path / "out"
    cli = assert_refused(_format(GEN + ["--prompt", LONG_PROMPT], {**files, "out": out}), [out])
    with pytest.raises(FaceweaveError) as api:
        DiffusionPipeline.from_pretrained(files["model"], device="cpu")(prompt=LONG_PROMPT, seeds=[0])
    with pytest.raises(FaceweaveError) as web:                    # refused before any model is asked for
        next(app.iter_generate(None, LONG_PROMPT))
    assert cli == f"error: {api.value}" == f"error: {web.value}"
    assert f"over the limit of {MAX_PROMPT_CHARS:,}" in cli
    at_limit = "a" * 500 + " \n\t  " + "b" * 499                  # 1,000 once the whitespace is collapsed
    assert Conditions(prompt=at_limit).prompt == "a" * 500 + " " + "b" * 499


def test_a_seed_out_of_range_is_refused_everywhere(files, tmp_path):
    from faceweave import app
    from faceweave.backends.base import get_backend

    out = tmp_path / "out"
    cli = assert_refused(_format(GEN + ["--seeds", str(2**70)], {**files, "out": out}), [out])
    with pytest.raises(FaceweaveError) as api:
        DiffusionPipeline.from_pretrained(files["model"], device="cpu")(seeds=[2**70])
    with pytest.raises(FaceweaveError) as backend:
        get_backend("copy").generate([Conditions()], [MAX_SEED + 1], 32)
    with pytest.raises(FaceweaveError) as web:
        next(app.iter_generate(None, "a man", seed=MAX_SEED, n_images=2))   # its second image's seed
    for text in (cli, str(api.value), str(backend.value), str(web.value)):
        assert f"up to 2**63 - 1 = {MAX_SEED}" in text, text
    assert check_seeds([MAX_SEED]) == [MAX_SEED]
