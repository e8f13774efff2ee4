"""`faceweave generate --from FILE.jsonl`: one face per line, resumable, bad lines reported by
number while the rest is made, shared between processes with the same bytes as one process.
All on the tiny 32 px test checkpoint at 2 steps."""
from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceweave.backends.diffusion import DiffusionPipeline
from faceweave.cli import main
from faceweave.io import read_image, write_mask, write_png, write_sketch
from faceweave.synth import render

LINES = [
    {"prompt": "a smiling woman", "mask": "masks/a.png", "name": "woman"},
    {"attributes": {"male": 1, "Eyeglasses": True}, "seed": 40},
    {"attributes": "Smiling=1, Male=0", "sketch": "b.png"},
    "",                                                   # blank: skipped, the numbers stay as an editor counts
    {"prompt": "a bald man"},                             # no mask: a layout is drawn (and written)
    {},                                                   # unconditional
    {"prompt": "a woman with black hair", "mask": "masks/a.png", "seed": 3},
]
NAMES = ["woman", "000002", "000003", "000005", "000006", "000007"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread, as a launcher gives each process: what the two-process run is compared with,
    and, for a model this small, faster than two threads that wait for each other on busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_lines(path: Path, lines) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A conditions file with its mask and sketch beside it (relative paths)."""
    root = tmp_path_factory.mktemp("from")
    face = render(seed=2_000_000, index=0, size=32)
    (root / "masks").mkdir()
    write_mask(root / "masks" / "a.png", face.mask)
    write_sketch(root / "b.png", face.sketch)
    _write_lines(root / "conds.jsonl", LINES)
    return root


def run(model, source, out, *extra):
    args = ["generate", "--from", source, "--model", model, "--steps", "2", "--out", out, "--quiet", *extra]
    return CliRunner().invoke(main, [str(a) for a in args])


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


@pytest.fixture
def calls(monkeypatch):
    """Counts the model calls (images per call); stop_after=k makes call k+1 a Ctrl-C."""
    log = {"images": [], "stop_after": None}
    original = DiffusionPipeline.__call__

    @functools.wraps(original)
    def counting(self, *args, **kwargs):
        if log["stop_after"] is not None and len(log["images"]) >= log["stop_after"]:
            raise KeyboardInterrupt
        log["images"].append(len(kwargs["seeds"]))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(DiffusionPipeline, "__call__", counting)
    return log


def test_every_line_becomes_an_image_and_its_metadata(tiny_model, folder, tmp_path, calls):
    out = tmp_path / "out"
    result = run(tiny_model, folder / "conds.jsonl", out, "--batch-size", "2", "--layout-prior")
    assert result.exit_code == 0, result.output
    assert f"wrote 6 images to {out}" in result.stdout
    assert sorted(_pngs(out)) == sorted([f"{n}.png" for n in NAMES] + ["000002_layout.png", "000005_layout.png"])
    assert calls["images"] == [2, 1, 2, 1]               # blocks of 2 line numbers: 1-2, 3(-4), 5-6, 7
    metas = {n: json.loads((out / f"{n}.json").read_text()) for n in NAMES}
    assert [metas[n]["line"] for n in NAMES] == [1, 2, 3, 5, 6, 7]
    assert [metas[n]["seed"] for n in NAMES] == [1, 40, 3, 5, 6, 3]    # default seed: the line number
    assert metas["woman"]["prompt"] == "a smiling woman" and metas["woman"]["given"] == ["prompt", "mask"]
    assert metas["000002"]["attributes"] == {"Male": 1, "Eyeglasses": 1}
    assert metas["000003"]["attributes"] == {"Smiling": 1, "Male": 0} and "sketch" in metas["000003"]["given"]
    assert metas["000005"]["layout_image"] == "000005_layout.png" and metas["000005"]["layout"]["matched"]
    assert metas["000006"]["given"] == [] and metas["000007"]["source"] == LINES[6]
    assert all(m["steps"] == 2 and m["sampler"] == "euler_ancestral" for m in metas.values())
    record = json.loads((out / "run.json").read_text())
    settings = record["settings"]
    assert settings["backend"] == "diffusion" and settings["model"] == str(tiny_model) and settings["size"] == 32
    assert settings["steps"] == 2 and settings["guidance"] == 2.0 and settings["batch_size"] == 2
    assert settings["from"] == str(folder / "conds.jsonl") and len(settings["from_sha256"]) == 64
    assert record["summary"] == {"lines": 6, "written": 6, "finished_before": 0, "failed": 0,
                                 "written_per_process": [6]}
    assert not (out / "errors.jsonl").exists() and not list(out.glob(".*"))

    # the same line alone, through a plain generate: the same face (batching moves a pixel by <= 1 level)
    single = tmp_path / "single"
    alone = CliRunner().invoke(main, ["generate", "--prompt", "a smiling woman", "--mask", str(folder / "masks/a.png"),
                                      "--seeds", "1", "--model", str(tiny_model), "--steps", "2", "--out", str(single),
                                      "--quiet"])
    assert alone.exit_code == 0, alone.output
    a, b = read_image(single / "000001.png").astype(int), read_image(out / "woman.png")
    assert np.abs(a - b).max() <= 1


def test_a_second_run_makes_only_what_is_missing(tiny_model, folder, tmp_path, calls):
    source = _write_lines(tmp_path / "c.jsonl", [{"attributes": {"Male": 1}}, {"mask": str(folder / "masks/a.png")},
                                                 {"sketch": str(folder / "b.png"), "seed": 11}, {},
                                                 {"attributes": "Smiling=1"}, {"seed": 2}, {"name": "last"}])
    fast = ("--batch-size", "2", "--no-layout-prior")
    whole = tmp_path / "whole"
    assert run(tiny_model, source, whole, *fast).exit_code == 0
    reference = _pngs(whole)
    assert len(reference) == 7

    out = tmp_path / "out"
    calls["images"].clear()
    calls["stop_after"] = 2                               # Ctrl-C during the third model call
    stopped = run(tiny_model, source, out, *fast)
    assert stopped.exit_code != 0
    assert sorted(_pngs(out)) == [f"{n:06d}.png" for n in range(1, 5)]
    before = _mtimes(out)

    calls["images"].clear()
    calls["stop_after"] = None
    resumed = run(tiny_model, source, out, *fast)
    assert resumed.exit_code == 0, resumed.output
    assert calls["images"] == [2, 1]                      # only the blocks of lines 5-6 and 7
    assert "wrote 3 images" in resumed.stdout and "(4 finished before)" in resumed.stdout
    assert all(_mtimes(out)[name] == t for name, t in before.items() if name != "run.json")   # never touched
    assert _pngs(out) == reference                        # as if it had never stopped

    calls["images"].clear()
    again = run(tiny_model, source, out, *fast)
    assert again.exit_code == 0 and calls["images"] == [] and "wrote 0 images" in again.stdout

    # a lost image: its block is computed again (so the bytes are the same), only it is written
    (out / "000006.png").unlink()
    before = _mtimes(out)
    again = run(tiny_model, source, out, *fast)
    assert again.exit_code == 0 and calls["images"] == [2]
    after = _mtimes(out)
    assert sorted(n for n in after if n != "run.json" and after[n] != before.get(n)) == ["000006.json", "000006.png"]
    assert _pngs(out) == reference


def test_bad_lines_are_reported_by_number_and_the_rest_is_made(tiny_model, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write_png(tmp_path / "noise.png", noise)             # colours of no mask palette
    lines = [
        {"attributes": {"Male": 1}},                      # 1 good
        '{"attributes": {"Male": 1}',                     # 2 not JSON
        {"promt": "a man"},                               # 3 unknown key
        {"attributes": {"Smiley": 1}},                    # 4 unknown attribute
        {"mask": "missing.png"},                          # 5 no such file
        {"mask": "noise.png"},                            # 6 not a mask
        {"seed": -1},                                     # 7 seed out of range
        {"seed": "7"},                                    # 8 seed as text
        [1, 2],                                           # 9 not an object
        {"name": "../x"},                                 # 10 a name that is a path
        {"name": "dup"},                                  # 11 good
        {"name": "DUP"},                                  # 12 taken (case-insensitive file systems)
        {"attributes": "Smiling=maybe"},                  # 13 not 0 or 1
        {"seed": 9},                                      # 14 good
    ]
    source = _write_lines(tmp_path / "c.jsonl", [x if isinstance(x, (dict, str)) else json.dumps(x) for x in lines])
    out = tmp_path / "out"
    result = run(tiny_model, source, out, "--no-layout-prior")
    assert result.exit_code == 1, result.output
    assert sorted(_pngs(out)) == ["000001.png", "000014.png", "dup.png"]
    bad = [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13]
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == bad
    stderr = result.stderr.strip().splitlines()
    reported = {int(x.split(":")[0].split()[1]): x for x in stderr if x.startswith("line ")}
    assert sorted(reported) == bad
    for number, words in {2: "not JSON", 3: "did you mean 'prompt'", 4: "unknown attribute 'Smiley'",
                          5: "missing.png", 6: "noise.png", 7: "out of range", 8: "must be an integer",
                          9: "not a JSON object", 10: "cannot name an output file", 12: "taken by line 11",
                          13: "'maybe' is not a valid value"}.items():
        assert words in reported[number], reported[number]
    assert stderr[-1].startswith(f"error: 11 of 14 lines failed: see {out / 'errors.jsonl'}")
    assert json.loads((out / "run.json").read_text())["summary"]["failed"] == 11

    # the missing mask appears: the same command makes that line, and only that one
    write_mask(tmp_path / "missing.png", np.zeros((32, 32), np.uint8))
    again = run(tiny_model, source, out, "--no-layout-prior")
    assert again.exit_code == 1 and "wrote 1 image" in again.stdout and "(3 finished before)" in again.stdout
    assert [json.loads(x)["line"] for x in (out / "errors.jsonl").read_text().splitlines()] == \
        [b for b in bad if b != 5]


@pytest.mark.parametrize("lines, message", [
    ([], "holds no lines"),
    (["", "  "], "holds no lines"),
    (["not json", {"seed": -2}], "no line of"),
])
def test_a_file_with_nothing_to_make_is_one_error_and_nothing_written(tiny_model, tmp_path, lines, message):
    source = _write_lines(tmp_path / "c.jsonl", lines)
    out = tmp_path / "out"
    result = run(tiny_model, source, out)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--prompt", "a man"], "drop --prompt"),
    (["--seeds", "0-3"], "drop --seeds"),
    (["--scale", "hair=2"], "cannot guide"),
])
def test_flags_that_do_not_go_with_from_are_one_error(tiny_model, folder, tmp_path, extra, message):
    result = run(tiny_model, folder / "conds.jsonl", tmp_path / "out", *extra)
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    missing = run(tiny_model, tmp_path / "nowhere.jsonl", tmp_path / "out")
    assert missing.exit_code == 2 and "cannot read --from" in missing.output
    assert not (tmp_path / "out").exists()


def test_a_folder_made_with_other_settings_is_refused(tiny_model, tmp_path, calls):
    source = _write_lines(tmp_path / "c.jsonl", [{"attributes": {"Male": 1}}, {"seed": 5}])
    out = tmp_path / "out"

    def go(*extra, where=out):
        return run(tiny_model, source, where, "--no-layout-prior", *extra)
    assert go().exit_code == 0
    before = _mtimes(out)

    other = go("--steps", "3")
    assert other.exit_code == 2 and len(other.output.strip().splitlines()) == 1
    assert "was made with --steps 2, not 3" in other.output and "--overwrite" in other.output
    sampler = go("--sampler", "heun")
    assert sampler.exit_code == 2 and '--sampler "euler_ancestral", not "heun"' in sampler.output
    prior = run(tiny_model, source, out, "--layout-prior")
    assert prior.exit_code == 2 and "made with --no-layout-prior, not --layout-prior" in prior.output
    assert _mtimes(out) == before                          # nothing touched

    _write_lines(source, [{"attributes": {"Male": 1}}, {"seed": 5}, {"attributes": {"Smiling": 1}}])
    edited = go()
    assert edited.exit_code == 2 and "another version of" in edited.output and "--overwrite" in edited.output
    calls["images"].clear()
    grown = go("--overwrite")                             # the lines left as they were keep their images
    assert grown.exit_code == 0, grown.output
    assert calls["images"] == [3] and "wrote 1 image" in grown.stdout
    assert all(_mtimes(out)[n] == before[n] for n in ("000001.png", "000002.png"))

    redo = go("--steps", "3", "--overwrite")
    assert redo.exit_code == 0 and "wrote 3 images" in redo.stdout
    assert json.loads((out / "000001.json").read_text())["steps"] == 3

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = go(where=foreign)
    assert refused.exit_code == 2 and "already holds files" in refused.output and "--overwrite" in refused.output


def test_help_shows_the_from_example():
    result = CliRunner().invoke(main, ["generate", "--help"])
    assert result.exit_code == 0 and "--from examples/conditions.jsonl" in result.output
    assert "accelerate launch" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_make_what_one_makes(tiny_model, folder, tmp_path):
    """`accelerate launch` with 2 CPU processes (--multi_gpu without GPUs: one gloo process each;
    accelerate's --cpu would start one): each writes its own blocks, process 0 the summary, and the
    images are the bytes one process writes (at the one thread per process a launcher sets)."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend, so no CPU multi-process run")
    pytest.importorskip("accelerate.commands.launch")
    source = _write_lines(folder / "sharded.jsonl", LINES + [{"seed": "x"}])     # a bad line too: line 8
    one = run(tiny_model, source, tmp_path / "one", "--batch-size", "2", "--layout-prior")   # at one thread
    assert one.exit_code == 1, one.output

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "faceweave.cli", "generate", "--from", str(source),
           "--model", str(tiny_model), "--steps", "2", "--batch-size", "2", "--layout-prior", "--out", str(two),
           "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    log = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 1, log                      # the bad line, reported once, by process 0
    assert proc.stdout.count("wrote 6 images") == 1, log
    assert proc.stderr.count("line 8: seed must be an integer") == 1, log
    assert proc.stderr.count("error: 1 of 7 lines failed") == 1, log
    record = json.loads((two / "run.json").read_text())
    assert record["processes"] == 2
    assert record["summary"]["written_per_process"] == [4, 2]      # blocks 1-2 and 5-6; 3 and 7
    assert (two / "errors.jsonl").read_text() == (tmp_path / "one" / "errors.jsonl").read_text()
    ones, twos = _pngs(tmp_path / "one"), _pngs(two)
    assert sorted(ones) == sorted(twos) and len(ones) == 8             # 6 faces, 2 drawn layouts
    assert [n for n in ones if ones[n] != twos[n]] == []                  # pixel for pixel, byte for byte
