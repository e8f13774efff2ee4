"""The `faceweave` command end to end (click's runner, real files in tmp_path)."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from faceweave.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_help_has_examples():
    for cmd in (["--help"], ["data", "synth", "--help"], ["data", "show", "--help"],
                ["data", "prepare", "--help"], ["data", "stats", "--help"]):
        res = run(*cmd)
        assert res.exit_code == 0 and "Example" in res.output, cmd


def test_synth_show_stats(tmp_path):
    out = tmp_path / "fs"
    res = run("data", "synth", "--out", out, "--n", 4, "--size", 64, "--seed", 3)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    records = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["captions"] and r["attributes"] for r in records)
    assert np.asarray(Image.open(out / "masks" / "000000.png")).max() < 19

    sheet = tmp_path / "sheet.png"
    assert run("data", "show", out, "--out", sheet, "--n", 4, "--cell", 64).exit_code == 0
    w, h = Image.open(sheet).size
    assert h == 2 * 64 and w > 4 * 64

    res = run("data", "stats", out, "--json")
    stats = json.loads(res.output)
    assert stats["n"] == 4 and stats["classes"]["skin"]["image_share"] == 1.0


def test_synth_same_seed_same_files(tmp_path):
    for name in ("a", "b"):
        assert run("data", "synth", "--out", tmp_path / name, "--n", 2, "--size", 48).exit_code == 0
    for sub in ("images", "masks", "sketches"):
        assert (tmp_path / "a" / sub / "000001.png").read_bytes() == (tmp_path / "b" / sub / "000001.png").read_bytes()


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    out = tmp_path / "fs"
    assert run("data", "synth", "--out", out, "--n", 1, "--size", 32).exit_code == 0
    cases = [
        (["data", "synth", "--out", out, "--n", 1, "--size", 32], "--overwrite"),
        (["data", "synth", "--out", tmp_path / "x", "--n", 0], "positive"),
        (["data", "synth", "--out", tmp_path / "x", "--n", 2, "--size", 4096], "out of range"),
        (["data", "show", tmp_path / "missing", "--out", tmp_path / "s.png"], "does not exist"),
        (["data", "stats", tmp_path], "not a unified data folder"),
        (["data", "prepare", "--layout", "folder", "--src", tmp_path / "nope", "--out", tmp_path / "y"], "nope"),
    ]
    for args, needle in cases:
        res = run(*args)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and needle in lines[0], (args, res.output)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_overwrite_replaces(tmp_path):
    out = tmp_path / "fs"
    assert run("data", "synth", "--out", out, "--n", 3, "--size", 32).exit_code == 0
    assert run("data", "synth", "--out", out, "--n", 1, "--size", 32, "--overwrite").exit_code == 0
    assert len(list((out / "images").iterdir())) == 1


def test_prepare_folder_of_photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(src / f"p{i}.jpg")
    res = run("data", "prepare", "--layout", "folder", "--src", src, "--out", tmp_path / "u", "--size", 64)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "u" / "images" / "p0.png").size == (64, 64)
